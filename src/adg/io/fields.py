"""Numeric fields of records (score, dispersion, anisotropy, ...) as arrays, and their summaries.

`values(records, name)` is float64 [N], NaN where the field is missing, not a number or a bool.
The summaries skip NaN and infinite values, and give None when nothing is left, so a pool with a
few broken scores still reports on the rest (the selection report counts the NaNs separately).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def values(records: list[dict[str, Any]], name: str) -> np.ndarray:
    """The field `name` of every record, float64 [N]; NaN where it is not a number."""
    out = [
        float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
        for v in (r.get(name) for r in records)
    ]
    return np.array(out, dtype=np.float64)


def mean(array: np.ndarray) -> float | None:
    """The mean of the finite values, or None."""
    finite = array[np.isfinite(array)]
    return float(finite.mean()) if len(finite) else None


def summary(array: np.ndarray) -> dict[str, float | None]:
    """{"min", "mean", "max"} of the finite values (all None when there are none)."""
    finite = array[np.isfinite(array)]
    if not len(finite):
        return {"min": None, "mean": None, "max": None}
    return {"min": float(finite.min()), "mean": float(finite.mean()), "max": float(finite.max())}
