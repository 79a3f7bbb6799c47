"""Bin-wise selection: the reference procedure against a plain-Python rendering of its text, and
the exact strategy's budget fill and proportionality."""

import numpy as np
import pytest

from adg.method.selection import (
    collapse_reasons,
    exact_quotas,
    reference_quotas,
    score_order,
    select,
)
from bench.baselines.reference_selection import plain_reference


def _random_case(rng):
    """A pool in one of the regimes the published procedure must hold in."""
    n = int(rng.integers(3, 600))
    regime = rng.integers(0, 3)
    if regime == 0:  # bins of every size
        bins = rng.integers(0, max(2, n // int(rng.integers(2, 30))), n)
    elif regime == 1:  # mostly tiny bins (1-2 records), a few larger ones
        bins = np.concatenate([np.arange(n - n // 4), rng.integers(0, 5, n // 4)])
        bins = rng.permutation(bins)
    else:  # one or two big bins
        bins = rng.integers(0, 2, n)
    ratio = float(rng.choice([0.01, 0.05, 0.19, 0.33, 0.34, 0.5, 0.66, 0.75, 0.9]))
    budget = max(1, min(n, int(n * ratio) + int(rng.integers(-1, 2))))
    scores = rng.random(n).round(int(rng.integers(1, 4)))  # coarse rounding: many ties
    if rng.random() < 0.3:
        scores[rng.integers(0, n, 3)] = np.nan
    return scores, bins, budget


@pytest.mark.parametrize("seed", range(300))
def test_reference_matches_the_published_procedure(seed):
    scores, bins, budget = _random_case(np.random.default_rng(seed))
    sel = select(scores, bins, budget, "reference")
    top, middle, bottom = plain_reference(list(scores), list(bins), budget)
    assert sel.top.tolist() == top
    assert sel.middle.tolist() == middle
    assert sel.bottom.tolist() == bottom


def test_reference_at_half_the_pool():
    # 600 records in 40 bins of 15, budget 300: q = int(7.5) = 7, 3q > 15 → f = 15/21,
    # t = b = int(7·f) = 5, m = 15 − 10 = 5 per bin: 200 records in each group.
    rng = np.random.default_rng(0)
    bins = np.repeat(np.arange(40), 15)
    sel = select(rng.random(600), bins, 300, "reference")
    assert (len(sel.top), len(sel.middle), len(sel.bottom)) == (200, 200, 200)


def test_reference_hand_case():
    # One bin of 10 (scores 9..0 by position), one bin of 2; budget 3 of 12 → ratio 0.25.
    scores = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 50, 40], dtype=float)
    bins = np.array([0] * 10 + [1, 1])
    sel = select(scores, bins, 3, "reference")
    # q = int(10 * 0.25) = 2: top = ranks 0,1; bottom = ranks 8,9; rest = ranks 2..7, middle its
    # centre two = ranks 4,5. The 2-record bin goes to middle whole; middle [10, 11, 4, 5] is cut
    # to its 3 highest scores (not its centre).
    assert sel.top.tolist() == [0, 1]
    assert sel.bottom.tolist() == [8, 9]
    assert sel.middle.tolist() == [10, 11, 4]


def test_reference_cut_ties_go_to_the_lower_bin():
    # Two 2-record bins go to middle whole, all four scores tie; budget 1: the cut keeps the
    # record of the lower bin id, although it sits later in the pool.
    scores = np.array([0.5, 0.5, 0.5, 0.5])
    bins = np.array([1, 1, 0, 0])
    sel = select(scores, bins, 1, "reference")
    assert sel.middle.tolist() == [2]


def test_reference_rounds_like_the_published_code():
    # 321 * (486 / 52002) is 2.9999999999999996 in floating point: the published int(n * ratio)
    # gives 2, and so must we (a tolerance would give 3).
    sizes = np.array([321, 52002 - 321])
    assert reference_quotas(sizes, 486, 52002)[0][0] == 2  # (t, m, b)[t] of bin 0
    scores = np.random.default_rng(0).random(52002)
    bins = np.repeat([0, 1], sizes)
    sel = select(scores, bins, 486, "reference")
    top, middle, bottom = plain_reference(list(scores), list(bins), 486)
    assert (bins[sel.top] == 0).sum() == 2
    assert sel.top.tolist() == top
    assert sel.middle.tolist() == middle
    assert sel.bottom.tolist() == bottom


def test_exact_fills_budget_proportionally():
    rng = np.random.default_rng(3)
    bins = np.repeat(np.arange(7), [50, 30, 10, 5, 2, 1, 2])
    scores = rng.random(len(bins))
    for budget in (1, 7, 10, 33, 99):
        sel = select(scores, bins, budget, "exact")
        assert len(sel.top) == budget
        counts = np.bincount(bins[sel.top], minlength=7)
        raw = np.bincount(bins) * budget / len(bins)
        assert np.all(np.abs(counts - raw) < 1.0 + 1e-9)
        # Inside every bin the picked ones are that bin's best.
        for b in range(7):
            members = np.where(bins == b)[0]
            best = members[np.argsort(-scores[members], kind="stable")][: counts[b]]
            assert set(best) == set(sel.top[bins[sel.top] == b])
        assert not set(sel.top) & set(sel.bottom)
        assert not set(sel.top) & set(sel.middle)


def test_exact_quotas_largest_remainder():
    sizes = np.array([5, 3, 2])
    # budget 5 of 10: raw 2.5, 1.5, 1.0 → floors 2, 1, 1 (4); one more to the larger tie (bin 0).
    assert exact_quotas(sizes, 5, 10).tolist() == [3, 1, 1]


@pytest.mark.parametrize("seed", range(4))
def test_score_order_equals_a_stable_float_sort(seed):
    # The integer-key sort against the plain one: signed zeros, infinities, NaN, subnormals, ties.
    rng = np.random.default_rng(seed)
    special = [np.nan, -np.inf, np.inf, -0.0, 0.0, 0.5, -0.5, 5e-324, -5e-324, 1e300]
    scores = np.concatenate([rng.choice(special, 500), rng.normal(size=500).round(1)])
    rng.shuffle(scores)
    plain = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")
    assert score_order(scores).tolist() == plain.tolist()


def test_deterministic_and_nan_lowest():
    scores = np.array([0.5, np.nan, 0.5, 0.9, 0.1, 0.5])
    bins = np.zeros(6, dtype=int)
    a = select(scores, bins, 2)
    b = select(scores, bins, 2)
    assert a.top.tolist() == b.top.tolist() == [3, 0]
    assert a.bottom.tolist()[-1] == 1  # NaN ranks last


def test_budget_errors():
    with pytest.raises(ValueError, match="larger than the pool"):
        select(np.zeros(3), np.zeros(3, int), 4)
    with pytest.raises(ValueError, match="positive"):
        select(np.zeros(3), np.zeros(3, int), 0)
    with pytest.raises(ValueError, match="unknown strategy"):
        select(np.zeros(3), np.zeros(3, int), 1, "greedy")


@pytest.mark.parametrize(
    ("scores", "reason"),
    [
        ([0.3] * 10, "zero spread"),
        ([0.1, np.nan, 0.2, 0.4], "NaN"),
        ([0.5] * 6 + [0.1, 0.2, 0.3, 0.9], "60% of records share one score value"),
    ],
)
def test_collapse_is_detected(scores, reason):
    assert any(reason in r for r in collapse_reasons(np.array(scores)))


def test_healthy_scores_do_not_collapse():
    assert collapse_reasons(np.random.default_rng(0).random(100)) == []
