"""Benchmark: binning N × D instruction vectors into K bins, method by method.

Synthetic vectors with real cluster structure: K_true centres on the unit sphere plus Gaussian
noise, rows L2-normalised, float32 (the shape of a 7B model's instruction embeddings by default).
Each method runs in its own subprocess, one after another, so peak memory (ru_maxrss) is per method;
quality is the k-means objective (inertia) in the original space, and the adjusted Rand index
against the true centres.

Methods:
  adg          adg.method.clustering.kmeans_bins as shipped (KMeans for small problems,
  MiniBatchKMeans
               above 20M point-bin pairs, seed 42)
  adg-pca256   the same with pca_dims=256 (seeded randomized PCA to 256 dimensions first)
  faiss               faiss.Kmeans (20 iterations, seed 42), if faiss-cpu is installed

    python -m bench.cluster [--records 52000] [--dim 4096] [--bins 1000] [--methods a,b]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

METHODS = ("adg", "adg-pca256", "faiss")


def make_data(n: int, dim: int, true_bins: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(true_bins, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, true_bins, n)
    x = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 4096):  # in chunks, so generating the data does not set the peak
        e = min(n, s + 4096)
        noise = rng.standard_normal((e - s, dim), dtype=np.float32) * (0.6 / np.sqrt(dim))
        x[s:e] = centres[labels[s:e]] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, labels


def run_method(method: str, x: np.ndarray, k: int) -> np.ndarray:
    if method == "adg":
        from adg.method.clustering import kmeans_bins

        return kmeans_bins(x, count=k, seed=42)
    if method == "adg-pca256":
        from adg.method.clustering import kmeans_bins

        return kmeans_bins(x, count=k, seed=42, pca_dims=256)
    if method == "faiss":
        import faiss

        km = faiss.Kmeans(x.shape[1], k, niter=20, seed=42, verbose=False)
        km.train(x)
        return km.index.search(x, 1)[1][:, 0]
    raise ValueError(method)


def inertia(x: np.ndarray, labels: np.ndarray) -> float:
    total = 0.0
    for b in np.unique(labels):
        pts = x[labels == b]
        total += float(((pts - pts.mean(axis=0)) ** 2).sum())
    return total


def child(args: argparse.Namespace) -> None:
    from sklearn.metrics import adjusted_rand_score

    x, truth = make_data(args.records, args.dim, args.bins)
    t = time.perf_counter()
    labels = run_method(args.child, x, args.bins)
    seconds = time.perf_counter() - t
    out = {
        "method": args.child,
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "inertia": inertia(x, labels),
        "ari": adjusted_rand_score(truth, labels),
        "bins_used": len(np.unique(labels)),
    }
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=52_000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--bins", type=int, default=1000)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a)
        return
    base = [sys.executable, __file__, "--records", str(a.records), "--dim", str(a.dim)]
    base += ["--bins", str(a.bins)]
    data_mib = a.records * a.dim * 4 / 2**20
    print(f"# bench/cluster.py  {time.strftime('%Y-%m-%d')}")
    print(f"{a.records} x {a.dim} float32 ({data_mib:.0f} MiB) into {a.bins} bins")
    print()
    print("| method | seconds | peak RSS (MiB) | inertia | ARI vs truth | bins used |")
    print("|---|---|---|---|---|---|")
    for m in a.methods.split(","):
        proc = subprocess.run([*base, "--child", m], capture_output=True, text=True)
        if proc.returncode:
            print(f"| {m} | failed: {proc.stderr.strip().splitlines()[-1]} | | | | |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"| {m} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | {r['inertia']:.1f} | "
            f"{r['ari']:.3f} | {r['bins_used']} |"
        )
    print(
        f"\nreproduce: python -m bench.cluster --records {a.records} --dim {a.dim} "
        f"--bins {a.bins} --methods {a.methods}"
    )


if __name__ == "__main__":
    main()
