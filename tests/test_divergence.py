"""Dispersion / anisotropy / score on hand-computed cases."""

import numpy as np
import pytest

from adg.method import divergence


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_identical_vectors_give_zero():
    v = np.tile(unit([1.0, 2.0, 3.0]), (5, 1))[None]
    d, i = divergence.dispersion_anisotropy(v)
    assert d[0] == 0.0 and i[0] == 0.0


@pytest.mark.parametrize("k", [2, 3, 5, 8])
def test_orthonormal_vectors(k):
    v = np.eye(k, 16)[None]
    d, i = divergence.dispersion_anisotropy(v)
    assert d[0] == pytest.approx((k - 1) / k)
    expected_i = 1 - 1 / (k - 1) if k > 1 else 0.0
    assert i[0] == pytest.approx(expected_i, abs=1e-12)


def test_one_zero_answer_among_equal_ones():
    # K=3: two equal unit vectors u and one zero vector. S = [[1,1,0],[1,1,0],[0,0,0]].
    # Centred: rank one, so I = 0; tr(Sc) = tr(S) - sum(S)/K = 2 - 4/3 = 2/3; D = 2/9.
    u = unit([3.0, 4.0])
    v = np.stack([u, u, np.zeros(2)])[None]
    d, i = divergence.dispersion_anisotropy(v)
    assert d[0] == pytest.approx(2 / 9)
    assert i[0] == pytest.approx(0.0, abs=1e-12)


def test_two_dimensional_hand_case():
    # Three unit vectors at 0, 90 and 180 degrees in the plane.
    v = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])[None]
    # Centred points: mean m = (0, 1/3); Sc = Xc Xc^T whose nonzero eigenvalues equal those of
    # Xc^T Xc = diag(2, 2/3). tr = 8/3 → D = 8/9; I = 1 - 2 / (8/3) = 1/4.
    d, i = divergence.dispersion_anisotropy(v)
    assert d[0] == pytest.approx(8 / 9)
    assert i[0] == pytest.approx(0.25)


def test_score_weights_and_batch_equals_single():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(7, 5, 12))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    d, i = divergence.dispersion_anisotropy(v)
    for b in range(7):
        db, ib = divergence.dispersion_anisotropy(v[b : b + 1])
        assert db[0] == pytest.approx(d[b]) and ib[0] == pytest.approx(i[b])
    s = divergence.combine(d, i, divergence.ScoreWeights(0.6, 0.4))
    np.testing.assert_allclose(s, 0.6 * d + 0.4 * i)
    s2 = divergence.combine(d, i, divergence.ScoreWeights(1.0, 0.0))
    np.testing.assert_allclose(s2, d)


def test_matches_plain_definition():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(1, 5, 9))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    x = v[0]
    s = x @ x.T
    h = np.eye(5) - np.ones((5, 5)) / 5
    lam = np.sort(np.linalg.eigvalsh(h @ s @ h))[::-1].clip(0)
    d, i = divergence.dispersion_anisotropy(v)
    assert d[0] == pytest.approx(lam.sum() / 5)
    assert i[0] == pytest.approx(1 - lam[0] / lam.sum())


def test_diagnostics_on_orthonormal_and_identical():
    k = 4
    diag = divergence.diagnostics(np.eye(k, 8)[None])
    # Sc of orthonormal vectors = centring matrix: K-1 eigenvalues of 1 → entropy log(K-1).
    assert diag["spectral_entropy"][0] == pytest.approx(np.log(k - 1))
    assert diag["top_eig_share"][0] == pytest.approx(1 / k)
    assert diag["mean_pairwise_cosine"][0] == pytest.approx(0.0)
    assert diag["eig_ratio_12"][0] == pytest.approx(1.0)
    # Every leave-one-out subset is orthonormal with K-1 vectors: D = (K-2)/(K-1), no spread.
    assert diag["dispersion_loo_std"][0] == pytest.approx(0.0, abs=1e-12)

    same = divergence.diagnostics(np.tile(unit([1.0, 1.0]), (3, 1))[None])
    assert same["spectral_entropy"][0] == 0.0
    assert same["top_eig_share"][0] == pytest.approx(1.0)
    assert same["mean_pairwise_cosine"][0] == pytest.approx(1.0)
