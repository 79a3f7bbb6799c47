"""The published ADG selection procedure, transcribed line by line in plain Python.

The oracle for tests/test_selection.py (the `reference` strategy) and the baseline of
bench/selection.py. Per bin of n >= 3 records sorted by score (best first, stable), the published
code reads:

    t = b = m = max(1, int(n * ratio))
    if t + m + b > n:
        f = n / (t + m + b)
        t = max(1, int(t * f)); b = max(1, int(b * f)); m = max(0, n - t - b)
    top += sorted[:t]; bottom += sorted[-b:]
    rest = sorted[t:-b]
    middle += rest[(len(rest) - m) // 2 : (len(rest) - m) // 2 + m] if len(rest) >= m else rest

Bins of n < 3 go to middle whole. Then each group longer than the budget is cut by score: top and
middle keep their `budget` highest scores, bottom its `budget` lowest. Bins are visited in
ascending id; the cut is Python's stable `sorted` over the groups as built, so ties keep that order.
NaN scores rank lowest (the published code assumes none). Groups are returned ordered by score,
highest first, ties by position in the pool, as `adg select` writes them.
"""

from __future__ import annotations

import math


def _score(scores, i):
    s = scores[i]
    return -math.inf if math.isnan(s) else s


def plain_reference(scores: list[float], bins: list[int], budget: int):
    """(top, middle, bottom) index lists, each ordered by score, highest first."""
    ratio = budget / len(scores)
    members_of: dict[int, list[int]] = {}
    for i, b in enumerate(bins):
        members_of.setdefault(b, []).append(i)
    top, middle, bottom = [], [], []
    for b in sorted(members_of):
        ranked = sorted(members_of[b], key=lambda i: _score(scores, i), reverse=True)
        n = len(ranked)
        if n < 3:
            middle += ranked
            continue
        t = b_ = m = max(1, int(n * ratio))
        if t + m + b_ > n:
            f = n / (t + m + b_)
            t = max(1, int(t * f))
            b_ = max(1, int(b_ * f))
            m = max(0, n - t - b_)
        top += ranked[:t]
        bottom += ranked[-b_:]
        rest = ranked[t:-b_]
        if len(rest) >= m:
            start = (len(rest) - m) // 2
            middle += rest[start : start + m]
        else:
            middle += rest
    if len(top) > budget:
        top = sorted(top, key=lambda i: _score(scores, i), reverse=True)[:budget]
    if len(middle) > budget:
        middle = sorted(middle, key=lambda i: _score(scores, i), reverse=True)[:budget]
    if len(bottom) > budget:
        bottom = sorted(bottom, key=lambda i: _score(scores, i))[:budget]

    def by_score(group):
        return sorted(group, key=lambda i: (-_score(scores, i), i))

    return by_score(top), by_score(middle), by_score(bottom)
