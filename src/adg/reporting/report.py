"""The selection report: one self-contained static HTML page, a Markdown summary and the headline
metrics of a select run.

The page needs no network and no JavaScript: plots are inline SVG (`adg.reporting.svg`). Sections
(each a `<section id=...>`): `run` (parameters and counts), `plane` (every record in the dispersion
D × anisotropy I plane, the top set highlighted, quadrant lines at the medians), `histograms`
(score, D and I for the pool and for top / middle / bottom, as densities over shared bins), `bins`
(size, quota and picks of the largest bins, share of bins contributing to top), `examples`
(instructions from each quadrant with their sampled answers, escaped and truncated; a conversation
shows its system prompt and earlier turns first) and `tasks` (the task-type
composition when the analysis ran, else a note).

Rendering is two steps: `report_context` turns the scored pool, the three groups and the selection
report dict of `adg.stages.select.select_records` into plain data, and the Jinja2 templates
`adg/templates/report.{html,md}.j2` (autoescaped HTML; Markdown through the `md` filter) render it
with the task-type composition (a plain dict, or None). The page embeds that data (gzip + base64
JSON in a `<meta name="adg-report-data">`), so `add_analysis` renders the page again with the
composition instead of editing it.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import os
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from adg.config import STAGE_CONFIGS, parameter_fields
from adg.errors import InputError
from adg.io import fields
from adg.io.reading import read_records
from adg.io.records import id_key
from adg.method.task_types import accuracy_sentence
from adg.reporting import svg
from adg.reporting.render import template
from adg.reporting.svg import GROUPS

TITLE = "ADG selection report"
DATA_META = "adg-report-data"
BIN_HEAD = ["bin", "size", "quota", "top", "middle", "bottom"]
EXAMPLES_PER_QUADRANT = 3
INSTRUCTION_CHARS = 400
ANSWER_CHARS = 240
QUADRANTS = (
    ("hi_hi", "high D, high I", "answers far apart, in several directions"),
    ("hi_lo", "high D, low I", "answers far apart along one direction"),
    ("lo_hi", "low D, high I", "answers close together, spread in several directions"),
    ("lo_lo", "low D, low I", "answers close together along one direction"),
)


@dataclass
class Report:
    """The rendered report: HTML page, Markdown summary, headline metrics (name → number)."""

    html: str
    markdown: str
    metrics: dict[str, float]


# ---------------------------------------------------------------- small helpers


def _cut(text: Any, limit: int) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


def _num(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, bool | int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _param(value: Any) -> str:
    """A run parameter as its type writes it: 5, 1.4, 1e-05 (an integer setting arrives as an
    int: `adg.config.typed_parameters`)."""
    return str(value)


# Parameters of the report without their stage's prefix, and the stage they belong to.
_UNPREFIXED = {"budget": "select", "strategy": "select", "selector": "select"}


def parameter_groups(params: dict[str, Any]) -> dict[str, Any]:
    """The run's parameters as the report shows them: the model once (its name, and its full
    path for a hover), then one group per stage in pipeline order (generate, score, cluster,
    select), each setting under its field name in its dataclass's order; others last; and
    all of it as one table."""
    known = parameter_fields()
    order = {name: i for i, name in enumerate(known)}
    groups: dict[str, list[tuple[int, str, str]]] = {stage: [] for stage in STAGE_CONFIGS}
    other = []
    model = None
    for name, value in params.items():
        if name == "model":
            path = str(value)
            model = {"name": Path(path.rstrip("/")).name or path, "path": path}
        elif name in known:
            stage, field_name, _kind = known[name]
            groups[stage].append((order[name], field_name, _param(value)))
        elif name in _UNPREFIXED:
            groups[_UNPREFIXED[name]].append((len(order), name, _param(value)))
        elif name.split("_", 1)[0] in groups and "_" in name:  # e.g. select_budget
            stage, field_name = name.split("_", 1)
            groups[stage].append((len(order), field_name, _param(value)))
        else:
            other.append([name, _param(value)])
    stages = [
        {"stage": stage, "rows": [[n, v] for _i, n, v in sorted(rows)]}
        for stage, rows in groups.items()
        if rows
    ]
    if other:
        stages.append({"stage": "other", "rows": sorted(other)})
    # One table of (stage, parameter, value), the stage named on its first row (Markdown).
    table = [["", "model", model["name"]]] if model else []
    for group in stages:
        table += [[group["stage"] if i == 0 else "", *r] for i, r in enumerate(group["rows"])]
    return {"model": model, "stages": stages, "table": table}


def _quadrant_of(d: float, i: float, md: float, mi: float) -> str:
    return ("hi" if d >= md else "lo") + "_" + ("hi" if i >= mi else "lo")


def _examples(pool, d, i, top_keys) -> tuple[dict[str, list[int]], float, float]:
    """Per quadrant, the records farthest from the median point (the most typical of it)."""
    ok = ~np.isnan(d) & ~np.isnan(i)
    if not ok.any():
        return {q: [] for q, _, _ in QUADRANTS}, math.nan, math.nan
    md, mi = float(np.median(d[ok])), float(np.median(i[ok]))
    sd = float(np.ptp(d[ok])) or 1.0
    si = float(np.ptp(i[ok])) or 1.0
    dist = np.abs(d - md) / sd + np.abs(i - mi) / si
    chosen: dict[str, list[int]] = {q: [] for q, _, _ in QUADRANTS}
    for k in np.lexsort((np.arange(len(pool)), -np.nan_to_num(dist, nan=-1.0))):
        if not ok[k]:
            continue
        q = _quadrant_of(d[k], i[k], md, mi)
        if len(chosen[q]) < EXAMPLES_PER_QUADRANT:
            chosen[q].append(int(k))
    return chosen, md, mi


def _example(r: dict[str, Any], d: float, i: float, selected: bool) -> dict[str, Any]:
    return {
        "id": str(r.get("id")),
        "d": f"{d:.4f}",
        "i": f"{i:.4f}",
        "score": _num(r.get("score")),
        "selected": selected,
        # A conversation: its system prompt and earlier turns, before the turn that was scored.
        "system": _cut((r.get("system") or "").strip(), INSTRUCTION_CHARS),
        "history": [
            {"role": t.get("role"), "content": _cut(t.get("content"), INSTRUCTION_CHARS)}
            for t in r.get("history") or []
        ],
        "instruction": _cut(r.get("instruction"), INSTRUCTION_CHARS),
        "input": _cut((r.get("input") or "").strip(), INSTRUCTION_CHARS),
        "answers": [_cut(a, ANSWER_CHARS) for a in r.get("generated_answers") or []],
    }


def headline_metrics(
    numbers: dict[str, Any],
    pool: list[dict[str, Any]],
    groups: dict[str, list[dict[str, Any]]],
    rejected: int | None,
) -> dict[str, float]:
    """The numbers logged as KFP Metrics (rejected only when known)."""
    m: dict[str, float] = {
        "records_in": numbers["records"],
        "selected": numbers["top"]["count"],
        "budget": numbers["budget"],
        "budget_fill": numbers["budget_fill"],
        "bins": numbers["bins"],
        "bins_in_top": numbers["bins_in_top"],
        "bins_in_top_share": numbers["bins_in_top"] / numbers["bins"] if numbers["bins"] else 0.0,
        # 1 when the scores could not rank the pool (select printed a warning): a flag to alert on.
        "score_collapse": 1.0 if numbers.get("score_collapse") else 0.0,
    }
    if rejected is not None:
        m["rejected"] = rejected
    for name, recs in (("pool", pool), *groups.items()):
        for field, short in (("dispersion", "D"), ("anisotropy", "I")):
            v = fields.mean(fields.values(recs, field))
            if v is not None:
                m[f"mean_{short}_{name}"] = v
    return m


def report_context(
    pool: list[dict[str, Any]],
    groups: dict[str, list[dict[str, Any]]],
    numbers: dict[str, Any],
    params: dict[str, Any],
    rejected: int | None,
    bins_in_top_share: float,
) -> dict[str, Any]:
    """The report as plain JSON data (strings and numbers already formatted for display; the plots
    as SVG text): what the templates render, besides the task-type composition."""
    top_keys = {id_key(r["id"]) for r in groups["top"]}
    top_mask = np.array([id_key(r["id"]) in top_keys for r in pool], dtype=bool)
    d, i = fields.values(pool, "dispersion"), fields.values(pool, "anisotropy")
    counts = [
        ["records in (scored pool)", numbers["records"]],
        ["rejected at ingest", "not known" if rejected is None else rejected],
        ["selected (top)", numbers["top"]["count"]],
        ["middle / bottom", f"{numbers['middle']['count']} / {numbers['bottom']['count']}"],
        ["budget fill", f"{numbers['budget_fill']:.1%}"],
        ["bins (non-empty)", numbers["bins"]],
        ["bins contributing to top", f"{numbers['bins_in_top']} ({bins_in_top_share:.1%})"],
    ]
    group_rows = [
        [name, len(recs)]
        + [_num(fields.mean(fields.values(recs, f))) for f in ("score", "dispersion", "anisotropy")]
        for name, recs in (("pool", pool), *((g, groups[g]) for g in GROUPS))
    ]
    plane, caption = svg.plane(d, i, top_mask)
    histograms = []
    for field, label in (
        ("score", "score"),
        ("dispersion", "dispersion D"),
        ("anisotropy", "anisotropy I"),
    ):
        series = {"pool": fields.values(pool, field)}
        series.update({g: fields.values(groups[g], field) for g in GROUPS if groups[g]})
        histograms.append(svg.histogram(label, series))
    table = numbers.get("bins_table", [])
    chosen, md, mi = _examples(pool, d, i, top_keys)
    return {
        "headline": {
            "selected": numbers["top"]["count"],
            "records": numbers["records"],
            "budget": numbers["budget"],
            "fill": numbers["budget_fill"],
            "strategy": numbers["strategy"],
            "bins_in_top": numbers["bins_in_top"],
            "bins": numbers["bins"],
        },
        "collapse": list(numbers.get("score_collapse") or []),
        "params": parameter_groups(params),
        "counts": counts,
        "group_head": ["group", "records", "mean score", "mean D", "mean I"],
        "group_rows": group_rows,
        "plane": {"svg": plane, "caption": caption},
        "histograms": histograms,
        "bins": {
            "in_top": numbers["bins_in_top"],
            "total": numbers["bins"],
            "share": bins_in_top_share,
            "with_quota": numbers.get("bins_with_quota", "–"),
            "head": BIN_HEAD,
            "rows": [[b[k] for k in BIN_HEAD] for b in table],
        },
        "examples": {
            "median_d": _num(md),
            "median_i": _num(mi),
            "quadrants": [
                {
                    "key": q,
                    "title": title,
                    "meaning": meaning,
                    "records": [
                        _example(pool[k], d[k], i[k], bool(top_mask[k])) for k in chosen[q]
                    ],
                }
                for q, title, meaning in QUADRANTS
            ],
        },
    }


def _globals(analysis: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "title": TITLE,
        "analysis": analysis,
        "composition_svg": lambda comp: Markup(svg.composition(comp)),
        "accuracy_sentence": accuracy_sentence,
    }


def render_page(context: dict[str, Any], analysis: dict[str, Any] | None = None) -> str:
    """The HTML page of `report_context`'s data, with the task-type composition if given."""
    raw = json.dumps(context, ensure_ascii=False, separators=(",", ":")).encode()
    data = base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")
    return template("report.html.j2").render(report=context, data=data, **_globals(analysis))


