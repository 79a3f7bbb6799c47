"""Semantic bins: seeded k-means over unit-norm instruction vectors.

embeddings float32 [N, H] → bins int32 [N] (bin id per record, same order). Bin ids are
renumbered by first appearance in the pool so they do not depend on k-means' internal label order.
The bin count is clamped to N (k-means cannot make more bins than points). Small problems use exact
Lloyd k-means; large ones (N · bins above `MINIBATCH_ABOVE`) use MiniBatchKMeans. Both are seeded,
so the same input gives the same bins. `pca_dims` > 0 first projects the vectors onto their top
principal components (seeded randomized PCA): on 52K × 4096 vectors into 1000 bins that is 12×
faster on 2 cores with the same k-means objective (docs/benchmarks.md); it is off by default so the
bins are those of the published method. The stage (`cluster_file`) first checks its input
(`load_embeddings`: a 2-D float .npy, every row finite), so a bad file is one line naming it.

`kmeans_bins_parts` bins rows spread over several (memory-mapped) arrays, e.g. the float16
embeddings of a curation index, without stacking them in memory: up to `FIT_ROWS` rows it stacks
them and returns exactly `kmeans_bins`'s bins; above, PCA and k-means are fitted on a seeded
sample of `FIT_ROWS` rows and every row is then assigned to its nearest centre chunk by chunk.
"""

from __future__ import annotations

import os

import numpy as np

from adg.errors import InputError
from adg.progress import log

# Above this many (points x bins) distance evaluations per iteration, full Lloyd iterations are too
# slow on a laptop; mini-batches of 4096 converge to similar inertia.
MINIBATCH_ABOVE = 20_000_000
# Rows k-means is fitted on when binning more rows than this (kmeans_bins_parts): 200K rows of a
# 4096-wide float32 sample are 3.3 GB; the rest are only assigned to the fitted centres.
FIT_ROWS = 200_000
ASSIGN_CHUNK = 65_536


def auto_bin_count(n: int, per_bin: int = 52, maximum: int = 1000) -> int:
    """A bin count for pools of any size: about `per_bin` records per bin (52K / 1000 in the
    paper), at least 1 and at most `maximum`."""
    return max(1, min(maximum, n // per_bin))


def _renumber(labels: np.ndarray) -> np.ndarray:
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    mapping = np.empty(labels.max() + 1, dtype=np.int32)
    mapping[np.unique(labels)[order]] = np.arange(len(order), dtype=np.int32)
    return mapping[labels]


def kmeans_bins(
    embeddings: np.ndarray, count: int = 1000, seed: int = 42, pca_dims: int = 0
) -> np.ndarray:
    """Assign each row of `embeddings` to one of at most `count` bins."""
    x = np.asarray(embeddings, dtype=np.float32)
    if 0 < pca_dims < min(x.shape):
        from sklearn.decomposition import PCA

        pca = PCA(n_components=pca_dims, svd_solver="randomized", random_state=seed)
        x = pca.fit_transform(x).astype(np.float32)
    n = len(x)
    if n == 0:
        raise InputError("no embeddings to cluster")
    if count <= 0:
        raise InputError(f"bin count must be positive, got {count}")
    k = min(count, n)
    if k < count:
        log.info("cluster: %d bins requested for %d records; using %d", count, n, k)
    if k == 1:
        return np.zeros(n, dtype=np.int32)
    labels = _kmeans_model(n, k, seed).fit_predict(x)
    return _renumber(labels.astype(np.int64))


def _kmeans_model(n: int, k: int, seed: int):
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if n * k > MINIBATCH_ABOVE:
        return MiniBatchKMeans(
            n_clusters=k, random_state=seed, batch_size=4096, n_init=3, max_no_improvement=20
        )
    return KMeans(n_clusters=k, random_state=seed, n_init=1)


def _rows(parts: list[np.ndarray], positions: np.ndarray) -> np.ndarray:
    """float32 rows at sorted global `positions` of the parts stacked one after another."""
    starts = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    out = []
    for i, part in enumerate(parts):
        local = positions[(positions >= starts[i]) & (positions < starts[i + 1])] - starts[i]
        if len(local):
            out.append(np.asarray(part[local], dtype=np.float32))
    return np.concatenate(out)


def kmeans_bins_parts(
    parts: list[np.ndarray],
    count: int = 1000,
    seed: int = 42,
    pca_dims: int = 0,
    fit_rows: int = FIT_ROWS,
) -> np.ndarray:
    """Bins for the rows of `parts` taken one after another (see the module docstring)."""
    n = sum(len(p) for p in parts)
    if n <= fit_rows:
        stacked = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts]) if parts else []
        return kmeans_bins(np.asarray(stacked, dtype=np.float32), count, seed, pca_dims)
    if count <= 0:
        raise ValueError(f"bin count must be positive, got {count}")
    rng = np.random.default_rng(seed)
    sample = _rows(parts, np.sort(rng.choice(n, size=fit_rows, replace=False)))
    pca = None
    if 0 < pca_dims < min(sample.shape):
        from sklearn.decomposition import PCA

        pca = PCA(n_components=pca_dims, svd_solver="randomized", random_state=seed)
        sample = pca.fit_transform(sample).astype(np.float32)
    k = min(count, fit_rows)
    model = _kmeans_model(fit_rows, k, seed).fit(sample)
    del sample
    labels = np.empty(n, dtype=np.int64)
    done = 0
    for part in parts:
        for start in range(0, len(part), ASSIGN_CHUNK):
            x = np.asarray(part[start : start + ASSIGN_CHUNK], dtype=np.float32)
            if pca is not None:
                x = pca.transform(x).astype(np.float32)
            labels[done : done + len(x)] = model.predict(x)
            done += len(x)
    return _renumber(labels)


def load_embeddings(path: str | os.PathLike, chunk_rows: int = 65_536) -> np.ndarray:
    """The embed stage's `embeddings.npy`, memory-mapped and checked: a readable .npy of one
    float row per record, every value finite. A bad file is one line naming it, not a
    k-means traceback (or, for NaN rows, bins silently built from garbage)."""
    try:
        emb = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such embeddings file") from None
    except (ValueError, OSError) as err:
        raise InputError(f"{path}: not a .npy array of embeddings ({err})") from None
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating):
        raise InputError(
            f"{path}: expected a 2-D float array [records, hidden], got {emb.dtype} {emb.shape}"
        )
    for start in range(0, len(emb), chunk_rows):
        bad = ~np.isfinite(emb[start : start + chunk_rows]).all(axis=1)
        if bad.any():
            row = start + int(np.argmax(bad))
            raise InputError(f"{path}: row {row} (record {row} of the pool) is not finite")
    return emb
