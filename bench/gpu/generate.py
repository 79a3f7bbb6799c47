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
    PYTHONUNBUFFERED=1 python3 bench/gpu.py 2>&1 | tee $OUT/gpu.log

Then, on the GPU's result only, `python -m bench.gpu --write-factors gpu.json` writes the
measured factors that `adg plan` uses (data/gpu_factors.json, `adg.planning.gpu_factors`).

Without a GPU: `python -m bench.gpu --dry-run` runs the same code on CPU with tiny configs of the
same two families (fp32, 16 new tokens, small batches) in well under 2 minutes; `--quick` shrinks
it further for the fast test tier (tests/test_bench_gpu.py).

    python -m bench.gpu [--output PATH] [--budget-s 450] [--shapes llama3-8b,smollm2-135m]
                        [--skip PART,...] [--dry-run [--quick]]
    python -m bench.gpu --fetch-wheels .whl
    python -m bench.gpu --write-factors RESULTS.json [--factors-file PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python -m bench.NAME`, this folder comes first on sys.path, and its select.py would shadow
# the standard library's `select`; the repository root takes its place (tests import this module,
# and then the path is left alone). On the lent GPU adg is not installed: src/ is put on the path,
# for this process and for the trainer's subprocesses.
REPO = Path(__file__).resolve().parents[2]
try:
    import adg  # noqa: F401
except ImportError:
    sys.path.insert(1, str(REPO / "src"))

import argparse
import contextlib
import dataclasses
import gc
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import re
import signal
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

log = logging.getLogger("bench.gpu")

POOL = REPO / "data" / "alpaca_gpt4_sample_200.jsonl"
EVAL_TASKS_DIR = REPO / "tests" / "lm_eval_tasks"
EVAL_TASKS = ["adg_tiny_mc", "adg_tiny_gen"]
# The paper's cost table: ADG selects at 8.10 examples/s on 4 GPUs with 8B backbones.
PAPER_EXAMPLES_PER_S = 8.10
PAPER_GPUS = 4

# The converted embedded model's config.json (~/.cache/adg/models/SmolLM2-135M-Instruct), the
# fields that decide the shape; and the LLaMA-3-8B shape the issue names.
SHAPES: dict[str, dict[str, Any]] = {
    "llama3-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
    "smollm2-135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "vocab_size": 49152,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
    },
}
# --dry-run: the same two families, tiny (CPU, fp32).
DRY_SHAPES: dict[str, dict[str, Any]] = {
    "llama3-8b": {
        **SHAPES["llama3-8b"],
        "hidden_size": 96,
        "intermediate_size": 256,
        "num_hidden_layers": 5,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 1300,
    },
    "smollm2-135m": {
        **SHAPES["smollm2-135m"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 1100,
    },
}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # pad 0, bos 1, eos 2
BPE_VOCAB = 16384  # asked of the BPE trainer; the in-repository pool reaches ~9.6K
CARRY_HINT = "carry its wheels (python -m bench.gpu --fetch-wheels .whl; see the docstring)"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each part does (GPU run, --dry-run, --quick)."""

    max_new_tokens: int
    batches: dict[str, tuple[int, ...]]  # generate sweep, instructions per batch, per shape
    loop_records: dict[str, int]  # records scored by the per-answer loop
    train_steps: int
    train_accumulation: int
    eval_limit: int | None
    eval_batch_size: int


GPU_SIZES = Sizes(
    max_new_tokens=256,
    batches={"llama3-8b": (8, 32, 96, 192, 384), "smollm2-135m": (16, 64, 256, 512, 1024)},
    loop_records={"llama3-8b": 4, "smollm2-135m": 8},
    train_steps=10,
    train_accumulation=8,
    eval_limit=None,
    eval_batch_size=16,
)
DRY_SIZES = Sizes(
    max_new_tokens=16,
    batches={"llama3-8b": (2, 4), "smollm2-135m": (2, 4)},
    loop_records={"llama3-8b": 2, "smollm2-135m": 2},
    train_steps=2,
    train_accumulation=2,
    eval_limit=4,
    eval_batch_size=4,
)
QUICK_SIZES = dataclasses.replace(
    DRY_SIZES,
    max_new_tokens=6,
    batches={"llama3-8b": (2,), "smollm2-135m": (2,)},
    loop_records={"llama3-8b": 1, "smollm2-135m": 1},
    train_steps=1,
    train_accumulation=1,
    eval_limit=2,
)

# The parts in the order they run: each shape's in turn, then the optional ones, last, only if time
# is left (lm-eval is wanted; ZeRO-2 and compile are extras).
SHAPE_PARTS = {
    "llama3-8b": ["build", "generate", "embed_score", "diagnose", "static_cache", "free"],
    "smollm2-135m": ["build", "generate", "embed_score", "diagnose", "static_cache", "train"],
}
LATE_PARTS = [
    "smollm2-135m.evaluate",
    "smollm2-135m.train_zero2",
    "smollm2-135m.compiled",
    "smollm2-135m.vllm",
]
OPTIONAL = {"smollm2-135m.train_zero2", "smollm2-135m.compiled", "smollm2-135m.vllm"}
# Seconds a part is expected to take on an H200 (the module docstring's budget), and on CPU for the
# dry runs (3 s unless named). A part starts only if its estimate fits in what is left; the
# generate sweep also leaves the estimates of every later part that is not optional.
GPU_ESTIMATES = {
    "llama3-8b.build": 30,
    "llama3-8b.generate": 110,
    "llama3-8b.embed_score": 25,
    "llama3-8b.diagnose": 20,
    "llama3-8b.static_cache": 40,
    "llama3-8b.free": 5,
    "smollm2-135m.build": 15,
    "smollm2-135m.generate": 40,
    "smollm2-135m.embed_score": 10,
    "smollm2-135m.diagnose": 10,
    "smollm2-135m.static_cache": 10,
    "smollm2-135m.train": 30,
    "smollm2-135m.evaluate": 60,
    "smollm2-135m.train_zero2": 180,
    "smollm2-135m.compiled": 150,
    "smollm2-135m.vllm": 90,
}
CPU_ESTIMATES = {"train": 10, "evaluate": 25}


# ----------------------------------------------------------------------------- time and memory


class TimeUp(Exception):
    """Raised by the alarm at the budget's deadline inside a part that overran."""


class Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.used()

    @contextlib.contextmanager
    def alarm(self):
        """SIGALRM at the deadline, when this is the main thread and nobody else uses SIGALRM
        (pytest-timeout does, while a test runs)."""
        usable = (
            threading.current_thread() is threading.main_thread()
            and hasattr(signal, "SIGALRM")
            and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None)
        )
        if not usable:
            yield
            return

        def ring(_signum, _frame):
            raise TimeUp(f"budget of {self.seconds:.0f} s reached")

        signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, max(0.01, self.left()))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


@contextlib.contextmanager
def peak_memory(into: dict[str, Any]):
    """Peak GPU memory allocated inside the block (`peak_bytes`; None on CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    try:
        yield
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            into["peak_bytes"] = int(torch.cuda.max_memory_allocated())
        else:
            into["peak_bytes"] = None


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


# ----------------------------------------------------------------------------- inputs


def pool_records(n: int) -> list[dict[str, Any]]:
    """n real Alpaca-GPT4 records from the in-repository pool, cycled with unique ids."""
    with open(POOL, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [{**rows[i % len(rows)], "id": f"{rows[i % len(rows)]['id']}-{i}"} for i in range(n)]


def write_pool(path: Path, n: int) -> Path:
    from adg.io.jsonl import write_jsonl

    write_jsonl(path, pool_records(n))
    return path


def build_tokenizer(vocab_size: int):
    """Byte-level BPE trained on the in-repository pool, padded with added tokens to vocab_size
    (module docstring: every id then decodes to text that encodes back to one token)."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    texts = [
        " ".join([r["instruction"], r.get("input") or "", r["output"]]) for r in pool_records(200)
    ]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(BPE_VOCAB, vocab_size // 2),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    trained = tok.get_vocab_size()
    bos = tok.token_to_id("<|im_start|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)]
    )
    tok.add_tokens([AddedToken(f"<|v{i}|>", normalized=False) for i in range(trained, vocab_size)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    assert len(fast) == vocab_size, (len(fast), vocab_size)
    return fast, trained


def build_model(fields: dict[str, Any], device: str, seed: int = 0):
    """A Llama-family causal LM from the shape's fields, seeded random weights, made on `device`
    (bf16 on a GPU, fp32 on CPU, as adg.io.models.load loads)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**fields, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


# ----------------------------------------------------------------------------- counting


def parameter_counts(model) -> dict[str, int]:
    """Parameters a token passes through: generated (all blocks + head), read by embed/score (the
    blocks up to the deepest hidden layer read, adg.method.hidden.LAYERS; no head), and in all."""
    from adg.method.hidden import LAYERS

    blocks = model.get_decoder().layers
    per_block = sum(p.numel() for p in blocks[0].parameters())
    head = model.get_output_embeddings().weight.numel()
    deepest = len(blocks) + 1 + max(LAYERS)  # hidden_states[j] is block j-1's output
    return {
        "per_block": per_block,
        "blocks": len(blocks),
        "head": head,
        "generate": per_block * len(blocks) + head,
        "read": per_block * deepest,
        "total": sum(p.numel() for p in model.parameters()),
    }


def kv_bytes_per_token(fields: dict[str, Any], dtype_bytes: int) -> int:
    return (
        2
        * fields["num_hidden_layers"]
        * fields["num_key_value_heads"]
        * fields["head_dim"]
        * dtype_bytes
    )


def vendor_key(name: str) -> str | None:
    """`adg plan --gpu` name of a device name (its GPU_PEAK key), or None."""
    lowered = name.lower()
    for key in ("h200", "h100", "a100", "l4"):
        if re.search(rf"\b{key}\b", lowered):
            return key
    return None


# ----------------------------------------------------------------------------- the run


class Run:
    """Shared state of one benchmark run: settings, ceilings, per-shape objects and the results."""

    def __init__(self, args: argparse.Namespace, command: str):
        import torch

        self.args = args
        self.dry = args.dry_run
        self.device = "cuda" if torch.cuda.is_available() and not self.dry else "cpu"
        if not self.dry and self.device != "cuda":
            raise SystemExit("bench/gpu.py: no CUDA GPU; use --dry-run to run the same code on CPU")
        self.sizes = QUICK_SIZES if args.quick else DRY_SIZES if self.dry else GPU_SIZES
        self.shapes = DRY_SHAPES if self.dry else SHAPES
        self.budget = Budget(args.budget_s)
        self.output = Path(args.output)
        # Scratch (pools, answers, model folders: hundreds of MB) never beside the output: on the
        # lent machine everything under $OUT is sent back.
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="adg-bench-gpu-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.objects: dict[str, dict[str, Any]] = {}
        self.plan = [f"{shape}.{part}" for shape in args.shapes for part in SHAPE_PARTS[shape]]
        self.plan += [n for n in LATE_PARTS if n.split(".")[0] in args.shapes]
        self.results: dict[str, Any] = {
            "schema": 1,
            "script": "bench/gpu.py",
            "command": command,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "dry_run": self.dry,
            "quick": bool(args.quick),
            "budget_s": args.budget_s,
            "workdir": str(self.work),
            "paper": {
                "examples_per_s": PAPER_EXAMPLES_PER_S,
                "gpus": PAPER_GPUS,
                "examples_per_s_per_gpu": PAPER_EXAMPLES_PER_S / PAPER_GPUS,
                "note": "ADG's selection cost in the paper: 8B backbones, vLLM generation",
            },
            "notes": [
                "HF transformers generate was measured; the cluster's vLLM path was not (its "
                "wheels cannot travel to the lent machine): these generate numbers are a floor.",
                "Random weights: answers are forced to max_new_tokens (min_new_tokens); scores "
                "are meaningless, costs are those of the shape.",
                "Model loading and pod start are not counted in any stage time.",
            ],
            "parts": [],
            "shapes": {},
        }

    # ---- bookkeeping

    def save(self) -> None:
        self.results["elapsed_s"] = round(self.budget.used(), 1)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.output.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.output)

    def estimate(self, name: str) -> float:
        if self.dry:
            return CPU_ESTIMATES.get(name.split(".")[-1], 3)
        return GPU_ESTIMATES[name]

    def part(self, name: str, estimate: float, fn: Callable[[], Any]) -> bool:
        """Run one part under the time guard; record its status; rewrite the JSON."""
        entry: dict[str, Any] = {"name": name, "estimate_s": estimate}
        self.results["parts"].append(entry)
        skip = self.args.skip.get(name) or self.args.skip.get(name.split(".")[-1])
        if skip:
            entry.update(status="skipped", reason=skip)
        elif self.budget.left() < estimate:
            entry.update(
                status="skipped",
                reason=f"time: {self.budget.left():.0f} s left, needs ~{estimate:.0f} s",
            )
        else:
            log.info("== %s (budget left %.0f s)", name, self.budget.left())
            t = time.monotonic()
            try:
                with self.budget.alarm():
                    reason = fn()
                entry["status"] = "skipped" if isinstance(reason, str) else "ok"
                if isinstance(reason, str):
                    entry["reason"] = reason
            except TimeUp as err:
                entry.update(status="interrupted", reason=str(err))
            except Exception as err:  # one part failing must not lose the others
                entry.update(status="failed", error=f"{type(err).__name__}: {err}"[:2000])
                log.error("%s failed:\n%s", name, traceback.format_exc())
            free_memory()  # after the handler, whose traceback held the part's tensors
            entry["seconds"] = round(time.monotonic() - t, 2)
        if entry["status"] != "ok":
            log.info(
                "   %s: %s %s", name, entry["status"], entry.get("reason") or entry.get("error")
            )
        self.save()
        return entry["status"] == "ok"

    def shape_results(self, shape: str) -> dict[str, Any]:
        return self.results["shapes"].setdefault(shape, {})

    def need(self, shape: str, key: str, part: str) -> Any:
        obj = self.objects.get(shape, {}).get(key)
        if obj is None:
            raise RuntimeError(f"{shape}: needs {part}, which did not run")
        return obj

    # ---- parts

    def env(self) -> None:
        import numpy
        import torch
        import transformers

        info: dict[str, Any] = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "transformers": transformers.__version__,
            "numpy": numpy.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "packages": {},
        }
        for name in (
            "accelerate",
            "tokenizers",
            "pydantic",
            "lm-eval",
            "datasets",
            "pyarrow",
            "fsspec",
            "huggingface-hub",
            "deepspeed",
        ):
            try:
                info["packages"][name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                info["packages"][name] = None
        if self.device == "cuda":
            props = torch.cuda.get_device_properties(0)
            free, total = torch.cuda.mem_get_info()
            info.update(
                name=props.name,
                capability=f"{props.major}.{props.minor}",
                multiprocessors=props.multi_processor_count,
                memory_total_bytes=total,
                memory_free_bytes=free,
                plan_gpu=vendor_key(props.name),
            )
        else:
            info.update(name=f"cpu ({platform.machine()})", plan_gpu=None)
        self.results["device"] = info
        self.results["ceilings"] = self.ceilings()
        free_memory()

    def ceilings(self) -> dict[str, float]:
        """A large matmul's rate (bf16 on GPU, fp32 on CPU) and a device copy's bandwidth (bytes
        read + written), measured here: the MFU and decode-bound denominators."""
        import torch

        on_gpu = self.device == "cuda"
        n, reps = (8192, 20) if on_gpu else (512, 4)
        dtype = torch.bfloat16 if on_gpu else torch.float32
        a = torch.randn(n, n, device=self.device, dtype=dtype)
        b = torch.randn(n, n, device=self.device, dtype=dtype)
        for _ in range(3):
            a @ b
        _, t = timed(lambda: [a @ b for _ in range(reps)])
        matmul = 2 * n**3 * reps / t
        size = (2 << 30) if on_gpu else (64 << 20)
        src = torch.empty(size, dtype=torch.uint8, device=self.device)
        src.fill_(1)
        dst = torch.empty_like(src)
        dst.copy_(src)
        _, t = timed(lambda: [dst.copy_(src) for _ in range(reps)])
        copy = 2 * size * reps / t
        peak = None
        key = vendor_key(torch.cuda.get_device_name()) if on_gpu else None
        if key:
            from adg.planning.plan import GPU_PEAK

            peak = GPU_PEAK.get(key)
        return {"matmul_flops": matmul, "copy_bytes_per_s": copy, "vendor_peak_flops": peak}

    def build(self, shape: str) -> None:
        from adg.method.hidden import HiddenStateEncoder

        fields = self.shapes[shape]
        res = self.shape_results(shape)
        (tok, trained), t_tok = timed(lambda: build_tokenizer(fields["vocab_size"]))
        with peak_memory(res.setdefault("build", {})):
            model, t_model = timed(lambda: build_model(fields, self.device))
            encoder, t_enc = timed(lambda: HiddenStateEncoder(tok, model))
        counts = parameter_counts(model)
        dtype_bytes = next(model.parameters()).element_size()
        res["config"] = fields
        res["parameters"] = counts
        res["dtype"] = str(next(model.parameters()).dtype)
        res["dtype_bytes"] = dtype_bytes
        res["kv_bytes_per_token"] = kv_bytes_per_token(fields, dtype_bytes)
        res["weights_bytes"] = counts["total"] * dtype_bytes
        res["tokenizer"] = {"bpe_tokens": trained, "padded_to": len(tok)}
        res["build"].update(
            tokenizer_s=round(t_tok, 2), model_s=round(t_model, 2), encoder_s=round(t_enc, 2)
        )
        if self.dry:
            res["dry_run_stand_in_for"] = shape
        self.objects[shape] = {"tokenizer": tok, "model": model, "encoder": encoder}

    # -- generate

    def sampling_config(self, batch_size: int, max_new_tokens: int):
        from adg.config import SamplingConfig

        # The published settings are SamplingConfig's defaults (K=5, T=1.4, top-p 0.9).
        return SamplingConfig(batch_size=batch_size, max_new_tokens=max_new_tokens, seed=0)

    def generate_once(
        self, shape: str, batch: int, max_new_tokens: int, options: dict[str, Any], tag: str
    ) -> dict[str, Any]:
        """One `generate_file` call on `batch` records in one batch; its measurements."""
        from adg.method.prompts import alpaca_prompt
        from adg.stages.generate import HFSampler, generate_file

        obj = self.objects[shape]
        res = self.shape_results(shape)
        tok, model = obj["tokenizer"], obj["model"]
        cfg = self.sampling_config(batch, max_new_tokens)
        sampler = obj.get("sampler")
        if sampler is None:
            sampler = obj["sampler"] = HFSampler(None, cfg, loaded=(tok, model))
        sampler.cfg = cfg
        sampler.generate_options = {"min_new_tokens": max_new_tokens, **options}
        pool = write_pool(self.work / f"{shape}-pool-{batch}.jsonl", batch)
        out = self.work / f"{shape}-generated-{batch}-{tag}.jsonl"
        out.unlink(missing_ok=True)
        before = sampler.tokens
        row: dict[str, Any] = {
            "batch_size": batch,
            "sequences": batch * cfg.num_samples,
            "variant": tag,
        }
        with peak_memory(row):
            _, seconds = timed(lambda: generate_file(pool, out, sampler=sampler))
        new_tokens = sampler.tokens - before
        lengths = [
            len(x) for x in tok([alpaca_prompt(r) for r in pool_records(batch)])["input_ids"]
        ]
        prompt_mean, prompt_max = sum(lengths) / len(lengths), max(lengths)
        p = res["parameters"]["generate"]
        mm = self.results["ceilings"]["matmul_flops"]
        useful = 2 * p * (sum(lengths) + new_tokens)  # prompts once per instruction (vLLM shares)
        computed = (
            2 * p * (row["sequences"] * prompt_max + new_tokens)
        )  # HF prefills K padded copies
        row.update(
            seconds=round(seconds, 3),
            max_new_tokens=max_new_tokens,
            new_tokens=new_tokens,
            tokens_per_s=new_tokens / seconds,
            instructions_per_s=batch / seconds,
            prompt_tokens_mean=prompt_mean,
            prompt_tokens_max=prompt_max,
            prompt_padding_fraction=1 - prompt_mean / prompt_max,
            kv_cache_bytes_at_end=row["sequences"]
            * (prompt_max + max_new_tokens)
            * res["kv_bytes_per_token"],
            mfu=useful / seconds / mm,
            mfu_computed=computed / seconds / mm,
            output=str(out),
        )
        bound = self.decode_bound(shape, row["sequences"], prompt_max, max_new_tokens, sum(lengths))
        row.update(bound)
        row["bound_tokens_per_s"] = new_tokens / bound["bound_s"]
        row["fraction_of_bound"] = bound["bound_s"] / seconds
        log.info(
            "   %s generate b=%d (%s): %.2f s, %.0f tokens/s, MFU %.1f%%, %.0f%% of bound, peak %s",
            shape,
            batch,
            tag,
            seconds,
            row["tokens_per_s"],
            100 * row["mfu"],
            100 * (row["fraction_of_bound"] or 0),
            gib(row["peak_bytes"]),
        )
        return row

    def decode_bound(
        self, shape: str, sequences: int, context: int, new: int, prefill_tokens: int
    ) -> dict[str, Any]:
        """The card's floor for a generate call: each of the `new` steps reads the weights and the
        KV cache (as held: `context` positions per sequence at the start, left padding included)
        once at the measured copy bandwidth, or does 2·P·sequences FLOPs at the measured matmul
        rate, whichever is slower; the prompts are prefilled once (`prefill_tokens`, as vLLM does
        for K samples) at the matmul rate."""
        res = self.shape_results(shape)
        c = self.results["ceilings"]
        p = res["parameters"]["generate"]
        kv_mean = sequences * (context + new / 2) * res["kv_bytes_per_token"]
        memory = (p * res["dtype_bytes"] + kv_mean) / c["copy_bytes_per_s"]
        compute = 2 * p * sequences / c["matmul_flops"]
        step = max(memory, compute)
        return {
            "bound_step_s": step,
            "bound_step_kind": "memory" if memory >= compute else "compute",
            "bound_s": 2 * p * prefill_tokens / c["matmul_flops"] + new * step,
        }

    def generate(self, shape: str) -> None:
        """Warm-up, then the batch sweep; picks the default batch size."""
        import torch

        res = self.shape_results(shape)
        gen = res["generate"] = {"sweep": []}
        max_new = self.sizes.max_new_tokens
        self.generate_once(shape, 2, min(4, max_new), {}, "warmup")
        usable = None
        if self.device == "cuda":
            free, _total = torch.cuda.mem_get_info()
            usable = 0.9 * (free + torch.cuda.memory_reserved())  # reserved: held by this process
            gen["memory_usable_bytes"] = usable
        reserve = self.reserve_after(f"{shape}.generate")
        done: list[dict[str, Any]] = []
        for batch in self.sizes.batches[shape]:
            predicted = predict(done, batch, res["weights_bytes"])
            if usable and predicted["peak_bytes"] and predicted["peak_bytes"] > usable:
                gen["sweep"].append(
                    {
                        "batch_size": batch,
                        "status": "skipped",
                        "reason": (
                            f"predicted peak {gib(predicted['peak_bytes'])} > {gib(usable)}"
                        ),
                    }
                )
                break
            if predicted["seconds"] and self.budget.left() - reserve < predicted["seconds"]:
                gen["sweep"].append(
                    {
                        "batch_size": batch,
                        "status": "skipped",
                        "reason": (
                            f"time: predicted {predicted['seconds']:.0f} s, "
                            f"{self.budget.left() - reserve:.0f} s left before the later parts"
                        ),
                    }
                )
                break
            oom = None
            try:
                row = self.generate_once(shape, batch, max_new, {}, "dynamic")
            except Exception as err:
                if not is_oom(err):
                    raise
                oom = str(err)[:300]
            if oom is not None:  # outside the handler: its traceback holds the tensors
                free_memory()
                gen["sweep"].append({"batch_size": batch, "status": "oom", "error": oom})
                break
            row["status"] = "ok"
            row["predicted_peak_bytes"] = predicted["peak_bytes"]
            done.append(row)
            gen["sweep"].append(row)
        if not done:
            raise RuntimeError("no batch size of the sweep ran")
        best = max(r["tokens_per_s"] for r in done)
        chosen = min(
            (r for r in done if r["tokens_per_s"] >= 0.95 * best), key=lambda r: r["batch_size"]
        )
        gen["chosen_batch_size"] = chosen["batch_size"]
        gen["chosen"] = chosen
        gen["rule"] = "smallest batch within 5% of the best tokens/s among the sizes that ran"
        slope = memory_slope(done)
        if slope and usable:
            base, per_instruction = slope
            gen["memory_per_instruction_bytes"] = per_instruction
            gen["memory_base_bytes"] = base
            gen["largest_fitting_batch_size"] = int((usable - base) // per_instruction)
        self.objects[shape]["generated"] = Path(chosen["output"])
        self.objects[shape]["batch"] = chosen["batch_size"]

    def reserve_after(self, name: str) -> float:
        """Estimated seconds of the parts after `name` that are not optional: what a sweep must
        leave them."""
        later = self.plan[self.plan.index(name) + 1 :]
        return sum(self.estimate(n) for n in later if n not in OPTIONAL)

    # -- embed, score, end to end

    def embed_score(self, shape: str) -> None:
        from adg.io.reading import read_records
        from adg.stages.embed import embed_file
        from adg.stages.score import score_file
        from bench.baselines import reference_scoring as ref

        obj = self.objects[shape]
        res = self.shape_results(shape)
        generated = self.need(shape, "generated", "generate")
        batch = obj["batch"]
        enc, tok, model = obj["encoder"], obj["tokenizer"], obj["model"]
        mm = self.results["ceilings"]["matmul_flops"]
        peak = self.results["ceilings"]["vendor_peak_flops"]
        p_read = res["parameters"]["read"]
        pool = self.work / f"{shape}-pool-{batch}.jsonl"

        # Warm-up: the encoder's first passes (kernels, allocator) stay out of the stage times.
        enc.instruction_vectors(["Name a colour."])
        enc.answers_batch(["Name a colour."], [["Blue.", "Red."]])
        embed: dict[str, Any] = {"instructions": batch}
        enc.real_tokens = enc.padded_tokens = 0
        with peak_memory(embed):
            _, t_embed = timed(
                lambda: embed_file(pool, self.work / f"{shape}-emb.npy", encoder=enc)
            )
        embed.update(seconds=round(t_embed, 4), **token_stats(enc, p_read, t_embed, mm, peak))

        score: dict[str, Any] = {"instructions": batch}
        scored = self.work / f"{shape}-scored.jsonl"
        scored.unlink(missing_ok=True)
        enc.real_tokens = enc.padded_tokens = 0
        with peak_memory(score):
            _, t_score = timed(lambda: score_file(generated, scored, encoder=enc))
        score.update(seconds=round(t_score, 4), **token_stats(enc, p_read, t_score, mm, peak))
        records = read_records(generated)
        answers = [a for r in records for a in r["generated_answers"]]
        answer_tokens = [len(x) for x in tok(answers, add_special_tokens=False)["input_ids"]]
        score["texts"] = len(answers)
        score["answer_tokens_mean"] = sum(answer_tokens) / len(answer_tokens)
        score["answer_tokens_max"] = max(answer_tokens)

        n_loop = min(self.sizes.loop_records[shape], len(records))
        loop: dict[str, Any] = {"records": n_loop}
        with peak_memory(loop):
            _, t_loop = timed(lambda: [ref.score_record(tok, model, r) for r in records[:n_loop]])
        loop["seconds"] = round(t_loop, 4)
        loop["seconds_per_record"] = t_loop / n_loop
        loop["batched_seconds_per_record"] = t_score / batch
        loop["speedup_batched"] = loop["seconds_per_record"] / (t_score / batch)

        t_gen = res["generate"]["chosen"]["seconds"]
        e2e = {
            "instructions": batch,
            "generate_s": t_gen,
            "embed_s": t_embed,
            "score_s": t_score,
            "examples_per_s": batch / (t_gen + t_embed + t_score),
            "generate_share": t_gen / (t_gen + t_embed + t_score),
            "paper_examples_per_s_per_gpu": PAPER_EXAMPLES_PER_S / PAPER_GPUS,
            "generate_path": "HF transformers (the cluster's vLLM path was not measured: a floor)",
        }
        e2e["ratio_to_paper"] = e2e["examples_per_s"] / e2e["paper_examples_per_s_per_gpu"]
        res.update(embed=embed, score=score, score_per_answer_loop=loop, end_to_end=e2e)
        log.info(
            "   %s end to end: %.2f examples/s on one %s (paper: %.2f per GPU, vLLM); "
            "generate %.0f%% of it",
            shape,
            e2e["examples_per_s"],
            self.device,
            e2e["paper_examples_per_s_per_gpu"],
            100 * e2e["generate_share"],
        )

    # -- why generate is where it is

    def diagnose(self, shape: str) -> None:
        obj = self.objects[shape]
        res = self.shape_results(shape)
        batch = self.need(shape, "batch", "generate")
        model, fields = obj["model"], self.shapes[shape]
        chosen = res["generate"]["chosen"]
        max_new = chosen["max_new_tokens"]
        diag: dict[str, Any] = res.setdefault("diagnose", {"batch_size": batch})

        # Twice, the faster counts: the first call at a new shape can pay one-time costs.
        prefill = min(
            (self.generate_once(shape, batch, 1, {}, "prefill-only") for _ in range(2)),
            key=lambda r: r["seconds"],
        )
        diag["prefill_only"] = prefill
        step_generate = (chosen["seconds"] - prefill["seconds"]) / max(1, max_new - 1)
        diag["decode_step_generate_s"] = step_generate

        cfg = self.sampling_config(batch, max_new)
        seq = batch * cfg.num_samples
        context = chosen["prompt_tokens_max"] + max_new // 2
        vocab = fields["vocab_size"]
        try:
            diag["decode_step_model_s"] = model_step_seconds(model, seq, context, vocab)
            diag["decode_step_model_context"] = context
        except Exception as err:
            if not is_oom(err):
                raise
            diag["decode_step_model_s"] = None
            diag["decode_step_model_error"] = str(err)[:300]
        free_memory()
        diag["sampling_step_s"] = sampling_step_seconds(seq, vocab, cfg, model.device)
        free_memory()

        model_step = diag.get("decode_step_model_s")
        if model_step is not None:
            diag["generate_loop_overhead_step_s"] = (
                step_generate - model_step - diag["sampling_step_s"]
            )
        bound = self.decode_bound(shape, seq, chosen["prompt_tokens_max"], max_new, 0)
        diag["bound_step_s"] = bound["bound_step_s"]
        diag["bound_step_kind"] = bound["bound_step_kind"]
        diag["decode_step_fraction_of_bound"] = bound["bound_step_s"] / step_generate
        diag["prompt_padding_fraction"] = chosen["prompt_padding_fraction"]
        diag["kv_cache_bytes_at_end"] = chosen["kv_cache_bytes_at_end"]
        # generate's decode rate against the vendor peak: adg plan's decode factor
        peak = self.results["ceilings"]["vendor_peak_flops"]
        decode_s = chosen["seconds"] - prefill["seconds"]
        p = res["parameters"]["generate"]
        diag["decode_plan_efficiency"] = (
            2 * p * chosen["new_tokens"] / decode_s / peak if peak and decode_s > 0 else None
        )
        parts = {
            "model forward": model_step,
            "sampling (temperature, top-p, multinomial)": diag["sampling_step_s"],
            "generate loop (the rest)": diag.get("generate_loop_overhead_step_s"),
        }
        known = {k: v for k, v in parts.items() if v is not None}
        diag["largest_share"] = max(known, key=lambda k: known[k]) if known else None
        log.info(
            "   %s decode step: generate %.1f ms = model %s + sampling %.1f ms + loop %s; "
            "bound %.1f ms (%s)",
            shape,
            1e3 * step_generate,
            ms(model_step),
            1e3 * diag["sampling_step_s"],
            ms(diag.get("generate_loop_overhead_step_s")),
            1e3 * bound["bound_step_s"],
            bound["bound_step_kind"],
        )

    def static_cache(self, shape: str, compiled: bool = False) -> str | None:
        """generate at the chosen batch with a static KV cache (eager), or static and compiled
        (transformers compiles the forward itself for a static cache on a GPU)."""
        res = self.shape_results(shape)
        batch = self.need(shape, "batch", "generate")
        max_new = res["generate"]["chosen"]["max_new_tokens"]
        if compiled:
            if self.device != "cuda":
                return "transformers compiles generate's forward on a GPU only"
            options = {"cache_implementation": "static"}
            first = self.generate_once(shape, batch, max_new, options, "static-compiled-first")
            second = self.generate_once(shape, batch, max_new, options, "static-compiled")
            res.setdefault("generate", {})["static_compiled"] = {
                "first_call": first,
                "second_call": second,
                "compile_s": first["seconds"] - second["seconds"],
                "speedup_over_dynamic": res["generate"]["chosen"]["seconds"] / second["seconds"],
            }
            return None
        options = {"cache_implementation": "static", "disable_compile": True}
        row = self.generate_once(shape, batch, max_new, options, "static")
        row["speedup_over_dynamic"] = res["generate"]["chosen"]["seconds"] / row["seconds"]
        res["generate"]["static"] = row
        return None

    def free(self, shape: str) -> None:
        self.objects.pop(shape, None)
        free_memory()

    # -- train and evaluate (135M)

    def save_model(self, shape: str) -> Path:
        obj = self.objects[shape]
        folder = obj.get("folder")
        if folder is None:
            folder = self.work / f"{shape}-model"
            obj["model"].save_pretrained(folder)
            obj["tokenizer"].save_pretrained(folder)
            obj["folder"] = folder
        return folder

    def train_config(self, shape: str, name: str, deepspeed: str):
        from adg.config import TrainConfig
        from adg.io.jsonl import write_jsonl

        data = self.work / "train.jsonl"
        write_jsonl(data, pool_records(200))
        return TrainConfig(
            data=str(data),
            output_dir=str(self.work / f"{shape}-{name}"),
            model=str(self.save_model(shape)),
            max_steps=self.sizes.train_steps,
            gradient_accumulation_steps=self.sizes.train_accumulation,
            deepspeed=deepspeed,
            save_steps=10**6,
            logging_steps=1,
        )

    def train_summary(self, cfg, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
        from adg.stages.train import encode_all

        tok = self.objects["smollm2-135m"]["tokenizer"]
        examples, _ = encode_all(pool_records(200), tok, cfg.model_max_length)
        mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)
        sequences = metrics["steps"] * cfg.per_device_batch_size * cfg.gradient_accumulation_steps
        return {
            "steps": metrics["steps"],
            "sequences": sequences,
            "mean_example_tokens": mean_len,
            "tokens_per_s_approx": mean_len * sequences / seconds,
            "seconds": round(seconds, 2),
            "runtime_s_with_load": metrics.get("runtime_s"),
            "first_loss": metrics.get("first_loss"),
            "final_loss": metrics.get("final_loss"),
            "batch": f"{cfg.per_device_batch_size} x {cfg.gradient_accumulation_steps}",
            "output_dir": cfg.output_dir,
        }

    def train(self, shape: str) -> None:
        from adg.stages import train as training

        res = self.shape_results(shape)
        cfg = self.train_config(shape, "trained", deepspeed="")
        entry: dict[str, Any] = {
            "deepspeed": None,
            "precision": "bf16 autocast" if self.device == "cuda" else "fp32",
        }
        with peak_memory(entry):
            metrics, seconds = timed(lambda: training.train(cfg))
        entry.update(self.train_summary(cfg, metrics, seconds))
        res["train"] = entry
        self.objects[shape]["trained"] = Path(cfg.output_dir)

    def train_zero2(self, shape: str) -> str | None:
        """The train stage under torchrun + DeepSpeed ZeRO-2 (the shipped ZeRO-3 config with stage
        2), when DeepSpeed is importable on a GPU."""
        from adg.stages import train as training

        if self.device != "cuda":
            return "DeepSpeed needs a CUDA GPU"
        if importlib.util.find_spec("deepspeed") is None:
            return f"DeepSpeed is not installed: {CARRY_HINT}"
        shipped = json.loads(
            (training.configs_dir() / training.DEEPSPEED_CONFIGS["zero3"]).read_text()
        )
        zero = {
            k: v
            for k, v in shipped["zero_optimization"].items()
            if not k.startswith(("stage3", "sub_group"))
        }
        zero["stage"] = 2
        config = {**shipped, "zero_optimization": zero}
        path = self.work / "deepspeed_zero2.json"
        path.write_text(json.dumps(config, indent=2))
        os.environ.setdefault("DS_ACCELERATOR", "cuda")
        cfg = self.train_config(shape, "trained-zero2", deepspeed=str(path))
        metrics, seconds = timed(lambda: training.launch(cfg))
        entry = {
            "deepspeed": "ZeRO-2 (shipped zero3 config with stage 2)",
            "deepspeed_version": importlib.metadata.version("deepspeed"),
            "config": config,
            "peak_bytes": None,
            "note": "torchrun worker: its memory is not seen by this process; time includes the "
            "worker's start and DeepSpeed's init (torch's fused AdamW: nothing is JIT-built)",
        }
        entry.update(self.train_summary(cfg, metrics, seconds))
        self.shape_results(shape)["train_zero2"] = entry
        return None

    def evaluate(self, shape: str) -> str | None:
        from adg.stages.evaluate import EvalConfig, evaluate, flatten

        if importlib.util.find_spec("lm_eval") is None:
            return f"lm-eval is not installed: {CARRY_HINT}"
        model = self.objects.get(shape, {}).get("trained") or self.save_model(shape)
        cfg = EvalConfig(
            model=str(model),
            tasks=list(EVAL_TASKS),
            num_fewshot=2,
            limit=self.sizes.eval_limit,
            include_path=[str(EVAL_TASKS_DIR)],
            backend="hf",
            batch_size=self.sizes.eval_batch_size,
        )
        entry: dict[str, Any] = {"model": str(model), "tasks": EVAL_TASKS, "limit": cfg.limit}
        with peak_memory(entry):
            results, seconds = timed(lambda: evaluate(cfg))
        entry["seconds"] = round(seconds, 2)
        entry["metrics"] = flatten(results)
        entry["samples"] = {t: (results.get("n-samples") or {}).get(t) for t in EVAL_TASKS}
        self.shape_results(shape)["evaluate"] = entry
        return None

    def vllm(self, shape: str) -> str | None:
        """The vLLM sampler's `gpu` test (tests/test_vllm_sampler.py, `full_vllm_run`): the
        project's `VLLMSampler` with a real engine on the saved model, the same records sampled
        twice and alone, answers compared."""
        if self.device != "cuda":
            return "vLLM needs a CUDA GPU"
        if importlib.util.find_spec("vllm") is None:
            return "vLLM is not installed here (the generate image carries it)"
        tests = str(REPO / "tests")
        if tests not in sys.path:
            sys.path.insert(0, tests)
        from test_vllm_sampler import full_vllm_run

        entry = full_vllm_run(str(self.save_model(shape)))
        entry["vllm_version"] = importlib.metadata.version("vllm")
        self.shape_results(shape)["vllm"] = entry
        return None

    # ---- the plan

    def run(self) -> None:
        self.part("env", 0, self.env)  # always: the ceilings every other part divides by
        if "device" not in self.results:
            raise SystemExit("bench/gpu.py: the env part failed; see the log")
        actions = {
            "build": self.build,
            "generate": self.generate,
            "embed_score": self.embed_score,
            "diagnose": self.diagnose,
            "static_cache": self.static_cache,
            "free": self.free,
            "train": self.train,
            "evaluate": self.evaluate,
            "train_zero2": self.train_zero2,
            "compiled": lambda shape: self.static_cache(shape, compiled=True),
            "vllm": self.vllm,
        }
        for name in self.plan:
            shape, part = name.split(".")
            self.part(name, self.estimate(name), lambda fn=actions[part], s=shape: fn(s))
        self.results["summary"] = summary(self.results)
        self.save()
        for line in table(self.results):
            log.info("%s", line)
        log.info("results: %s", self.output)


def model_step_seconds(model, sequences: int, context: int, vocab: int, steps: int = 8) -> float:
    """One bare decode step of the model (no sampling, no generate loop): `sequences` rows on a
    dynamic KV cache already holding `context` positions (random keys and values, so no prefill's
    activations are needed), the mean of `steps` steps after one warm-up."""
    import warnings

    import torch
    from transformers import DynamicCache

    config = model.config
    shape = (sequences, config.num_key_value_heads, context, config.head_dim)
    dtype, device = next(model.parameters()).dtype, model.device
    gen = torch.Generator(device=device).manual_seed(0)
    cache = DynamicCache()
    for layer in range(config.num_hidden_layers):
        k = torch.randn(shape, dtype=dtype, device=device, generator=gen)
        cache.update(k, torch.randn(shape, dtype=dtype, device=device, generator=gen), layer)
    nxt = torch.randint(3, vocab, (sequences, 1), device=device, generator=gen)

    def steps_():
        for _ in range(steps):
            model(input_ids=nxt, past_key_values=cache, use_cache=True)

    # `past_key_values` is what the device's transformers (5.17) takes; later ones call it
    # `cache` and warn about the old name.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model(input_ids=nxt, past_key_values=cache, use_cache=True)
        _, t = timed(steps_)
    return t / steps


def sampling_step_seconds(sequences: int, vocab: int, cfg, device, steps: int = 8) -> float:
    """One sampling step as transformers' generate does it (temperature and top-p warpers,
    softmax, multinomial) on random [sequences, vocab] float32 logits."""
    import torch
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList(
        [TemperatureLogitsWarper(cfg.temperature), TopPLogitsWarper(cfg.top_p)]
    )
    gen = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(sequences, vocab, device=device, generator=gen, dtype=torch.float32)
    prefix = torch.zeros(sequences, 1, dtype=torch.long, device=device)

    def steps_():
        for _ in range(steps):
            scores = warpers(prefix, logits.clone())
            torch.multinomial(torch.softmax(scores, dim=-1), 1)

    steps_()
    _, t = timed(steps_)
    return t / steps


def token_stats(
    enc, params: int, seconds: float, matmul: float, peak: float | None
) -> dict[str, Any]:
    useful = 2 * params * enc.real_tokens
    return {
        "real_tokens": enc.real_tokens,
        "padded_tokens": enc.padded_tokens,
        "padded_over_real": enc.padded_tokens / max(1, enc.real_tokens),
        "tokens_per_s": enc.real_tokens / seconds,
        "mfu": useful / seconds / matmul,
        "plan_efficiency": useful / seconds / peak if peak else None,
    }


def predict(done: list[dict[str, Any]], batch: int, weights: int) -> dict[str, float | None]:
    """Peak memory and seconds of the next sweep size from the sizes that ran: memory linear in
    the batch (through the two largest points, or from the weights), time at most proportional."""
    if not done:
        return {"peak_bytes": None, "seconds": None}
    last = done[-1]
    slope = memory_slope(done)
    if slope:
        base, per = slope
        peak = base + per * batch
    elif last["peak_bytes"] is not None:
        peak = weights + (last["peak_bytes"] - weights) * batch / last["batch_size"]
    else:
        peak = None
    return {"peak_bytes": peak, "seconds": last["seconds"] * batch / last["batch_size"]}


def memory_slope(done: list[dict[str, Any]]) -> tuple[float, float] | None:
    rows = [r for r in done if r.get("peak_bytes") is not None]
    if len(rows) < 2 or rows[-1]["batch_size"] == rows[-2]["batch_size"]:
        return None
    a, b = rows[-2], rows[-1]
    per = (b["peak_bytes"] - a["peak_bytes"]) / (b["batch_size"] - a["batch_size"])
    if per <= 0:
        return None
    return b["peak_bytes"] - per * b["batch_size"], per


def gib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.1f} GiB"


def ms(s: float | None) -> str:
    return "n/a" if s is None else f"{1e3 * s:.1f} ms"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summary(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape, res in results["shapes"].items():
        gen = res.get("generate", {})
        chosen = gen.get("chosen") or {}
        e2e = res.get("end_to_end") or {}
        out[shape] = {
            "chosen_batch_size": gen.get("chosen_batch_size"),
            "generate_tokens_per_s": chosen.get("tokens_per_s"),
            "generate_mfu": chosen.get("mfu"),
            "generate_fraction_of_decode_bound": chosen.get("fraction_of_bound"),
            "static_cache_speedup": (gen.get("static") or {}).get("speedup_over_dynamic"),
            "examples_per_s": e2e.get("examples_per_s"),
            "paper_examples_per_s_per_gpu": e2e.get("paper_examples_per_s_per_gpu"),
            "score_mfu": (res.get("score") or {}).get("mfu"),
            "score_speedup_over_per_answer_loop": (res.get("score_per_answer_loop") or {}).get(
                "speedup_batched"
            ),
            "peak_bytes": {
                stage: (res.get(stage) or {}).get("peak_bytes")
                for stage in ("build", "embed", "score", "train", "evaluate")
            }
            | {"generate": chosen.get("peak_bytes")},
        }
    return out


def table(results: dict[str, Any]) -> list[str]:
    """The log's summary: a Markdown table of every measured row, then the end-to-end lines."""
    dev, c = results.get("device", {}), results.get("ceilings", {})
    lines = [
        "",
        f"# bench/gpu.py  {results['date']}  {dev.get('name')}  torch {dev.get('torch')}  "
        f"transformers {dev.get('transformers')}"
        + ("  (DRY RUN: tiny models on CPU)" if results["dry_run"] else ""),
        f"matmul {c.get('matmul_flops', 0) / 1e12:.3g} TFLOP/s, copy "
        f"{c.get('copy_bytes_per_s', 0) / 1e12:.3g} TB/s (measured here); {results['command']}",
        "",
        "| shape | stage | batch | seconds | tokens/s | MFU | of bound | peak memory | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def add(shape: str, stage: str, batch: Any = "", seconds: str = "", tps: str = "",
            mfu: str = "", bound: str = "", peak: str = "", note: str = "") -> None:  # fmt: skip
        cells = (shape, stage, batch, seconds, tps, mfu, bound, peak, note)
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")

    def gen_row(shape: str, label: str, row: dict[str, Any], batch: Any, note: str = "") -> None:
        add(shape, label, batch, f"{row['seconds']:.2f}", f"{row['tokens_per_s']:.0f}",
            pct(row["mfu"]), pct(row["fraction_of_bound"]), gib(row["peak_bytes"]),
            note)  # fmt: skip

    for shape, res in results["shapes"].items():
        gen = res.get("generate", {})
        for row in gen.get("sweep", []):
            if row.get("status") != "ok":
                why = row.get("reason") or row.get("error", "")
                add(shape, "generate", row["batch_size"], note=f"{row['status']}: {why}")
                continue
            default = " (default)" if row["batch_size"] == gen.get("chosen_batch_size") else ""
            gen_row(shape, "generate, dynamic cache", row, f"{row['batch_size']}{default}")
        if gen.get("static"):
            row = gen["static"]
            note = f"{row['speedup_over_dynamic']:.2f}x dynamic"
            gen_row(shape, "generate, static cache", row, row["batch_size"], note)
        if gen.get("static_compiled"):
            row = gen["static_compiled"]["second_call"]
            note = f"compile {gen['static_compiled']['compile_s']:.0f} s"
            gen_row(shape, "generate, static + compiled", row, row["batch_size"], note)
        for stage in ("embed", "score"):
            row = res.get(stage)
            if row:
                add(shape, stage, row["instructions"], f"{row['seconds']:.2f}",
                    f"{row['tokens_per_s']:.0f}", pct(row["mfu"]), peak=gib(row["peak_bytes"]),
                    note=f"padded/real {row['padded_over_real']:.2f}")  # fmt: skip
        loop = res.get("score_per_answer_loop")
        if loop:
            add(shape, "score, per-answer loop", loop["records"], f"{loop['seconds']:.2f}",
                peak=gib(loop["peak_bytes"]),
                note=f"batched {loop['speedup_batched']:.1f}x faster")  # fmt: skip
        diag = res.get("diagnose")
        if diag:
            loop_s = diag.get("generate_loop_overhead_step_s")
            note = (
                f"model {ms(diag.get('decode_step_model_s'))}, sampling "
                f"{ms(diag['sampling_step_s'])}, loop {ms(loop_s)}"
            )
            add(shape, f"one decode step at batch {diag['batch_size']}",
                seconds=ms(diag["decode_step_generate_s"]),
                bound=pct(diag["decode_step_fraction_of_bound"]), note=note)  # fmt: skip
        for stage in ("train", "train_zero2"):
            row = res.get(stage)
            if row:
                add(shape, f"{stage} ({row['steps']} steps, {row['batch']})",
                    seconds=f"{row['seconds']:.2f}", tps=f"~{row['tokens_per_s_approx']:.0f}",
                    peak=gib(row["peak_bytes"]),
                    note=f"loss {row['first_loss']:.3g} -> {row['final_loss']:.3g}")  # fmt: skip
        if res.get("evaluate"):
            ev = res["evaluate"]
            add(shape, "evaluate (lm-eval, local tasks)", seconds=f"{ev['seconds']:.2f}",
                peak=gib(ev["peak_bytes"]))  # fmt: skip
    lines.append("")
    where = "CPU (dry run)" if results["dry_run"] else "GPU"
    for shape, res in results["shapes"].items():
        e2e = res.get("end_to_end")
        if e2e:
            lines.append(
                f"{shape}: {e2e['examples_per_s']:.2f} examples/s end to end on one {where} "
                f"(generate {100 * e2e['generate_share']:.0f}% of it); the paper: "
                f"{e2e['paper_examples_per_s_per_gpu']:.2f} per GPU with vLLM. HF decode, measured "
                "here, is a floor; vLLM was not measured."
            )
    for p in results["parts"]:
        if p["status"] != "ok":
            lines.append(f"part {p['name']}: {p['status']} ({p.get('reason') or p.get('error')})")
    return lines


# ----------------------------------------------------------------------------- wheels, factors

# What the lent GPU lacks (its package list: the device guide's KINDS.md), by lock file.
CARRIED_BINARY = {
    "images/eval/requirements.txt": [
        "pydantic",
        "pydantic-core",
        "annotated-types",
        "typing-inspection",
        "lm-eval",
        "datasets",
        "evaluate",
        "dill",
        "multiprocess",
        "pytablewriter",
        "dataproperty",
        "mbstrdecoder",
        "pathvalidate",
        "tabledata",
        "tcolorpy",
        "typepy",
        "chardet",
        "nltk",
        "more-itertools",
    ],
    "images/train/requirements.txt": ["hjson"],
}
CARRIED_SOURCE = {  # published as sources only: built here into pure-Python wheels
    "images/eval/requirements.txt": ["rouge-score", "sqlitedict", "word2number"],
    "images/train/requirements.txt": ["deepspeed"],
}
DEVICE_PLATFORM = [
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_27_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "manylinux1_x86_64",
]


def locked(lock: str, names: list[str]) -> list[str]:
    pins = {}
    for line in (REPO / lock).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"{lock}: no pin for {', '.join(missing)}")
    return [f"{n}=={pins[n]}" for n in names]


def fetch_wheels(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    binary = [spec for lock, names in CARRIED_BINARY.items() for spec in locked(lock, names)]
    source = [spec for lock, names in CARRIED_SOURCE.items() for spec in locked(lock, names)]
    pip = [sys.executable, "-m", "pip"]
    download = [
        *pip,
        "download",
        "--no-deps",
        "--only-binary=:all:",
        *DEVICE_PLATFORM,
        "-d",
        str(folder),
    ]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(folder)]
    for cmd in ([*download, *binary], [*build, *source]):
        log.info("%s", " ".join(cmd))
        subprocess.run(cmd, check=True)
    size = sum(f.stat().st_size for f in folder.glob("*.whl"))
    log.info("%d wheels, %.1f MiB in %s", len(list(folder.glob("*.whl"))), size / 2**20, folder)


def write_factors(results_path: Path, factors_file: Path) -> None:
    """Add the measured 8B-shape factors of a GPU result to the factors file of `adg plan`."""
    from adg.planning.gpu_factors import load

    results = json.loads(results_path.read_text(encoding="utf-8"))
    if results.get("dry_run"):
        raise SystemExit(f"{results_path}: a dry run (CPU, tiny models) measures no GPU factor")
    key = (results.get("device") or {}).get("plan_gpu")
    if not key:
        raise SystemExit(
            f"{results_path}: device {(results.get('device') or {}).get('name')!r} "
            "is none of adg plan's --gpu cards"
        )
    shape = "llama3-8b"
    res = results["shapes"].get(shape) or {}
    forward = (res.get("score") or {}).get("plan_efficiency")
    decode = (res.get("diagnose") or {}).get("decode_plan_efficiency")
    if not forward or not decode:
        raise SystemExit(
            f"{results_path}: the {shape} score or diagnose part did not run; no factors"
        )
    data = json.loads(factors_file.read_text(encoding="utf-8"))
    data["devices"][key] = {
        "forward": round(forward, 4),
        "decode": round(decode, 4),
        "device": results["device"]["name"],
        "date": results["date"],
        "shape": shape,
        "command": results["command"],
    }
    factors_file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    load(factors_file)  # the file still reads
    log.info("%s: %s forward %.3f, decode %.3f", factors_file, key, forward, decode)


# ----------------------------------------------------------------------------- main


def default_output() -> str:
    out = os.environ.get("OUT")
    if out:
        return str(Path(out) / "gpu.json")
    return str(REPO / "runs" / f"gpu-{time.strftime('%Y%m%d-%H%M%S')}.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="", help="results JSON (default $OUT/gpu.json or runs/)")
    ap.add_argument("--workdir", default="", help="scratch files (default: a temporary folder)")
    ap.add_argument("--budget-s", type=float, default=0, help="seconds (default 450; dry run 300)")
    ap.add_argument("--shapes", default="llama3-8b,smollm2-135m")
    ap.add_argument("--skip", default="", help="parts to leave out, e.g. compiled,train_zero2")
    ap.add_argument("--dry-run", action="store_true", help="same code on CPU, tiny models")
    ap.add_argument("--quick", action="store_true", help="with --dry-run: smaller still (tests)")
    ap.add_argument("--fetch-wheels", metavar="DIR", help="download/build the carried wheels")
    ap.add_argument("--write-factors", metavar="RESULTS", help="adg plan's factors from a result")
    ap.add_argument("--factors-file", default=str(REPO / "data" / "gpu_factors.json"))
    args = ap.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
        )
    log.setLevel(logging.INFO)
    if args.fetch_wheels:
        fetch_wheels(Path(args.fetch_wheels))
        return 0
    if args.write_factors:
        write_factors(Path(args.write_factors), Path(args.factors_file))
        return 0
    if args.quick and not args.dry_run:
        ap.error("--quick only shrinks a --dry-run")
    args.output = args.output or default_output()
    # A dry run takes 1-2 minutes; its budget only keeps a loaded CI machine from skipping parts.
    args.budget_s = args.budget_s or (300 if args.dry_run else 450)
    args.shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {unknown}; choose from {list(SHAPES)}")
    args.skip = {s: "--skip" for s in args.skip.split(",") if s}
    if args.quick:  # lm-eval's task index alone takes ~20 s of CPU; the plain --dry-run runs it
        args.skip.setdefault("evaluate", "--quick leaves lm-eval out (--dry-run runs it)")
    os.environ.setdefault("ADG_PROGRESS", "0")
    # The trainer's torchrun workers import adg too: from src/ when it is not installed.
    src = str(REPO / "src")
    if src in sys.path:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [src, os.environ.get("PYTHONPATH")])
        )
    command = "python -m bench.gpu" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    import torch

    threads = torch.get_num_threads()
    if args.dry_run:  # tiny matrices: one thread, which a busy machine does not stall
        torch.set_num_threads(1)
    try:
        Run(args, command).run()
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
