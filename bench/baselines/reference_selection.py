"""The bin-wise selection procedure written record by record in plain Python.

The oracle for tests/test_selection.py (the `reference` strategy) and the baseline of
bench/select.py. It follows DESIGN.md's text directly: group by bin, sort each bin, take quotas.
"""

from __future__ import annotations

import math


def _key(scores, i):
    s = scores[i]
    return (-(s if not math.isnan(s) else -math.inf), i)


def plain_reference(scores: list[float], bins: list[int], budget: int):
    """(top, middle, bottom) index lists, each ordered by score, highest first."""
    n_total = len(scores)
    ratio = budget / n_total
    members_of: dict[int, list[int]] = {}
    for i, b in enumerate(bins):
        members_of.setdefault(b, []).append(i)
    top, middle, bottom = [], [], []
    for b in sorted(members_of):
        members = sorted(members_of[b], key=lambda i: _key(scores, i))
        n = len(members)
        if n < 3:
            middle += members
            continue
        q = max(1, math.floor(n * ratio))
        top += members[:q]
        qb = min(q, n - q)
        bottom += members[n - qb :]
        rest = members[q : n - qb]
        qm = min(q, len(rest))
        start = (len(rest) - qm) // 2
        middle += rest[start : start + qm]
    top = sorted(top, key=lambda i: _key(scores, i))[:budget]
    bottom = sorted(bottom, key=lambda i: _key(scores, i))
    bottom = bottom[max(0, len(bottom) - budget) :]
    middle = sorted(middle, key=lambda i: _key(scores, i))
    if len(middle) > budget:
        s = (len(middle) - budget) // 2
        middle = middle[s : s + budget]
    return top, middle, bottom
