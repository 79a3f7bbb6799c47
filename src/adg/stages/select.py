"""The select stage's files: scored records + bins + budget → top/middle/bottom JSON + a report.

`top.json`, `middle.json`, `bottom.json` are JSON arrays of scored records (the original ADG
repository's format), each ordered by score, highest first. `selection_report.json` holds the
counts, bins used, budget fill, score / dispersion / anisotropy ranges per group and the quota and
picks of the largest bins; `select_file` also writes the human report (`adg.reporting.report`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from adg.errors import AdgError
from adg.io import fields
from adg.io.jsonl import write_json_array
from adg.io.reading import iter_numbered
from adg.io.records import PoolError
from adg.method.selection import collapse_reasons, select
from adg.progress import log

GROUPS = ("top", "middle", "bottom")
LARGEST_BINS = 15


class ScoreCollapse(AdgError, ValueError):
    """The scores cannot rank the pool and the caller asked to fail on that."""


def load_bins(path: str | os.PathLike, n_records: int) -> tuple[np.ndarray, np.ndarray | None]:
    """`clusters.npy` checked before anything is allocated from it: a 1-d integer array with one
    bin id ≥ 0 per record. Returns (bins as int64, original ids or None).

    The header is read through a memory map, so a wrong dtype, shape or length costs nothing.
    Bin ids are usually 0..K-1 with K ≤ N; ids of N or more (sparse labels from elsewhere) are
    renumbered 0..K-1 in their order, so no allocation grows with the largest id, and the original
    ids are returned for the report.
    """
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise PoolError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as err:
        reason = "holds Python objects" if "pickle" in str(err) or "objects" in str(err) else err
        raise PoolError(f"{path}: not a readable .npy array ({reason})") from None
    if not isinstance(arr, np.ndarray):
        raise PoolError(f"{path}: not a .npy array (an .npz archive?)")
    if arr.ndim != 1:
        raise PoolError(
            f"{path}: shape {arr.shape}, expected a 1-d array of bin ids, one per record"
        )
    if arr.dtype.kind not in "iu":
        raise PoolError(f"{path}: dtype {arr.dtype}, expected integer bin ids")
    if len(arr) != n_records:
        raise PoolError(f"{path}: {len(arr)} bin labels for {n_records} scored records")
    if not len(arr):
        return np.zeros(0, dtype=np.int64), None
    low = arr.min()
    if low < 0:
        raise PoolError(
            f"{path}: bin id {int(low)} at position {int(arr.argmin())}: bin ids must be 0 or more"
        )
    if int(arr.max()) < n_records:
        return np.asarray(arr, dtype=np.int64), None
    labels, compact = np.unique(arr, return_inverse=True)
    return compact.astype(np.int64).reshape(-1), labels


def _number(record: dict[str, Any], name: str, where: str, required: bool = False) -> float:
    """A numeric field as float (missing or null: NaN); true/false or text is an error."""
    value = record.get(name)
    if value is None and not required:
        return np.nan
    if value is None:
        raise PoolError(f"{where}: field '{name}' missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PoolError(f"{where}: field '{name}': expected a number, got {json.dumps(value)}")
    return float(value)


def read_scored(path: str | os.PathLike) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Scored records and their `score`, `dispersion`, `anisotropy` columns (float64, NaN where
    a record has none); any record that the selection or its report cannot use is one error
    naming file, line and field."""
    records: list[dict[str, Any]] = []
    columns: dict[str, list[float]] = {"score": [], "dispersion": [], "anisotropy": []}
    for lineno, record in iter_numbered(path):
        where = f"{path}:{lineno} (id {record.get('id')!r})"
        for name, values in columns.items():
            values.append(_number(record, name, where, required=name == "score"))
        value = record.get("input")
        if value is not None and not isinstance(value, str):
            raise PoolError(
                f"{where}: field 'input': expected a string, got {json.dumps(value)[:40]}"
            )
        records.append(record)
    return records, {k: np.array(v, dtype=np.float64) for k, v in columns.items()}


