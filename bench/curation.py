"""Benchmark: re-clustering and selecting over a whole curation index, at scale.

A scale test of memory and time, not of quality: the index holds SYNTHETIC vectors. `--records`
rows of `--dim` float16 unit-norm instruction vectors (drawn from 65,536 distinct vectors: 1000
centres on the unit sphere plus Gaussian noise, so that generating them stays cheap) and
uniform random scores are written to disk as `--entries` index entries (embeddings.npy, arrays.npz,
manifest.json, as adg.stages.curation writes them; no record text, which selection does not read).
Then a subprocess does what `adg.stages.curation.select_version` does before it gathers the selected
records: memory-map every entry's embeddings (`load_arrays`), bin them
(`clustering.kmeans_bins_parts`: above `--fit-rows` rows, PCA and k-means are fitted on a seeded
sample and every row is assigned chunk by chunk) and select the budget (`selection.select`). It
prints each phase's time and the subprocess's peak resident memory (resource.getrusage ru_maxrss),
so generating the data does not count.

    python -m bench.curation                                    # 100K x 576, quick
    python -m bench.curation --records 1000000 --dim 576        # 1M x 576 (1.1 GB on disk)
    python -m bench.curation --records 1000000 --dim 4096 --pca-dims 256   # 1M x 4096 (8.2 GB)

`--workdir` (default: a temp folder, removed afterwards) needs records x dim x 2 bytes free.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK = 16384
DISTINCT = 65536


def write_index(root: Path, n: int, dim: int, entries: int, true_bins: int = 1000) -> None:
    """`entries` index entries of synthetic float16 vectors and scores, written chunk by chunk.

    The rows are drawn at random from `DISTINCT` vectors (centres plus Gaussian noise, unit norm):
    drawing 1M x 4096 fresh normals takes longer than the benchmark itself on 2 shared cores, and
    time and memory of binning do not depend on whether rows repeat.
    """
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(true_bins, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    block = np.empty((min(n, DISTINCT), dim), dtype=np.float16)
    for s in range(0, len(block), CHUNK):
        m = min(len(block), s + CHUNK) - s
        x = centres[rng.integers(0, true_bins, m)]
        x += rng.standard_normal((m, dim), dtype=np.float32) * (0.6 / np.sqrt(dim))
        block[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    bounds = np.linspace(0, n, entries + 1).astype(int)
    for e in range(entries):
        rows = int(bounds[e + 1] - bounds[e])
        folder = root / "entries" / f"{e + 1:06d}"
        folder.mkdir(parents=True)
        emb = np.lib.format.open_memmap(
            folder / "embeddings.npy", mode="w+", dtype=np.float16, shape=(rows, dim)
        )
        for s in range(0, rows, CHUNK):
            m = min(rows, s + CHUNK) - s
            emb[s : s + m] = block[rng.integers(0, len(block), m)]
        emb.flush()
        del emb
        d, a = rng.random(rows), rng.random(rows)
        np.savez(
            folder / "arrays.npz",
            score=0.6 * d + 0.4 * a,
            dispersion=d,
            anisotropy=a,
            id_hash=rng.integers(0, 2**63, rows, dtype=np.uint64),
            content_hash=rng.integers(0, 2**63, rows, dtype=np.uint64),
        )
        manifest = {"id": folder.name, "settings": {"model": "synthetic"}, "records": rows}
        manifest.update(dim=dim, supersedes=[], synthetic=True)
        (folder / "manifest.json").write_text(json.dumps(manifest))


def measure(root: str, budget: int, bins: int, pca_dims: int, fit_rows: int) -> dict:
    """Runs in the subprocess: load, bin and select over the index at `root`."""
    from adg.io import curation_index as curation
    from adg.method.clustering import kmeans_bins_parts
    from adg.method.selection import select

    t0 = time.perf_counter()
    index = curation.Index(root)
    entries, _ = curation.active_entries(index)
    arrays = curation.load_arrays(index, entries, Path(root))
    t1 = time.perf_counter()
    binned = kmeans_bins_parts(
        arrays.embeddings, count=bins, seed=42, pca_dims=pca_dims, fit_rows=fit_rows
    )
    t2 = time.perf_counter()
    sel = select(arrays.score, binned, budget)
    t3 = time.perf_counter()
    return {
        "records": len(arrays.score),
        "top": len(sel.top),
        "bins_used": int(binned.max()) + 1,
        "load_s": round(t1 - t0, 2),
        "cluster_s": round(t2 - t1, 2),
        "select_s": round(t3 - t2, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=576, help="576: SmolLM2-135M; 4096: a 7B model")
    p.add_argument("--entries", type=int, default=4, help="index entries (batches) to spread over")
    p.add_argument("--bins", type=int, default=1000)
    p.add_argument("--budget", type=int, default=10_000)
    p.add_argument("--pca-dims", type=int, default=0)
    p.add_argument("--fit-rows", type=int, default=200_000)
    p.add_argument("--workdir", default="")
    p.add_argument("--measure", default="", help=argparse.SUPPRESS)  # the subprocess's mode
    a = p.parse_args()
    if a.measure:
        print(json.dumps(measure(a.measure, a.budget, a.bins, a.pca_dims, a.fit_rows)))
        return
    work = Path(a.workdir or tempfile.mkdtemp(prefix="adg-bench-curation-"))
    try:
        t0 = time.perf_counter()
        write_index(work / "index", a.records, a.dim, a.entries)
        made = time.perf_counter() - t0
        cmd = [sys.executable, __file__, "--measure", str(work / "index")]
        cmd += ["--budget", str(a.budget), "--bins", str(a.bins)]
        cmd += ["--pca-dims", str(a.pca_dims), "--fit-rows", str(a.fit_rows)]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
        gb = a.records * a.dim * 2 / 1e9
        print(
            f"synthetic index: {a.records} x {a.dim} float16 ({gb:.2f} GB) in {a.entries} "
            f"entries, written in {made:.0f}s"
        )
        print(
            f"bins {a.bins}, pca_dims {a.pca_dims}, fit_rows {a.fit_rows}, budget {a.budget}: "
            + json.dumps(result)
        )
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
