"""Benchmark: vectorised `adg.method.selection.select` against the plain-Python procedure.

Synthetic pool: N scores uniform in [0, 1) rounded to 4 decimals (ties happen), bins drawn with
Zipf-like sizes over `--bins` bins. Both implementations run the `reference` strategy on the same
arrays in one process; the table gives seconds and peak traced memory (tracemalloc sees numpy's
buffers too), and checks the outputs are identical.

    python -m bench.selection [--records 1000000] [--bins 1000] [--budget-ratio 0.19]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from adg.method.selection import select
from bench.baselines.reference_selection import plain_reference


def measure(fn, repeats: int = 3):
    """(output, best wall seconds untraced, peak traced bytes of one more traced call)."""
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, min(seconds), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--bins", type=int, default=1000)
    ap.add_argument("--budget-ratio", type=float, default=0.19)
    a = ap.parse_args()

    rng = np.random.default_rng(0)
    scores = rng.random(a.records).round(4)
    weights = 1.0 / np.arange(1, a.bins + 1) ** 0.8
    bins = rng.choice(a.bins, size=a.records, p=weights / weights.sum())
    budget = int(a.records * a.budget_ratio)

    sel, t_vec, m_vec = measure(lambda: select(scores, bins, budget, "reference"))
    exact, t_exact, m_exact = measure(lambda: select(scores, bins, budget, "exact"))
    score_list, bin_list = scores.tolist(), bins.tolist()
    plain, t_plain, m_plain = measure(lambda: plain_reference(score_list, bin_list, budget))
    same = (sel.top.tolist(), sel.middle.tolist(), sel.bottom.tolist()) == plain

    print(f"# bench/selection.py  {time.strftime('%Y-%m-%d')}")
    print(f"{a.records} records, {a.bins} bins, budget {budget}")
    print()
    print("| implementation | seconds | peak memory (MiB) | top |")
    print("|---|---|---|---|")
    print(f"| plain Python, reference | {t_plain:.2f} | {m_plain / 2**20:.0f} | {len(plain[0])} |")
    print(f"| adg select, reference | {t_vec:.2f} | {m_vec / 2**20:.0f} | {len(sel.top)} |")
    print(f"| adg select, exact | {t_exact:.2f} | {m_exact / 2**20:.0f} | {len(exact.top)} |")
    print(f"\nspeed-up (reference): {t_plain / t_vec:.1f}x; identical output: {same}")
    print(
        f"reproduce: python -m bench.selection --records {a.records} --bins {a.bins} "
        f"--budget-ratio {a.budget_ratio}"
    )


if __name__ == "__main__":
    main()
