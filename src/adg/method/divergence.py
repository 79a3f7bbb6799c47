"""Answer-divergence geometry: dispersion, anisotropy and the ADG score (pure numpy).

For a batch of B instructions with K answer vectors each, V has shape [B, K, H] and every row is
unit-norm (or zero for an empty answer):

    S   = V Vᵀ                      [B, K, K]  Gram matrix of the answers
    Sc  = C S C,  C = I − 11ᵀ/K     [B, K, K]  double-centred Gram
    λ   = eigvals(Sc), descending, clipped at 0;  tr = Σ λ
    D   = tr / K                    dispersion: how far the answers spread
    I   = 1 − λ₁ / tr               anisotropy: 0 when all spread lies on one direction
    score = w_D · D + w_I · I       (0.6, 0.4 by default)

D and I are both 0 when tr < 1e-12 (all answers equal). All instructions of a batch are solved in
one stacked eigendecomposition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adg.config import ScoreConfig

EPS = 1e-12


@dataclass(frozen=True)
class ScoreWeights:
    dispersion: float = ScoreConfig.dispersion_weight
    anisotropy: float = ScoreConfig.anisotropy_weight


def centred_gram(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[B, K, H] → (S, Sc), each [B, K, K], computed in float64."""
    v = np.asarray(vectors, dtype=np.float64)
    k = v.shape[-2]
    s = v @ np.swapaxes(v, -1, -2)
    c = np.eye(k) - np.full((k, k), 1.0 / k)
    return s, c @ s @ c


def spectrum(matrices: np.ndarray) -> np.ndarray:
    """Eigenvalues of symmetric [B, K, K] matrices, descending, clipped at 0 → [B, K]."""
    sym = 0.5 * (matrices + np.swapaxes(matrices, -1, -2))
    lam = np.linalg.eigvalsh(sym)[..., ::-1]
    return np.clip(lam, 0.0, None)


def dispersion_anisotropy(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[B, K, H] answer vectors → (D [B], I [B])."""
    _, sc = centred_gram(vectors)
    lam = spectrum(sc)
    k = lam.shape[-1]
    tr = lam.sum(axis=-1)
    ok = tr >= EPS
    safe = np.where(ok, tr, 1.0)
    d = np.where(ok, tr / k, 0.0)
    i = np.where(ok, 1.0 - lam[..., 0] / safe, 0.0)
    return d, i


def combine(d: np.ndarray, i: np.ndarray, weights: ScoreWeights = ScoreWeights()) -> np.ndarray:
    return weights.dispersion * d + weights.anisotropy * i


def diagnostics(vectors: np.ndarray) -> dict[str, np.ndarray]:
    """Extra per-instruction diagnostics, each [B]:

    spectral_entropy      −Σ p log p with p = λ / tr over the eigenvalues of Sc (0 when tr ≈ 0)
    top_eig_share         λ₁(S) / tr(S): share of the uncentred Gram's top direction
    mean_pairwise_cosine  mean of S[i, j] over pairs i < j
    eig_ratio_12          λ₁ / λ₂ of Sc (λ₂ floored at 1e-12)
    dispersion_loo_std    standard deviation of D over the K leave-one-out subsets of K−1 answers
    """
    v = np.asarray(vectors, dtype=np.float64)
    b, k, _ = v.shape
    s, sc = centred_gram(v)
    lam = spectrum(sc)
    tr = lam.sum(axis=-1)
    ok = tr >= EPS
    p = lam / np.where(ok, tr, 1.0)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1)
    ent = np.where(ok, ent, 0.0)

    lam_s = spectrum(s)
    tr_s = lam_s.sum(axis=-1)
    top_share = np.where(tr_s >= EPS, lam_s[:, 0] / np.where(tr_s >= EPS, tr_s, 1.0), 0.0)

    iu = np.triu_indices(k, 1)
    mean_cos = s[:, iu[0], iu[1]].mean(axis=-1) if k > 1 else np.zeros(b)

    ratio = lam[:, 0] / np.maximum(lam[:, 1], EPS) if k > 1 else np.zeros(b)
    ratio = np.where(ok, ratio, 0.0)

    if k > 2:
        loo = np.stack(
            [dispersion_anisotropy(np.delete(v, j, axis=1))[0] for j in range(k)], axis=-1
        )
        loo_std = loo.std(axis=-1)
    else:
        loo_std = np.zeros(b)
    return {
        "spectral_entropy": ent,
        "top_eig_share": top_share,
        "mean_pairwise_cosine": mean_cos,
        "eig_ratio_12": ratio,
        "dispersion_loo_std": loo_std,
    }