def render_markdown(context: dict[str, Any], analysis: dict[str, Any] | None = None) -> str:
    """The Markdown summary of `report_context`'s data, with the task-type composition if given."""
    return template("report.md.j2").render(report=context, **_globals(analysis))


class _DataMeta(HTMLParser):
    def __init__(self):
        super().__init__()
        self.data: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta" and a.get("name") == DATA_META:
            self.data = a.get("content")


def page_context(page: str) -> dict[str, Any]:
    """The `report_context` data a rendered page embeds."""
    parser = _DataMeta()
    parser.feed(page)
    parser.close()
    if not parser.data:
        raise InputError(f"not an adg report page (no <meta name={DATA_META!r}>)")
    try:
        return json.loads(gzip.decompress(base64.b64decode(parser.data, validate=True)))
    except (binascii.Error, OSError, EOFError, ValueError) as exc:
        raise InputError(f"adg report page: damaged {DATA_META} ({exc})") from None


def analysis_section(comp: dict[str, Any] | None) -> str:
    """The `tasks` section alone: composition table and chart, or a note that the analysis did not
    run."""
    return template("tasks.html.j2").render(**_globals(comp))


def analysis_markdown(comp: dict[str, Any]) -> str:
    """The task-type composition as a Markdown section."""
    return template("tasks.md.j2").render(**_globals(comp)).rstrip("\n")


