"""Benchmark: reading real pools with `adg.records.read_pool`, this tree against another one.

Pools: the real files in ../shared/data (JSONL, .gz) and each also rewritten as an indented JSON
array (the original ADG repository's format). Each reader runs in its own process with its tree's
`src` first on the path, so the two versions are measured side by side on the same files; the
table gives the best of 3 wall seconds and the records accepted.

    python bench/ingest.py [--other /work/main] [--data ../shared/data]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/ingest.py`, this folder comes first on sys.path, and its select.py would
# shadow the standard library's `select` (subprocess uses it); the repository root replaces it.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import gzip
import json
import subprocess
import tempfile

REPO = Path(__file__).resolve().parents[1]
FILES = (
    "cot_full.jsonl.gz",
    "stanford_alpaca_random9k_full.jsonl.gz",
    "dolly_3k_full.jsonl.gz",
    "alpaca_gpt4_sample_1k.jsonl",
)

TIMER = """
import sys, time
from adg.records import read_pool
best, n = 1e9, 0
for _ in range(3):
    t = time.perf_counter()
    n = len(read_pool(sys.argv[1]).records)
    best = min(best, time.perf_counter() - t)
print(best, n)
"""


def timed(tree: Path, pool: Path) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", TIMER, str(pool)],
        env={"PYTHONPATH": str(tree / "src")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[1])


def as_array(pool: Path, folder: Path) -> Path:
    opener = gzip.open if pool.suffix == ".gz" else open
    with opener(pool, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh if line.strip()]
    target = folder / (pool.name.split(".")[0] + ".json")
    target.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", default="/work/main", help="the tree to compare with")
    ap.add_argument("--data", default=str(REPO.parent.parent / "shared" / "data"))
    args = ap.parse_args()
    other = Path(args.other)
    print(f"| pool | records | {other} s | this tree s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for name in FILES:
            pool = Path(args.data) / name
            for path in (pool, as_array(pool, Path(work))):
                t_other, n_other = timed(other, path)
                t_this, n_this = timed(REPO, path)
                assert n_other == n_this, f"{path.name}: {n_other} vs {n_this} records"
                print(f"| {path.name} | {n_this} | {t_other:.3f} | {t_this:.3f} |")


if __name__ == "__main__":
    main()
