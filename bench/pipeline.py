"""Benchmark: wall time per stage of the selection pipeline on N real records.

Runs the same library calls the KFP components make (ingest → generate → embed → cluster → score →
select) one after another in this process, with the embedded model unless `--model` is given, and
prints seconds and records/s per stage. With `--kfp` it then runs the identical work through
`adg run` (kfp.local, one subprocess per stage) and prints its total, so the orchestration
overhead (process start, model load per stage) shows as the difference.

    python -m bench.pipeline [--input POOL] [--records 32] [--max-new-tokens 64] [--kfp]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from adg.io import models
from adg.method.clustering import auto_bin_count
from adg.method.hidden import HiddenStateEncoder
from adg.stages.cluster import cluster_file
from adg.stages.embed import embed_file
from adg.stages.generate import SamplingConfig, generate_file
from adg.stages.ingest import ingest
from adg.stages.score import score_file
from adg.stages.select import select_file

REPO = Path(__file__).resolve().parents[1]
DEFAULT_POOL = REPO / "data" / "alpaca_gpt4_sample_200.jsonl"


def time_stages(
    pool: str, n: int, model: str, num_samples: int, max_new_tokens: int, batch_size: int
) -> tuple[dict[str, float], Path]:
    """Run the six stages on the first `n` records of `pool`; seconds per stage, and the folder."""
    work = Path(tempfile.mkdtemp(prefix="adg-bench-"))
    budget = max(1, round(0.2 * n))
    bins = auto_bin_count(n)
    cfg = SamplingConfig(
        num_samples=num_samples, max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    times: dict[str, float] = {}

    def stage(name, fn):
        t = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t

    model = str(models.resolve_model(model))
    stage("ingest", lambda: ingest(pool, work / "pool.jsonl", work / "rejects.jsonl", limit=n))
    stage(
        "generate",
        lambda: generate_file(work / "pool.jsonl", work / "gen.jsonl", model=model, cfg=cfg),
    )
    enc: list[HiddenStateEncoder] = []
    stage("load model (embed, score)", lambda: enc.append(HiddenStateEncoder(*models.load(model))))
    stage("embed", lambda: embed_file(work / "pool.jsonl", work / "emb.npy", encoder=enc[0]))
    stage("cluster", lambda: cluster_file(str(work / "emb.npy"), str(work / "c.npy"), count=bins))
    stage("score", lambda: score_file(work / "gen.jsonl", work / "s.jsonl", encoder=enc[0]))
    stage("select", lambda: select_file(work / "s.jsonl", work / "c.npy", budget, work / "out"))
    return times, work


def stage_mfu(work: Path, model: str, times: dict[str, float]) -> list[str]:
    """MFU of generate (prefill + the tokens really decoded), embed and score in `work`."""
    import json

    from transformers import AutoTokenizer

    from adg.method.prompts import alpaca_prompt
    from adg.planning.plan import count_parameters, measure_cpu_peak

    tok = AutoTokenizer.from_pretrained(model)
    per_block, blocks, head, _ = count_parameters(model)
    full, read = per_block * blocks + head, per_block * (blocks - 1)
    with open(work / "gen.jsonl", encoding="utf-8") as fh:
        gen = [json.loads(line) for line in fh]
    prompts = sum(len(x) for x in tok([alpaca_prompt(r) for r in gen])["input_ids"])
    answers = [a for r in gen for a in r["generated_answers"]]
    decoded = sum(len(x) for x in tok(answers, add_special_tokens=False)["input_ids"])
    instr = sum(len(x) for x in tok([r["instruction"] for r in gen])["input_ids"])
    texts = [f"{r['instruction']} {a}" for r in gen for a in r["generated_answers"] if a.strip()]
    scored = sum(len(x) for x in tok(texts, add_special_tokens=False)["input_ids"])
    peak = measure_cpu_peak()
    rows = [
        ("generate", 2 * full * (prompts + decoded), times["generate"], f"{decoded} decoded"),
        ("embed", 2 * read * instr, times["embed"], f"{instr} tokens"),
        ("score", 2 * read * scored, times["score"], f"{scored} tokens"),
    ]
    lines = [f"peak {peak / 1e9:.0f} GFLOP/s"]
    for name, flops, t, what in rows:
        lines.append(f"{name}: {flops / t / peak:.1%} ({what}, {t:.1f} s)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(DEFAULT_POOL))
    ap.add_argument("--records", type=int, default=32)
    ap.add_argument("--model", default="")
    ap.add_argument("--num-samples", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--kfp", action="store_true", help="also time `adg run` on the same work")
    a = ap.parse_args()

    n = a.records
    model = str(models.resolve_model(a.model))
    times, work = time_stages(a.input, n, model, a.num_samples, a.max_new_tokens, a.batch_size)
    total = sum(times.values())

    print(f"# bench/pipeline.py  {time.strftime('%Y-%m-%d')}")
    print(
        f"{n} records of {Path(a.input).name}, model {a.model or models.EMBEDDED_NAME}, "
        f"K={a.num_samples}, max {a.max_new_tokens} new tokens, {auto_bin_count(n)} bins, "
        f"budget {max(1, round(0.2 * n))}"
    )
    print()
    print("| stage | seconds | share | records/s |")
    print("|---|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {t:.1f} | {t / total:.0%} | {n / t:.2f} |")
    print(f"| total (in-process) | {total:.1f} | 100% | {n / total:.2f} |")
    print()
    print("model FLOP utilisation (what `adg plan` calls efficiency; CPU fp32 matmul peak):")
    for line in stage_mfu(work, model, times):
        print(f"  {line}")

    if a.kfp:
        from adg.cli import main as adg_main

        args = ["run", "--input", a.input, "--limit", str(n), "--model", model]
        args += ["--num-samples", str(a.num_samples), "--max-new-tokens", str(a.max_new_tokens)]
        args += ["--batch-size", str(a.batch_size), "--output-dir", str(work / "kfp")]
        t = time.perf_counter()
        adg_main(args)
        t_kfp = time.perf_counter() - t
        print(f"\n`adg run` (kfp.local) on the same work: {t_kfp:.1f} s ({t_kfp / total:.2f}x)")
    print(
        f"\nreproduce: python -m bench.pipeline --input {a.input} --records {n} "
        f"--max-new-tokens {a.max_new_tokens}" + (" --kfp" if a.kfp else "")
    )


if __name__ == "__main__":
    main()
