"""Bin-wise selection of top / middle / bottom records from scores and bins (pure numpy).

Inputs: `scores` float [N] (NaN counts as the lowest score), `bins` int [N], and a `budget`.
Inside every bin, records are ranked by score, highest first, ties broken by position in the pool
(so the result is deterministic). A strategy gives every bin of n members three quotas t, m, b:

    top    = ranks [0, t)
    bottom = ranks [n − b, n)
    middle = m ranks from the centre of ranks [t, n − b)   (all of them when fewer than m)

Strategies (a plain dict at the bottom of the module picks one):

* `reference` — the published procedure, to the letter: ratio = budget / N; bins with n < 3 go to
  middle whole; otherwise t = b = m = max(1, int(n · ratio)), and when t + m + b > n, with
  f = n / (t + m + b): t = max(1, int(t · f)), b = max(1, int(b · f)), m = max(0, n − t − b).
  Each group longer than `budget` is then cut by score: top and middle keep their `budget` highest
  scores, bottom its `budget` lowest; ties there go to the lower bin id, then the earlier position
  (the published code's stable sort over groups built bin by bin). Under-fills the budget by the
  rounding. bench/baselines/reference_selection.py is the line-by-line transcription it is tested
  against.
* `exact` (default) — top quotas t_b = budget · n_b / N apportioned by largest remainder (ties: the
  larger bin, then the lower bin id), so the top group holds exactly `budget` records when
  N ≥ budget; b = min(t, n − t), m = min(t, n − t − b); bins of any size take part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adg.errors import InputError


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
    bitwise not turns that into descending order. numpy sorts the integers faster
    (bench/selection.py).
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


def reference_quotas(sizes: np.ndarray, budget: int, total: int):
    """The published per-bin quotas (t, m, b), each int64 [n_bins] (see the module docstring)."""
    # int() on floats, float error included: 321 * (486 / 52002) is 2.9999999999999996 → 2.
    ratio = budget / total
    q = np.maximum(1, np.floor(sizes * ratio).astype(np.int64))
    f = sizes / (3 * q)  # only used where 3q > n
    scaled = np.maximum(1, np.floor(q * f).astype(np.int64))
    over = 3 * q > sizes
    t = np.where(over, scaled, q)
    m = np.where(over, np.maximum(0, sizes - 2 * scaled), q)
    small = sizes < 3  # whole bin to middle
    return np.where(small, 0, t), np.where(small, sizes, m), np.where(small, 0, t)


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


def exact_split(sizes: np.ndarray, budget: int, total: int):
    """Per-bin quotas (t, m, b) of the exact strategy: bottom and middle as large as top fits."""
    t = exact_quotas(sizes, budget, total)
    b = np.minimum(t, sizes - t)
    return t, np.minimum(t, sizes - t - b), b


def _groups(order: np.ndarray, starts: np.ndarray, t, m, b):
    """Vectorised split of every bin's ranked members into top / middle / bottom.

    `rank` is each member's 0-based rank inside its bin; the masks are pure arithmetic on it.
    """
    sizes = np.diff(starts)
    bin_of = np.repeat(np.arange(len(sizes)), sizes)
    rank = np.arange(len(order)) - starts[bin_of]
    n, t, m, b = sizes[bin_of], t[bin_of], m[bin_of], b[bin_of]
    rest = n - t - b
    m = np.minimum(m, rest)
    mid_start = t + (rest - m) // 2
    is_top = rank < t
    is_bottom = rank >= n - b
    is_middle = (rank >= mid_start) & (rank < mid_start + m)
    return order[is_top], order[is_middle], order[is_bottom]


def _by_score(idx: np.ndarray, global_rank: np.ndarray, by_score: np.ndarray) -> np.ndarray:
    """`idx` reordered by score: mark its ranks and read the global order back (no sort)."""
    marked = np.zeros(len(by_score), dtype=bool)
    marked[global_rank[idx]] = True
    return by_score[marked]


def _cut(idx: np.ndarray, key: np.ndarray, bins: np.ndarray, budget: int, lowest: bool):
    """The `budget` members of `idx` with the highest (or lowest) key; ties: bin id, position."""
    if len(idx) <= budget:
        return idx
    k = key[idx] if lowest else -key[idx]
    return idx[np.lexsort((idx, bins[idx], k))[:budget]]


def select(scores: np.ndarray, bins: np.ndarray, budget: int, strategy: str = "exact") -> Selection:
    """Split the pool into top / middle / bottom index arrays (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    bins = np.asarray(bins, dtype=np.int64)
    total = len(scores)
    if len(bins) != total:
        raise InputError(f"{total} scores but {len(bins)} bin labels")
    if budget <= 0:
        raise InputError(f"budget must be positive, got {budget}")
    if budget > total:
        raise InputError(f"budget {budget} is larger than the pool ({total} records)")
    if total and bins.min() < 0:
        raise InputError("bin labels must be non-negative")
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    by_score = score_order(scores)
    global_rank = np.empty(total, dtype=np.int64)
    global_rank[by_score] = np.arange(total)
    order, starts = rank_within_bins(by_score, bins)
    sizes = np.diff(starts)
    t, m, b = STRATEGIES[strategy](sizes, budget, total)
    top, middle, bottom = _groups(order, starts, t, m, b)
    if strategy == "reference":
        key = np.where(np.isnan(scores), -np.inf, scores)
        top = _cut(top, key, bins, budget, lowest=False)
        middle = _cut(middle, key, bins, budget, lowest=False)
        bottom = _cut(bottom, key, bins, budget, lowest=True)
    top, middle, bottom = (_by_score(g, global_rank, by_score) for g in (top, middle, bottom))
    return Selection(top, middle, bottom, t, sizes)


STRATEGIES = {"exact": exact_split, "reference": reference_quotas}


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
