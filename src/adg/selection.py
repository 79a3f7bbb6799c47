"""Bin-wise selection of top / middle / bottom records from scores and bins (pure numpy).

Inputs: `scores` float [N] (NaN counts as the lowest score), `bins` int [N], and a `budget`.
Inside every bin, records are ranked by score, highest first, ties broken by position in the pool
(so the result is deterministic). For a bin with n members and quota q:

    top    = ranks [0, q)
    bottom = the last min(q, n − q) ranks
    middle = min(q, what is left) ranks taken from the centre of what is left between them

Strategies (a plain dict at the bottom of the module picks one):

* `reference` — the published procedure: ratio = budget / N; bins with n < 3 go to middle whole;
  otherwise q = max(1, ⌊n · ratio⌋). Each group is then cut to `budget` by score (top keeps its
  best, bottom its worst, middle the ones nearest the group's centre). Under-fills the budget by the
  flooring.
* `exact` (default) — quotas q_b = budget · n_b / N apportioned by largest remainder (ties: the
  larger bin, then the lower bin id), so the top group holds exactly `budget` records when
  N ≥ budget; bins of any size take part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Selection:
    """Indices into the pool, each group ordered by score (highest first)."""

    top: np.ndarray
    middle: np.ndarray
    bottom: np.ndarray
    quotas: np.ndarray  # [n_bins] quota per bin id (0..max bin)
    bin_sizes: np.ndarray  # [n_bins]


def score_order(scores: np.ndarray) -> np.ndarray:
    """Positions sorted by score, highest first; NaN last; ties by position (stable sort).

    The stable sort runs on integer keys, not on the floats: a float64 maps to a uint64 whose order
    is the float order (flip every bit of a negative, only the sign bit of a positive), and a
    bitwise not turns that into descending order. numpy sorts the integers faster (bench/select.py).
    """
    key = np.where(np.isnan(scores), -np.inf, scores) + 0.0  # + 0.0 turns -0.0 into 0.0
    bits = key.view(np.uint64)
    negative = bits >> np.uint64(63) == 1
    ascending = np.where(negative, ~bits, bits | np.uint64(1 << 63))
    return np.argsort(~ascending, kind="stable")


def rank_within_bins(order: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regroup a global score `order` by bin, keeping it inside each bin.

    Returns (order [N], starts [n_bins + 1]): bin b's ranked members are
    order[starts[b] : starts[b + 1]].
    """
    n_bins = int(bins.max()) + 1 if len(bins) else 0
    # A stable sort on small integer keys is a radix sort in numpy: linear in N.
    small = bins.astype(np.int16 if n_bins < 2**15 else np.int32)
    by_bin = order[np.argsort(small[order], kind="stable")]
    sizes = np.bincount(bins, minlength=n_bins)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return by_bin, starts


def reference_quotas(sizes: np.ndarray, budget: int, total: int) -> np.ndarray:
    # The published rounding, float error included: int(n * ratio), with ratio = budget / N
    # (e.g. 321 * (486 / 52002) is 2.9999999999999996, so that bin's quota is 2, not 3).
    ratio = budget / total
    q = np.maximum(1, np.floor(sizes * ratio).astype(np.int64))
    return np.where(sizes >= 3, q, 0)


def exact_quotas(sizes: np.ndarray, budget: int, total: int) -> np.ndarray:
    """Largest-remainder apportionment of `budget` over bins proportional to their size."""
    budget = min(budget, total)
    raw = sizes.astype(np.float64) * budget / total
    q = np.floor(raw + 1e-9).astype(np.int64)
    left = budget - int(q.sum())
    if left > 0:
        rem = raw - q
        ids = np.arange(len(sizes))
        # Largest remainder first; ties to the larger bin, then the lower bin id.
        pick = np.lexsort((ids, -sizes, -rem))[:left]
        q[pick] += 1
    return np.minimum(q, sizes)


