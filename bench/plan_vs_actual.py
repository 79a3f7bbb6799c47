"""Benchmark: `adg plan --gpu cpu` estimates against a real local run, stage by stage.

Plans N records of a pool with the embedded model on this machine's CPU (peak measured here by the
same matmul `plan` uses), then runs the stages for real (bench/pipeline.py's `time_stages`) and
prints estimate, actual and relative error for generate, embed and score.

    python -m bench.plan_vs_actual [--input POOL] [--records 24] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from adg.io import models
from adg.planning.plan import make_plan
from bench.pipeline import DEFAULT_POOL, time_stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(DEFAULT_POOL))
    ap.add_argument("--records", type=int, default=24)
    ap.add_argument("--num-samples", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    a = ap.parse_args()

    model = str(models.resolve_model(""))
    # Plan exactly the records that will run: the first N of the pool.
    with open(a.input, encoding="utf-8") as src:
        head = [next(src) for _ in range(a.records)]
    pool = Path(tempfile.mkdtemp()) / "pool.jsonl"
    pool.write_text("".join(head))
    plan = make_plan(
        str(pool), model, gpu="cpu", num_samples=a.num_samples, max_new_tokens=a.max_new_tokens
    )
    est = {s.stage: s.seconds for s in plan["stages"]}
    est_generate = est["generate (prefill)"] + est["generate (decode)"]
    actual, work = time_stages(str(pool), a.records, model, a.num_samples, a.max_new_tokens, 8)

    # Generated answers can stop before max_new_tokens: count what was really decoded.
    tok, _ = models.load(model)
    with open(work / "gen.jsonl", encoding="utf-8") as fh:
        answers = [x for line in fh for x in json.loads(line)["generated_answers"]]
    decoded = sum(len(t) for t in tok(answers, add_special_tokens=False)["input_ids"])
    bound = a.records * a.num_samples * a.max_new_tokens

    rows = [
        ("generate", est_generate, actual["generate"]),
        ("embed", est["embed"], actual["embed"]),
        ("score", est["score"], actual["score"]),
    ]
    asm = plan["assumptions"]
    print(f"# bench/plan_vs_actual.py  {time.strftime('%Y-%m-%d')}")
    print(
        f"{a.records} records, K={a.num_samples}, max {a.max_new_tokens} new tokens; CPU peak "
        f"{asm['peak_flops'] / 1e9:.0f} GFLOP/s, efficiency forward {asm['efficiency_forward']:.0%}"
        f" / decode {asm['efficiency_decode']:.0%}"
    )
    print(f"decoded tokens: {decoded} of the planned upper bound {bound} ({decoded / bound:.0%})")
    print()
    print("| stage | estimate (s) | actual (s) | error |")
    print("|---|---|---|---|")
    for name, e, t in rows:
        print(f"| {name} | {e:.1f} | {t:.1f} | {(e - t) / t:+.0%} |")
    e_all, t_all = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"| total | {e_all:.1f} | {t_all:.1f} | {(e_all - t_all) / t_all:+.0%} |")
    print(
        f"\nreproduce: python -m bench.plan_vs_actual --input {a.input} --records {a.records} "
        f"--max-new-tokens {a.max_new_tokens}"
    )


if __name__ == "__main__":
    main()
