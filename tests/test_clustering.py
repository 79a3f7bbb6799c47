"""Seeded k-means bins (adg.method.clustering): shape, determinism, clamping, first-appearance
numbering. The cluster stage's input checks are in test_cluster.py."""

import numpy as np

from adg.method import clustering
from adg.method.clustering import auto_bin_count, kmeans_bins
from adg.stages.cluster import cluster_file


def blobs(n_per=20, centres=4, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)) * 5
    x = np.concatenate([c[i] + rng.normal(size=(n_per, dim)) * 0.1 for i in range(centres)])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_recovers_blobs_and_numbers_by_first_appearance():
    x = blobs()
    bins = kmeans_bins(x, count=4, seed=42)
    assert bins.dtype == np.int32
    assert bins.tolist() == sorted(bins.tolist())  # blobs are contiguous → labels 0,0,..,1,1,..
    assert len(set(bins[:20])) == 1 and bins[0] == 0


def test_same_seed_same_bins_and_clamp(tmp_path):
    x = blobs(seed=3)
    assert np.array_equal(kmeans_bins(x, 5, 42), kmeans_bins(x, 5, 42))
    assert kmeans_bins(x[:3], count=1000).max() <= 2
    np.save(tmp_path / "e.npy", x)
    used = cluster_file(str(tmp_path / "e.npy"), str(tmp_path / "c.npy"), count=4)
    assert used == 4 and np.load(tmp_path / "c.npy").shape == (80,)


def test_minibatch_path_stays_seeded(monkeypatch):
    monkeypatch.setattr(clustering, "MINIBATCH_ABOVE", 100)  # force the large-problem path
    x = blobs(n_per=50, seed=5)
    a = kmeans_bins(x, count=4, seed=42)
    assert np.array_equal(a, kmeans_bins(x, count=4, seed=42))
    assert len(set(a[:50])) == 1


def test_auto_bin_count():
    assert auto_bin_count(10) == 1
    assert auto_bin_count(52_002) == 1000
    assert auto_bin_count(5_000) == 96


def test_pca_option_keeps_blobs_and_seed():
    x = blobs(n_per=30, centres=3, dim=64, seed=7)
    a = kmeans_bins(x, count=3, seed=42, pca_dims=8)
    assert np.array_equal(a, kmeans_bins(x, count=3, seed=42, pca_dims=8))
    assert [len(set(a[i * 30 : (i + 1) * 30])) for i in range(3)] == [1, 1, 1]