def add_analysis(page: str, comp: dict[str, Any]) -> str:
    """The page rendered again from its embedded data, with the given composition."""
    return render_page(page_context(page), comp)


def reports_with_analysis(page: str, markdown: str, comp: dict[str, Any]) -> tuple[str, str]:
    """The selection report (HTML page, Markdown summary) with the task-type composition in it.

    The page is rendered again from its data; the Markdown summary gets the section at its end
    (where `render_markdown` puts it)."""
    return add_analysis(page, comp), markdown.rstrip("\n") + "\n\n" + analysis_markdown(comp) + "\n"


def build_report(
    pool: list[dict[str, Any]],
    groups: dict[str, list[dict[str, Any]]],
    numbers: dict[str, Any],
    run_parameters: dict[str, Any] | None = None,
    rejected: int | None = None,
    analysis: dict[str, Any] | None = None,
) -> Report:
    """Render the report of one select run (see the module docstring)."""
    params = dict(run_parameters or {})
    if params.get("model") == "":
        params["model"] = "SmolLM2-135M-Instruct (embedded)"
    for key in ("budget", "strategy"):
        if not any(k.endswith(key) for k in params):
            params[key] = numbers[key]
    metrics = headline_metrics(numbers, pool, groups, rejected)
    context = report_context(pool, groups, numbers, params, rejected, metrics["bins_in_top_share"])
    return Report(render_page(context, analysis), render_markdown(context, analysis), metrics)


def count_rejects(path: str | os.PathLike | None) -> int | None:
    """Lines in a rejects JSONL (None when no file was given or it does not exist)."""
    if not path or not Path(path).is_file():
        return None
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def report_for_run(
    scored_path: str | os.PathLike,
    groups: dict[str, list[dict[str, Any]]],
    numbers: dict[str, Any],
    run_parameters: dict[str, Any] | str | None = None,
    rejects_path: str | os.PathLike | None = None,
    analysis: dict[str, Any] | None = None,
) -> Report:
    """`build_report` from the select stage's files; `run_parameters` may be a JSON string."""
    if isinstance(run_parameters, str):
        run_parameters = json.loads(run_parameters or "{}")
    pool = read_records(scored_path)
    return build_report(
        pool, groups, numbers, run_parameters, count_rejects(rejects_path), analysis
    )