def _groups(order: np.ndarray, starts: np.ndarray, quotas: np.ndarray, small_to_middle: bool):
    """Vectorised split of every bin's ranked members into top / middle / bottom.

    `rank` is each member's 0-based rank inside its bin; the masks are pure arithmetic on it.
    """
    sizes = np.diff(starts)
    bin_of = np.repeat(np.arange(len(sizes)), sizes)
    rank = np.arange(len(order)) - starts[bin_of]
    n = sizes[bin_of]
    q = quotas[bin_of]
    qb = np.minimum(q, n - q)  # bottom quota
    rest = n - q - qb
    qm = np.minimum(q, rest)  # middle quota
    mid_start = q + (rest - qm) // 2
    is_top = rank < q
    is_bottom = (rank >= n - qb) & ~is_top
    is_middle = (rank >= mid_start) & (rank < mid_start + qm)
    if small_to_middle:
        small = n < 3
        is_middle |= small
        is_top &= ~small
        is_bottom &= ~small
    return order[is_top], order[is_middle], order[is_bottom]


def _by_score(idx: np.ndarray, global_rank: np.ndarray, by_score: np.ndarray) -> np.ndarray:
    """`idx` reordered by score: mark its ranks and read the global order back (no sort)."""
    marked = np.zeros(len(by_score), dtype=bool)
    marked[global_rank[idx]] = True
    return by_score[marked]


def _cut_reference(top, middle, bottom, budget):
    top = top[:budget]
    bottom = bottom[max(0, len(bottom) - budget) :]
    if len(middle) > budget:
        start = (len(middle) - budget) // 2
        middle = middle[start : start + budget]
    return top, middle, bottom


def select(scores: np.ndarray, bins: np.ndarray, budget: int, strategy: str = "exact") -> Selection:
    """Split the pool into top / middle / bottom index arrays (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    bins = np.asarray(bins, dtype=np.int64)
    total = len(scores)
    if len(bins) != total:
        raise ValueError(f"{total} scores but {len(bins)} bin labels")
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    if budget > total:
        raise ValueError(f"budget {budget} is larger than the pool ({total} records)")
    if total and bins.min() < 0:
        raise ValueError("bin labels must be non-negative")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    by_score = score_order(scores)
    global_rank = np.empty(total, dtype=np.int64)
    global_rank[by_score] = np.arange(total)
    order, starts = rank_within_bins(by_score, bins)
    sizes = np.diff(starts)
    quotas, small_to_middle = STRATEGIES[strategy](sizes, budget, total)
    groups = _groups(order, starts, quotas, small_to_middle)
    top, middle, bottom = (_by_score(g, global_rank, by_score) for g in groups)
    if strategy == "reference":
        top, middle, bottom = _cut_reference(top, middle, bottom, budget)
    return Selection(top, middle, bottom, quotas, sizes)


STRATEGIES = {
    "exact": lambda sizes, budget, total: (exact_quotas(sizes, budget, total), False),
    "reference": lambda sizes, budget, total: (reference_quotas(sizes, budget, total), True),
}


def collapse_reasons(scores: np.ndarray, max_share: float = 0.5, min_spread: float = 1e-9):
    """Why a score vector cannot rank records (empty list when it can).

    Flags NaN and ±Infinity scores, (near) zero spread of the finite scores, and more than
    `max_share` of the records sharing one value (scores equal to 1e-9).
    """
    scores = np.asarray(scores, dtype=np.float64)
    reasons = []
    nan = int(np.isnan(scores).sum())
    if nan:
        reasons.append(f"{nan} of {len(scores)} scores are NaN")
    infinite = int(np.isinf(scores).sum())
    if infinite:
        reasons.append(f"{infinite} of {len(scores)} scores are infinite")
    finite = scores[np.isfinite(scores)]
    if len(finite) > 1 and finite.max() - finite.min() < min_spread:
        reasons.append(f"scores have zero spread (all {finite[0]:.6g})")
    elif len(finite):
        _, counts = np.unique(np.round(finite / min_spread), return_counts=True)
        share = counts.max() / len(scores)
        if share > max_share:
            reasons.append(f"{share:.0%} of records share one score value")
    return reasons
