"""Benchmark: paper-scale throughput on one GPU, every stage through the project's own code.

One prepared call for a lent GPU (one H100 or H200, no network, about 15 minutes of device time in
all): it measures, in under 8 minutes, what an hour of such a card buys, and writes one JSON file
(`--output`, default `$OUT/gpu.json` where `$OUT` is set, else `runs/gpu-<date>.json`) and a table
on the log. Model weights cannot travel to that machine, but shapes decide cost, so both models
are built from their configs with seeded random bf16 weights:

- `smollm2-135m`: the embedded SmolLM2-135M-Instruct's config (fields copied from the converted
  model's config.json below; rope settings are left at their defaults, which change no cost);
- `llama3-8b`: a LLaMA-3-8B shape (hidden 4096, 32 layers, 32 heads, 8 KV heads, FFN 14336,
  vocab 128256, untied head).

What runs, per shape, through the library's stage functions (not re-implementations):

- generate: `adg.stages.generate.generate_file` with an `HFSampler` over the in-memory model, K=5,
  T=1.4, top-p 0.9, 256 new tokens forced to the cap (`min_new_tokens`: random weights rarely stop
  early, but the count must be exact); a batch-size sweep (instructions per batch) that stops
  before the next size would not fit the memory measured so far, then picks the default: the
  smallest batch within 5 % of the best tokens/s. Tokens/s, MFU (useful FLOPs over the matmul rate
  measured in the same run; attention not counted) and the fraction of the card's decode bound
  (weights + KV cache read once per step at the measured copy bandwidth, or the FLOPs at the
  measured matmul rate, whichever is slower);
- why generate is where it is (`diagnose`): prefill alone (one new token), a bare decode step of
  the model on a KV cache of mid length, HF's sampling warpers on [sequences, vocab] logits, and
  what is left (generate's own loop); prompt padding; a static KV cache against the dynamic one
  in the same call (`static_cache`), and for the 135M shape the static cache compiled
  (`compiled`, last, only if time is left);
- embed: `adg.stages.embed.embed_file` (the instructions); score:
  `adg.stages.score.score_file` with the batched `HiddenStateEncoder`, and
  bench/baselines/reference_scoring.py's per-answer loop on a sample of the same records;
- end to end: examples/s = instructions / (generate + embed + score) on one GPU, beside the
  paper's 2.0 per GPU (8.10 examples/s on 4 GPUs with 8B backbones). The cluster generates with
  vLLM, which was not measured here (its wheels cannot travel to the lent machine): HF decode is a
  floor, not the cluster's speed. Model loading and pod start are not counted;
- peak GPU memory per stage (`torch.cuda.max_memory_allocated`, reset before each stage), so
  `adg plan` can say whether a model fits a card;
- 135M only: a few optimizer steps of `adg.stages.train.train` (the published recipe's batch 2 x 8
  accumulation, bf16 and gradient checkpointing on GPU, no DeepSpeed); the same through
  `adg.stages.train.launch` with a ZeRO-2 config derived from the shipped ZeRO-3 one, only when
  DeepSpeed is importable (its wheel travels, below; the shipped configs take torch's fused AdamW,
  `torch_adam`, so nothing is JIT-built, as in the train image); and one lm-eval run
  (`adg.stages.evaluate.evaluate`) of the two local tasks the repository ships (tests/lm_eval_tasks)
  on the trained model, only when lm-eval is importable.

Tokenizer. The SmolLM2 tokenizer is 3.5 MB and not in the repository, and LLaMA-3's cannot be
fetched, so the script builds one: a byte-level BPE trained in under a second on the in-repository
pool (data/alpaca_gpt4_sample_200.jsonl; about 9.6K merges reachable), its vocabulary padded with
plain added tokens up to the model's size. Every id a random model samples then decodes to text
that encodes back to one token, so scored answers hold the 256 tokens generated (the re-encoded
length is measured and written). On that pool this BPE gives 0.94x SmolLM2's token count for the
instructions and 0.95x for the outputs (it was trained on them), so prompt and instruction lengths
are realistic. The deviation: the 8B shape's prompts are not LLaMA-3 token counts.

Budget (8 minutes), from FLOPs and bytes at the H200 ceilings measured here before (bf16 matmul
~790 TFLOP/s, device copy ~4.3 TB/s; an H100 has the same FLOPs and 0.7x the bandwidth):

- 8B generate: P = 7.5e9 parameters per generated token (blocks + head). Per decode step at S
  sequences: weights 15 GB + KV (131 KB per token per sequence) read, and the dynamic cache copies
  itself once per step (torch.cat), so at S=960 (192 instructions x 5) and ~280 tokens of context
  (Alpaca prompts of this pool: 66 tokens on average, 150 at most, left-padded to the longest)
  ~120 GB move per step (~28 ms) against 2·P·S = 14 TFLOP (~18 ms); plus ~10 ms of top-p sort over
  960 x 128256 logits and ~6 ms of launches: ~40 ms x 256 steps ~ 12 s. The sweep 8, 32, 96, 192,
  384 instructions costs ~3 + 4 + 8 + 12 + 25 s, the static-cache rerun ~15 s, the diagnosis ~10 s:
  ~90 s;
- 8B embed + score: 960 answers x ~280 tokens = 2.7e5 tokens x 2 x 6.8e9 (blocks up to the last
  read) = 3.6 PFLOP, ~8 s at 50 % MFU; the per-answer loop on 4 records, 20 passes, ~2 s; building
  the tokenizer and model ~15 s;
- 135M: every pass is launch-bound (~5 ms per step): the sweep up to 1024 instructions ~20 s,
  embed + score ~3 s, training 10 steps ~20 s with the Trainer's start, lm-eval ~40 s (its task
  index), ZeRO-2 ~1-2 min (torchrun and DeepSpeed's start), compile ~1-2 min; where vLLM is
  importable, tests/test_vllm_sampler.py's `full_vllm_run` (the `gpu` test: `VLLMSampler` with a
  real engine on the saved 135M model, ~1 min with the engine's start), last.
The core (all but ZeRO-2 and compile) is ~4 minutes; those two run last, only if their estimate
still fits. Guard: a part starts only if its estimate (GPU_ESTIMATES, about 1.5x the figures
above: ~400 s for the core) fits in what is left of `--budget-s` (default 450 s); the generate
sweep stops before a batch size whose predicted time would eat into the later parts' estimates;
the JSON is rewritten after every part; an alarm at the deadline interrupts a part that overruns;
what did not run is marked "skipped" with the reason.

Carried wheels. The device has torch 2.11 (CUDA 13), transformers, accelerate, numpy, tokenizers;
adg also needs pydantic, and the optional parts need lm-eval and DeepSpeed with the packages the
device lacks (about 18 MB in all, versions from the eval and train image locks). In the repository
root here (`.whl/` is git-ignored; DeepSpeed, rouge-score, sqlitedict and word2number publish only
sources, so they are built here into pure-Python wheels):

    python -m bench.gpu --fetch-wheels .whl

which runs (each V the version pinned in images/eval/ or images/train/requirements.txt):

    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 -d .whl pydantic==V pydantic-core==V annotated-types==V \
      typing-inspection==V lm-eval==V datasets==V evaluate==V dill==V multiprocess==V \
      pytablewriter==V dataproperty==V mbstrdecoder==V pathvalidate==V tabledata==V tcolorpy==V \
      typepy==V chardet==V nltk==V more-itertools==V hjson==V
    python -m pip wheel --no-deps --no-build-isolation -w .whl deepspeed==V rouge-score==V \
      sqlitedict==V word2number==V

The one device call (docs/benchmarks.md has it too): carry `[".whl"]`, timeout_s 600,

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail; \
    PYTHONUNBUFFERED=1 python3 -m bench.gpu 2>&1 | tee $OUT/gpu.log

Then, on the GPU's result only, `python -m bench.gpu --write-factors gpu.json` writes the
measured factors that `adg plan` uses (data/gpu_factors.json, `adg.planning.gpu_factors`).

Without a GPU: `python -m bench.gpu --dry-run` runs the same code on CPU with tiny configs of the
same two families (fp32, 16 new tokens, small batches) in well under 2 minutes; `--quick` shrinks
it further for the fast test tier (tests/test_bench_gpu.py).

    python -m bench.gpu [--output PATH] [--budget-s 450] [--shapes llama3-8b,smollm2-135m]
                        [--skip PART,...] [--dry-run [--quick]]
    python -m bench.gpu --fetch-wheels .whl
    python -m bench.gpu --write-factors RESULTS.json [--factors-file PATH]

The package, by what it measures (each module's docstring says more):

    cli.py          the command line, the plan carried out part by part (`PARTS`)
    settings.py     shapes, sizes, the parts in order, their time estimates (standard library only)
    timing.py       the time budget and its alarm, timing, peak memory, units
    run.py          one run's shared state and the time guard around each part (`Run.part`)
    models.py       pool records, the BPE tokenizer, models from configs; build, free, save
    device.py       env: the machine, the card, its measured matmul and copy ceilings
    generate.py     generate: the batch sweep, the decode bound, the static cache, vLLM
    diagnose.py     diagnose: prefill, the bare decode step, sampling, the loop
    embed_score.py  embed_score: embed, score, the per-answer loop, end to end
    train.py        train and train_zero2 (135M)
    evaluate.py     evaluate: lm-eval's local tasks (135M)
    report.py       the summary in the JSON and the log's table
    wheels.py       --fetch-wheels: the wheels carried to the lent GPU
    factors.py      --write-factors: `adg plan`'s measured factors from a GPU result
"""

from __future__ import annotations

import sys
from pathlib import Path

# On the lent GPU adg is not installed: src/ is put on the path (after the repository root, which
# `python -m` puts first), before any module of this package imports adg; cli.main hands it on to
# the trainer's subprocesses through PYTHONPATH.
try:
    import adg  # noqa: F401
except ImportError:
    sys.path.insert(1, str(Path(__file__).resolve().parents[2] / "src"))
