"""The select stage's files: scored records + bins + budget → top/middle/bottom JSON + a report.

`top.json`, `middle.json`, `bottom.json` are JSON arrays of scored records (the original ADG
repository's format), each ordered by score, highest first. `selection_report.json` holds the
counts, bins used, budget fill, score / dispersion / anisotropy ranges per group and the quota and
picks of the largest bins; `select_file` also writes the human report (`adg.report`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from adg import fields
from adg.errors import AdgError
from adg.progress import log
from adg.records import PoolError, read_records, write_json_array
from adg.selection import collapse_reasons, select

GROUPS = ("top", "middle", "bottom")
LARGEST_BINS = 15


class ScoreCollapse(AdgError, ValueError):
    """The scores cannot rank the pool and the caller asked to fail on that."""


def select_records(
    scored_path: str | os.PathLike,
    clusters_path: str | os.PathLike,
    budget: int,
    strategy: str = "exact",
    fail_on_collapse: bool = False,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Split the scored pool into the three groups; return them and the selection report.

    Scores that cannot rank the pool (NaNs, no spread, most records at one value) are reported
    loudly on stderr and in the report; with `fail_on_collapse` they raise `ScoreCollapse`.
    """
    records = read_records(scored_path)
    bins = np.load(clusters_path)
    if len(bins) != len(records):
        raise PoolError(
            f"{clusters_path}: {len(bins)} bin labels for {len(records)} scored records in "
            f"{scored_path}; both must come from the same pool"
        )
    for n, r in enumerate(records):
        if not isinstance(r.get("score"), int | float):
            raise PoolError(
                f"{scored_path}: record {n} (id {r.get('id')!r}): field 'score' missing"
            )
    scores = np.array([float(r["score"]) for r in records], dtype=np.float64)
    if budget < 1:
        raise PoolError(f"budget must be positive, got {budget}")
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
        "bins_table": _bins_table(sel, bins),
        "pool": {
            "score": fields.summary(scores),
            "dispersion": fields.summary(fields.values(records, "dispersion")),
            "anisotropy": fields.summary(fields.values(records, "anisotropy")),
        },
    }
    groups = {}
    for name in GROUPS:
        idx = getattr(sel, name)
        groups[name] = [records[i] for i in idx]
        report[name] = {
            "count": len(idx),
            "score": fields.summary(scores[idx]),
            "dispersion": fields.summary(fields.values(groups[name], "dispersion")),
            "anisotropy": fields.summary(fields.values(groups[name], "anisotropy")),
            "file": f"{name}.json",
        }
    return groups, report


def _bins_table(sel, bins: np.ndarray, limit: int = LARGEST_BINS) -> list[dict[str, int]]:
    """Size, quota and picks per group of the `limit` largest bins (ties: lower bin id)."""
    n = len(sel.bin_sizes)
    picks = {g: np.bincount(bins[getattr(sel, g)], minlength=n) for g in GROUPS}
    largest = np.lexsort((np.arange(n), -sel.bin_sizes))[:limit]
    return [
        {
            "bin": int(b),
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
    from adg.report import report_for_run

    groups, report = select_records(
        scored_path, clusters_path, budget, strategy, fail_on_collapse=fail_on_collapse
    )
    for name, records in groups.items():
        write_json_array(paths[name], records)
    with open(paths["report"], "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
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
