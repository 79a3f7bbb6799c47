"""The cluster stage: `embeddings.npy` → `clusters.npy`, one semantic bin per record
(int32 [N], pool order), by the seeded k-means of `adg.method.clustering`."""

from __future__ import annotations

import os

import numpy as np

from adg.config import ClusterConfig
from adg.method.clustering import kmeans_bins, load_embeddings


def cluster_file(
    embeddings_path: str,
    output: str,
    count: int = ClusterConfig.count,
    seed: int = ClusterConfig.seed,
    pca_dims: int = ClusterConfig.pca_dims,
) -> int:
    """The cluster stage: `embeddings.npy` → `clusters.npy`; returns the number of bins used."""
    emb = load_embeddings(embeddings_path)
    bins = kmeans_bins(emb, count=count, seed=seed, pca_dims=pca_dims)
    tmp = f"{output}.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, bins)
    os.replace(tmp, output)
    return int(bins.max()) + 1
