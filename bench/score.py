"""Benchmark: `adg score`'s batched encoder against the straightforward per-answer scorer.

All scorers score the same records with the same model, side by side in one process, in alternating
rounds (the best round of each counts), so the ratios hold even on a busy machine:

- baseline: bench/baselines/reference_scoring.py, one full forward pass per answer at batch size 1;
- batched: `HiddenStateEncoder` as `adg score` runs it (length-sorted batches cut where padded
  tokens plus a per-pass overhead are least, mask-free causal passes, the last block and the LM head
  skipped); `--overheads 512,2048` adds a row per other overhead setting;
- batched, rows × longest: the same encoder with the previous batching policy (greedy batches
  bounded only by rows × their longest text), to show what padding costs on skewed lengths.

Answer sets, both real text with skewed lengths:
- `real`: real Alpaca-GPT4 records; as their K answers, the real outputs of K neighbouring records
  (10 to ~500 tokens);
- `generated`: bench/data/generated_256.jsonl, K=5 answers per instruction sampled by the embedded
  SmolLM2 with `adg generate --max-new-tokens 256` (the file says how it was made).

The table gives seconds, texts/s, tokens/s, padded/real tokens, model FLOP utilisation (MFU:
2 × parameters touched × tokens computed / time / a plain matmul's rate measured in the same run;
attention is left out of the count) and the speed-up over the baseline, plus the FLOP ceiling of
that speed-up (the baseline's parameter FLOPs per token over the batched scorer's).

    python -m bench.score [--records 16] [--answers real,generated] [--rounds 2] [--model M]
    python -m bench.score --random-init --model CONFIG_DIR   # GPU without the weights: same shapes
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from adg.io import models
from adg.method import divergence
from adg.method.hidden import HiddenStateEncoder
from bench.baselines import reference_scoring as ref

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "alpaca_gpt4_sample_1k.jsonl"
LOCAL = REPO / "data" / "alpaca_gpt4_sample_200.jsonl"
GENERATED = REPO / "bench" / "data" / "generated_256.jsonl"


def real_answer_records(n: int, k: int) -> list[dict]:
    path = SHARED if SHARED.exists() else LOCAL
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    recs = []
    for i in range(n):
        r = dict(rows[i % len(rows)])
        r["generated_answers"] = [rows[(i + j + 1) % len(rows)]["output"] for j in range(k)]
        recs.append(r)
    return recs


def generated_records(n: int) -> list[dict]:
    with open(GENERATED, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return rows[:n]


def load_model(spec: str, random_init: bool, device: str):
    if not random_init:
        return models.load(spec or None, device=device)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = models.resolve_model(spec or None)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path), dtype=dtype)
    return AutoTokenizer.from_pretrained(path), model.to(device).eval()


def texts_of(recs: list[dict]) -> list[str]:
    return [f"{r['instruction']} {a}" for r in recs for a in r["generated_answers"] if a.strip()]


def param_flops_per_token(model, blocks: int, with_head: bool) -> float:
    """2 · parameters a token passes through (decoder blocks used, plus the LM head if computed)."""
    layers = model.get_decoder().layers
    per_block = sum(p.numel() for p in layers[0].parameters())
    head = model.get_output_embeddings().weight.numel() if with_head else 0
    return 2.0 * (per_block * blocks + head)


def matmul_rate(device: str, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    _, t = timed(lambda: [a @ b for _ in range(reps)])
    _, t = timed(lambda: [a @ b for _ in range(reps)])
    return 2 * n**3 * reps / t


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def score_groups(groups: list[np.ndarray]) -> np.ndarray:
    d, a = divergence.dispersion_anisotropy(np.stack(groups))
    return divergence.combine(d, a, divergence.ScoreWeights())


class RowsTimesLongest(HiddenStateEncoder):
    """The previous batching policy: greedy over the sorted texts, a batch cut only when rows ×
    its longest text would pass `max_batch_tokens` or rows `max_batch_size`."""

    def _batches(self, lengths):
        batch: list[int] = []
        for idx in np.argsort(-lengths, kind="stable"):
            width = int(lengths[batch[0]]) if batch else int(lengths[idx])
            if batch and (
                (len(batch) + 1) * width > self.max_batch_tokens
                or len(batch) >= self.max_batch_size
            ):
                yield batch
                batch = []
            batch.append(int(idx))
        if batch:
            yield batch


def bench_set(name, recs, tokenizer, model, a, peak):
    n_layers = len(model.get_decoder().layers)
    limits = {"max_batch_tokens": a.max_batch_tokens, "max_batch_size": a.max_batch_size}
    enc_new = HiddenStateEncoder(tokenizer, model, **limits)
    enc_old = RowsTimesLongest(tokenizer, model, **limits)
    others = {
        int(o): HiddenStateEncoder(tokenizer, model, batch_overhead_tokens=int(o), **limits)
        for o in a.overheads.split(",")
        if o
    }
    insts = [r["instruction"] for r in recs]
    answers = [r["generated_answers"] for r in recs]

    def batched(enc):
        def run():
            enc.real_tokens = enc.padded_tokens = 0
            return score_groups(enc.answers_batch(insts, answers))

        return run

    adg_label = f"batched (adg score, overhead {enc_new.batch_overhead_tokens})"
    encoders = {
        "batched, rows × longest": enc_old,
        adg_label: enc_new,
        **{f"batched, overhead {o}": e for o, e in others.items()},
    }
    baseline = "baseline (per answer, batch 1)"
    scorers = {
        baseline: lambda: np.array([ref.score_record(tokenizer, model, r)["score"] for r in recs]),
        **{label: batched(e) for label, e in encoders.items()},
    }
    # Warm-up (allocator, thread pools, kernels), then alternating rounds.
    enc_new.answers_batch(insts[:1], answers[:1])
    ref.score_record(tokenizer, model, recs[0])
    best: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(a.rounds):
        for label, fn in scorers.items():
            out, t = timed(fn)
            outputs[label] = out
            best[label] = min(best.get(label, float("inf")), t)

    texts = texts_of(recs)
    lengths = np.array([len(x) for x in enc_new.tokenize(texts, False, 1024)])
    real = int(lengths.sum())
    padded = {baseline: real, **{label: e.padded_tokens for label, e in encoders.items()}}
    f_base = param_flops_per_token(model, n_layers, with_head=True)
    f_batched = param_flops_per_token(model, n_layers - 1, with_head=False)
    fpt = {baseline: f_base}
    print(
        f"\n## {name}: {len(recs)} records, {len(texts)} texts, {real} real tokens "
        f"(per text min {lengths.min()}, median {int(np.median(lengths))}, max {lengths.max()})\n"
    )
    print("| scorer | seconds | texts/s | real tokens/s | padded/real | MFU | speed-up |")
    print("|---|---|---|---|---|---|---|")
    t_base = best[baseline]
    for label, t in best.items():
        flops = fpt.get(label, f_batched) * padded[label]
        print(
            f"| {label} | {t:.2f} | {len(texts) / t:.1f} | {real / t:.0f} | "
            f"{padded[label] / real:.2f} | {flops / t / peak:.0%} | {t_base / t:.2f}x |"
        )
    diff = np.abs(outputs[adg_label] - outputs[baseline]).max()
    print(
        f"\nmax |score difference| batched vs baseline: {diff:.2e}; FLOP ceiling of the speed-up "
        f"(parameter FLOPs per token, baseline / batched): {f_base / f_batched:.2f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=16)
    ap.add_argument("--k", type=int, default=5, help="answers per record of the `real` set")
    ap.add_argument("--answers", default="real,generated")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="")
    ap.add_argument("--random-init", action="store_true", help="weights from the config, seeded")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--overheads", default="", help="more batch overheads to compare, e.g. 512")
    a = ap.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    device = models.default_device()
    tokenizer, model = load_model(a.model, a.random_init, device)
    dtype = next(model.parameters()).dtype
    peak = matmul_rate(device, dtype)
    where = torch.cuda.get_device_name() if device == "cuda" else platform.machine()
    print(f"# bench/score.py  {time.strftime('%Y-%m-%d')}  {where}")
    print(
        f"model {a.model or models.EMBEDDED_NAME}{' (random init)' if a.random_init else ''}, "
        f"device {device}, dtype {dtype}, torch threads {torch.get_num_threads()}, "
        f"max batch {a.max_batch_tokens} tokens / {a.max_batch_size} rows; "
        f"matmul {peak / 1e9:.1f} GFLOP/s"
    )
    sets = {
        "real": lambda: real_answer_records(a.records, a.k),
        "generated": lambda: generated_records(a.records),
    }
    for name in a.answers.split(","):
        bench_set(name, sets[name](), tokenizer, model, a, peak)
    print(
        f"\nreproduce: python -m bench.score --records {a.records} --answers {a.answers} "
        f"--rounds {a.rounds}"
        + (f" --threads {a.threads}" if a.threads else "")
        + (" --random-init" if a.random_init else "")
    )


if __name__ == "__main__":
    main()
