"""Benchmark: `adg score` (batched encoder) against the straightforward per-answer scorer.

Both score the same real records with the same model, side by side in one process; the table gives
records/s, tokens/s, the speed-up, the largest score difference, and model FLOP utilisation (MFU)
against a plain fp32 (or bf16 on GPU) matmul measured on this machine.

Records: real Alpaca-GPT4 instructions; as their K answers, the real outputs of K neighbouring
records (scoring cost depends only on text lengths, and this keeps the benchmark free of a slow
generation step).

    python bench/score.py [--records 40] [--baseline-records 12] [--model M] [--k 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/NAME.py`, this folder comes first on sys.path, and its select.py would shadow
# the standard library's `select`; the repository root takes its place.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import platform
import time

import torch

REPO = Path(__file__).resolve().parents[1]
from adg import models
from adg.divergence import ScoreWeights
from adg.hidden import HiddenStateEncoder
from adg.scoring import score_vectors
from bench.baselines import reference_scoring as ref

SHARED = REPO.parent / "shared" / "data" / "alpaca_gpt4_sample_1k.jsonl"
LOCAL = REPO / "data" / "alpaca_gpt4_sample_200.jsonl"


def load_records(n: int, k: int) -> list[dict]:
    path = SHARED if SHARED.exists() else LOCAL
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    recs = []
    for i in range(n):
        r = dict(rows[i % len(rows)])
        r["generated_answers"] = [rows[(i + j + 1) % len(rows)]["output"] for j in range(k)]
        recs.append(r)
    return recs


def count_tokens(tokenizer, recs: list[dict]) -> int:
    texts = [f"{r['instruction']} {a}" for r in recs for a in r["generated_answers"] if a.strip()]
    enc = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=1024)
    return sum(len(x) for x in enc["input_ids"])


def layer_flops_per_token(model, layers_used: int, with_head: bool) -> float:
    """2 · parameters touched per token (decoder blocks used, plus the LM head if computed)."""
    blocks = model.get_decoder().layers
    per_block = sum(p.numel() for p in blocks[0].parameters())
    head = model.get_output_embeddings().weight.numel() if with_head else 0
    return 2.0 * (per_block * layers_used + head)


def matmul_peak(device: str, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=40)
    ap.add_argument("--baseline-records", type=int, default=12)
    ap.add_argument("--model", default="")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    a = ap.parse_args()

    device = models.default_device()
    tokenizer, model = models.load(a.model, device=device)
    dtype = next(model.parameters()).dtype
    recs = load_records(a.records, a.k)
    base_recs = recs[: a.baseline_records]
    n_layers = len(model.get_decoder().layers)

    # Warm-up both paths once (allocator, thread pools, weight table).
    enc = HiddenStateEncoder(tokenizer, model, max_batch_tokens=a.max_batch_tokens)
    enc.answers_batch([recs[0]["instruction"]], [recs[0]["generated_answers"][:2]])
    ref.score_record(tokenizer, model, recs[0])

    def run_adg(rs):
        groups = enc.answers_batch(
            [r["instruction"] for r in rs], [r["generated_answers"] for r in rs]
        )
        return score_vectors(groups, ScoreWeights(), all_metrics=False)

    base_out, t_base = timed(lambda: [ref.score_record(tokenizer, model, r) for r in base_recs])
    adg_base_out, _ = timed(lambda: run_adg(base_recs))
    adg_out, t_adg = timed(lambda: run_adg(recs))
    del adg_out

    diff = max(abs(x["score"] - y["score"]) for x, y in zip(base_out, adg_base_out, strict=True))
    tok_base = count_tokens(tokenizer, base_recs)
    tok_adg = count_tokens(tokenizer, recs)
    peak = matmul_peak(device, dtype)
    f_base = layer_flops_per_token(model, n_layers, with_head=True)
    f_adg = layer_flops_per_token(model, n_layers - 1, with_head=False)

    rows = [
        ("baseline (per answer, batch 1)", len(base_recs), tok_base, t_base, f_base),
        ("adg score (batched)", len(recs), tok_adg, t_adg, f_adg),
    ]
    cpu = platform.processor() or platform.machine()
    print(f"# bench/score.py  {time.strftime('%Y-%m-%d')}  {cpu}")
    print(
        f"model {a.model or models.EMBEDDED_NAME}, device {device}, dtype {dtype}, "
        f"torch threads {torch.get_num_threads()}, K={a.k}; matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    print()
    print("| scorer | records | tokens | seconds | records/s | tokens/s | MFU |")
    print("|---|---|---|---|---|---|---|")
    rate = {}
    for name, n, tok, t, fpt in rows:
        rate[name] = n / t
        mfu = fpt * tok / t / peak
        print(f"| {name} | {n} | {tok} | {t:.2f} | {n / t:.2f} | {tok / t:.0f} | {mfu:.0%} |")
    speedup = rate[rows[1][0]] / rate[rows[0][0]]
    print(f"\nspeed-up (records/s): {speedup:.2f}x; max |score difference| {diff:.2e}")
    print(
        f"\nreproduce: python bench/score.py --records {a.records} "
        f"--baseline-records {a.baseline_records} --k {a.k}"
    )


if __name__ == "__main__":
    main()