def select_records(
    scored_path: str | os.PathLike,
    clusters_path: str | os.PathLike,
    budget: int,
    strategy: str = "exact",
    fail_on_collapse: bool = False,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Split the scored pool into the three groups; return them and the selection report.

    Scores that cannot rank the pool (NaNs, infinities, no spread, most records at one value) are
    reported loudly on stderr and in the report; with `fail_on_collapse` they raise
    `ScoreCollapse`.
    """
    records, columns = read_scored(scored_path)
    try:
        bins, labels = load_bins(clusters_path, len(records))
    except PoolError as err:
        if "bin labels for" in str(err):
            raise PoolError(f"{err} in {scored_path}; both must come from the same pool") from None
        raise
    scores = columns["score"]
    if budget > len(records):
        raise PoolError(f"budget {budget} is larger than the pool ({len(records)} records)")
    sel = select(scores, bins, budget, strategy)
    collapse = collapse_reasons(scores)
    if collapse and fail_on_collapse:
        raise ScoreCollapse(f"score collapse in {scored_path}: {'; '.join(collapse)}")
    if collapse:
        log.warning(
            "WARNING: score collapse in %s: %s; the selection cannot be trusted to mean anything",
            scored_path,
            "; ".join(collapse),
        )
    report: dict[str, Any] = {
        "records": len(records),
        "budget": budget,
        "strategy": strategy,
        "bins": int((sel.bin_sizes > 0).sum()),
        "bins_in_top": len(np.unique(bins[sel.top])) if len(sel.top) else 0,
        "budget_fill": len(sel.top) / budget,
        "score_collapse": collapse,
        "bins_with_quota": int((sel.quotas > 0).sum()),
        "bins_table": _bins_table(sel, bins, labels),
        "pool": {name: fields.summary(values) for name, values in columns.items()},
    }
    groups = {}
    for name in GROUPS:
        idx = getattr(sel, name)
        groups[name] = [records[i] for i in idx]
        report[name] = {
            "count": len(idx),
            **{field: fields.summary(values[idx]) for field, values in columns.items()},
            "file": f"{name}.json",
        }
    return groups, report


def _bins_table(
    sel, bins: np.ndarray, labels: np.ndarray | None = None, limit: int = LARGEST_BINS
) -> list[dict[str, int]]:
    """Size, quota and picks per group of the `limit` largest bins (ties: lower bin id);
    `labels` maps renumbered bins back to the ids of `clusters.npy`."""
    n = len(sel.bin_sizes)
    picks = {g: np.bincount(bins[getattr(sel, g)], minlength=n) for g in GROUPS}
    largest = np.lexsort((np.arange(n), -sel.bin_sizes))[:limit]
    return [
        {
            "bin": int(b if labels is None else labels[b]),
            "size": int(sel.bin_sizes[b]),
            "quota": int(sel.quotas[b]),
            **{g: int(picks[g][b]) for g in GROUPS},
        }
        for b in largest
        if sel.bin_sizes[b] > 0
    ]


# The select stage's files, by output name (`adg select` writes them under these names).
SELECTION_FILES = {
    "top": "top.json",
    "middle": "middle.json",
    "bottom": "bottom.json",
    "report": "selection_report.json",
    "html": "report.html",
    "markdown": "report.md",
}


def write_selection(
    scored_path: str | os.PathLike,
    clusters_path: str | os.PathLike,
    budget: int,
    paths: dict[str, str | os.PathLike],
    strategy: str = "exact",
    fail_on_collapse: bool = False,
    run_parameters: dict[str, Any] | None = None,
    rejects_path: str | os.PathLike | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The select stage: write every file of `SELECTION_FILES` to `paths[name]`.

    Returns the selection report and the headline metrics of the rendered report.
    """
    from adg.reporting.report import report_for_run

    groups, report = select_records(
        scored_path, clusters_path, budget, strategy, fail_on_collapse=fail_on_collapse
    )
    for name, records in groups.items():
        write_json_array(paths[name], records)
    with open(paths["report"], "w", encoding="utf-8") as fh:
        # Strict JSON (no NaN / Infinity tokens), so any JSON reader can load it.
        json.dump(_strict_json(report), fh, indent=2, allow_nan=False)
        fh.write("\n")
    rendered = report_for_run(scored_path, groups, report, run_parameters, rejects_path)
    Path(paths["html"]).write_text(rendered.html, encoding="utf-8")
    Path(paths["markdown"]).write_text(rendered.markdown, encoding="utf-8")
    return report, rendered.metrics


def select_file(
    scored_path: str | os.PathLike,
    clusters_path: str | os.PathLike,
    budget: int,
    output_dir: str | os.PathLike,
    **options: Any,
) -> dict[str, Any]:
    """`write_selection` into `output_dir` under the names of `SELECTION_FILES`; the report."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / file for name, file in SELECTION_FILES.items()}
    report, _metrics = write_selection(scored_path, clusters_path, budget, paths, **options)
    return report


def _strict_json(value: Any) -> Any:
    """`value` with every NaN or ±Infinity float replaced by None."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict_json(v) for v in value]
    return value


def summary_lines(report: dict[str, Any], where: str | os.PathLike) -> list[str]:
    """A short human summary of a selection report."""

    def rng(s: dict[str, float | None]) -> str:
        if s["min"] is None:
            return "-"
        return f"{s['min']:.4f}..{s['max']:.4f} (mean {s['mean']:.4f})"

    lines = [
        f"selected {report['top']['count']} of {report['records']} records "
        f"(budget {report['budget']}, strategy {report['strategy']}, "
        f"{report['bins_in_top']} of {report['bins']} bins in top)",
        f"pool score {rng(report['pool']['score'])}",
    ]
    for name in GROUPS:
        g = report[name]
        lines.append(
            f"  {name:<6} {g['count']:>6} records  score {rng(g['score'])}  "
            f"{Path(where) / g['file']}"
        )
    if report.get("score_collapse"):
        lines.append("WARNING score collapse: " + "; ".join(report["score_collapse"]))
    return lines
