"""Benchmark: ingest of real pools, this tree against another one, and JSONL against Parquet.

1. `read_pool` of this tree and of `--other` (each in its own process with its tree's `src` first
   on the path) on the real files in ../shared/data (JSONL, .gz) and each rewritten as an indented
   JSON array (the original ADG repository's format): best of 3 wall seconds, records accepted.
2. `adg.stages.ingest.ingest` (the stage: validated pool.jsonl, rejects and the pool's own records
   kept for the hand-back) of the same real pools as JSONL and as Parquet: best of 3 seconds and
   the peak RSS of the process, next to the RSS of the same process after its imports.
3. The same at scale: `--rows` rows (default 1M) made by cycling the real records of every pool
   above (unique ids), once as JSONL and once as Parquet, one run each. Peak RSS shows whether
   memory grows with the pool (records are streamed; what stays is one id per record).

    python -m bench.ingest [--other /work/main] [--data ../shared/data] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = (
    "cot_full.jsonl.gz",
    "stanford_alpaca_random9k_full.jsonl.gz",
    "dolly_3k_full.jsonl.gz",
    "alpaca_gpt4_sample_1k.jsonl",
)

TIMER = """
import sys, time
from adg.io.reading import read_pool
best, n = 1e9, 0
for _ in range(3):
    t = time.perf_counter()
    n = len(read_pool(sys.argv[1]).records)
    best = min(best, time.perf_counter() - t)
print(best, n)
"""

# One ingest in a fresh process: seconds, records, RSS after imports and peak RSS (MiB).
INGEST = """
import sys, time
import pyarrow, pyarrow.parquet
from adg.stages.ingest import ingest
from adg.io import handback, shapes, tables
def hwm():  # peak RSS of this process image (ru_maxrss would count the parent before exec)
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024
base = hwm()
src, work = sys.argv[1], sys.argv[2]
t = time.perf_counter()
s = ingest(src, work + "/pool.jsonl", work + "/rejects.jsonl", originals=work + "/originals")
seconds = time.perf_counter() - t
peak = hwm()
print(seconds, s.accepted, base, peak)
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


def ingested(pool: Path, repeats: int) -> tuple[float, int, float, float]:
    """(best seconds, records, RSS after imports MiB, peak RSS MiB over the runs)."""
    best, n, base, peak = 1e9, 0, 0.0, 0.0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as work:
            out = subprocess.run(
                [sys.executable, "-c", INGEST, str(pool), work],
                env={"PYTHONPATH": str(REPO / "src"), "ADG_PROGRESS": "0"},
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
        best = min(best, float(out[0]))
        n, base, peak = int(out[1]), float(out[2]), max(peak, float(out[3]))
    return best, n, base, peak


def read_lines(pool: Path) -> list[dict]:
    opener = gzip.open if pool.suffix == ".gz" else open
    with opener(pool, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def as_array(pool: Path, folder: Path) -> Path:
    target = folder / (pool.name.split(".")[0] + ".json")
    target.write_text(json.dumps(read_lines(pool), ensure_ascii=False, indent=2), encoding="utf-8")
    return target


def as_jsonl_and_parquet(records: list[dict], folder: Path, stem: str) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl, parquet = folder / f"{stem}.jsonl", folder / f"{stem}.parquet"
    with open(jsonl, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    pq.write_table(pa.Table.from_pylist(records), parquet)
    return jsonl, parquet


def scaled(records: list[dict], rows: int, folder: Path) -> tuple[Path, Path]:
    """`rows` rows cycling the real records (fields instruction, input, output), written in
    chunks so this script's own memory stays small too."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = ("instruction", "input", "output")
    base = [{f: str(r.get(f) or "") for f in fields} for r in records]
    schema = pa.schema([("id", pa.int64()), *((f, pa.string()) for f in fields)])
    jsonl, parquet = folder / f"pool_{rows}.jsonl", folder / f"pool_{rows}.parquet"
    with open(jsonl, "w", encoding="utf-8") as fh, pq.ParquetWriter(parquet, schema) as writer:
        for start in range(0, rows, 50_000):
            chunk = [
                {"id": i, **base[i % len(base)]} for i in range(start, min(rows, start + 50_000))
            ]
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in chunk)
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    return jsonl, parquet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", default="/work/main", help="the tree to compare with ('' = skip)")
    ap.add_argument("--data", default=str(REPO.parent.parent / "shared" / "data"))
    ap.add_argument(
        "--rows", type=int, default=1_000_000, help="rows of the scale table (0 = skip)"
    )
    args = ap.parse_args()
    data = Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.other:
            other = Path(args.other)
            print(f"| pool | records | {other} s | this tree s |")
            print("|---|---|---|---|")
            for name in FILES:
                pool = data / name
                for path in (pool, as_array(pool, work)):
                    t_other, n_other = timed(other, path)
                    t_this, n_this = timed(REPO, path)
                    assert n_other == n_this, f"{path.name}: {n_other} vs {n_this} records"
                    print(f"| {path.name} | {n_this} | {t_other:.3f} | {t_this:.3f} |")
        print("\n| pool | records | JSONL s | Parquet s | JSONL peak MiB | Parquet peak MiB |")
        print("|---|---|---|---|---|---|")
        every: list[dict] = []
        base_rss = 0.0
        for name in FILES:
            records = read_lines(data / name)
            every += records
            jsonl, parquet = as_jsonl_and_parquet(records, work, name.split(".")[0])
            tj, nj, base_rss, pj = ingested(jsonl, 3)
            tp, np_, _, pp = ingested(parquet, 3)
            assert nj == np_, f"{name}: {nj} vs {np_} records"
            print(f"| {name} | {nj} | {tj:.3f} | {tp:.3f} | {pj:.0f} | {pp:.0f} |")
        print(f"\n(RSS of the process after its imports: {base_rss:.0f} MiB)")
        if args.rows:
            jsonl, parquet = scaled(every, args.rows, work)
            mib = {p.suffix: p.stat().st_size / 2**20 for p in (jsonl, parquet)}
            print(f"\n{args.rows} rows cycling {len(every)} real records")
            print(f"(JSONL {mib['.jsonl']:.0f} MiB, Parquet {mib['.parquet']:.0f} MiB on disk)\n")
            print("| pool | records | seconds | records/s | RSS after imports MiB | peak MiB |")
            print("|---|---|---|---|---|---|")
            for path in (jsonl, parquet):
                t, n, base, peak = ingested(path, 1)
                print(f"| {path.name} | {n} | {t:.1f} | {n / t:,.0f} | {base:.0f} | {peak:.0f} |")
    print(
        f"\nreproduce: python -m bench.ingest --other {args.other!r} --data {args.data} "
        f"--rows {args.rows}"
    )


if __name__ == "__main__":
    main()
