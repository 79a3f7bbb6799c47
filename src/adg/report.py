"""The selection report: one self-contained static HTML page, a Markdown summary and the headline
metrics of a select run.

The page needs no network and no JavaScript: plots are inline SVG written here. Sections (each a
`<section id=...>`): `run` (parameters and counts), `plane` (every record in the dispersion D ×
anisotropy I plane, the top set highlighted, quadrant lines at the medians), `histograms` (score,
D and I for the pool and for top / middle / bottom, as densities over shared bins), `bins` (size,
quota and picks of the largest bins, share of bins contributing to top), `examples` (instructions
from each quadrant with their sampled answers, escaped and truncated) and `tasks` (the task-type
composition when the analysis ran, else a note). All record text goes through `html.escape`.
Inputs are the scored pool, the three groups and the selection report dict of
`adg.subsets.select_records`; `add_analysis` puts a later task-type composition into a page.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adg import fields, render
from adg.analysis import accuracy_sentence
from adg.errors import InputError
from adg.records import id_key, read_records
from adg.render import esc, html_table, markdown_table

GROUPS = ("top", "middle", "bottom")
COLORS = {
    "pool": "#9aa5b1",
    "top": "#d9480f",
    "middle": "#1c7ed6",
    "bottom": "#5f3dc4",
    "selected": "#d9480f",
}
MAX_POINTS = 4000  # per layer of the D-I plane; larger pools are subsampled (seeded)
LARGEST_BINS = 15
EXAMPLES_PER_QUADRANT = 3
INSTRUCTION_CHARS = 400
ANSWER_CHARS = 240
ANALYSIS_MARK = "<!-- adg:tasks -->"
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
    """A run parameter as a user wrote it: 5 not 5.0, 1.4 not 1.4000, 1e-05."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


# ---------------------------------------------------------------- SVG plots


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


class _Canvas:
    """A plot area with linear axes mapped into an SVG of fixed size."""

    def __init__(self, width, height, xlim, ylim, title, xlabel, ylabel, left=56, bottom=44):
        self.w, self.h = width, height
        self.x0, self.x1 = left, width - 14
        self.y0, self.y1 = height - bottom, 28
        self.xlim, self.ylim = xlim, ylim
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" '
            f'role="img" aria-label="{esc(title)}">',
            f"<title>{esc(title)}</title>",
            f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-size="13">'
            f"{esc(title)}</text>",
            f'<rect x="{self.x0}" y="{self.y1}" width="{self.x1 - self.x0}" '
            f'height="{self.y0 - self.y1}" fill="none" stroke="#adb5bd"/>',
            f'<text x="{(self.x0 + self.x1) / 2:.0f}" y="{height - 8}" '
            f'text-anchor="middle">{esc(xlabel)}</text>',
            f'<text x="14" y="{(self.y0 + self.y1) / 2:.0f}" text-anchor="middle" '
            f'transform="rotate(-90 14 {(self.y0 + self.y1) / 2:.0f})">{esc(ylabel)}</text>',
        ]
        ticks = _ticks(*xlim)
        for n, t in enumerate(ticks):
            # The right-most label ends at the axis end: centred there it ran off the image.
            anchor = "end" if n == len(ticks) - 1 and n else "middle"
            self.parts.append(
                f'<text x="{self.px(t):.1f}" y="{self.y0 + 14}" text-anchor="{anchor}">'
                f"{t:.3g}</text>"
            )
        for t in _ticks(*ylim):
            y = self.py(t)
            self.parts.append(
                f'<text x="{self.x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{t:.3g}</text>'
            )

    def px(self, v: float) -> float:
        lo, hi = self.xlim
        return self.x0 + (v - lo) / ((hi - lo) or 1.0) * (self.x1 - self.x0)

    def py(self, v: float) -> float:
        lo, hi = self.ylim
        return self.y0 - (v - lo) / ((hi - lo) or 1.0) * (self.y0 - self.y1)

    def legend(self, items: list[tuple[str, str]]) -> None:
        for i, (label, color) in enumerate(items):
            y = self.y1 + 12 + 14 * i
            self.parts.append(
                f'<rect x="{self.x1 - 110}" y="{y - 8}" width="10" height="10" fill="{color}"/>'
                f'<text x="{self.x1 - 96}" y="{y + 1}">{esc(label)}</text>'
            )

    def svg(self) -> str:
        return "".join(self.parts) + "</svg>"


def _limits(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if not len(values):
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.04
    return lo - pad, hi + pad


def _subsample(idx: np.ndarray, limit: int) -> np.ndarray:
    if len(idx) <= limit:
        return idx
    return np.sort(np.random.default_rng(0).choice(idx, size=limit, replace=False))


def plane_svg(d: np.ndarray, i: np.ndarray, top_mask: np.ndarray) -> tuple[str, str]:
    """The D-I plane: every record a dot, the top set highlighted, medians as quadrant lines.
    Returns (svg, caption)."""
    ok = ~np.isnan(d) & ~np.isnan(i)
    c = _Canvas(
        640,
        440,
        _limits(d[ok]),
        _limits(i[ok]),
        "Records in the dispersion–anisotropy plane",
        "dispersion D(x)",
        "anisotropy I(x)",
    )
    rest = _subsample(np.flatnonzero(ok & ~top_mask), MAX_POINTS)
    top = _subsample(np.flatnonzero(ok & top_mask), MAX_POINTS)
    for idx, color, r, op in ((rest, COLORS["pool"], 2.2, 0.55), (top, COLORS["top"], 2.8, 0.85)):
        dots = "".join(
            f'<circle cx="{c.px(d[k]):.1f}" cy="{c.py(i[k]):.1f}" r="{r}"/>' for k in idx
        )
        c.parts.append(
            f'<g class="{"top" if idx is top else "pool"}" fill="{color}" '
            f'fill-opacity="{op}">{dots}</g>'
        )
    if ok.any():
        md, mi = float(np.median(d[ok])), float(np.median(i[ok]))
        c.parts.append(
            f'<g stroke="#495057" stroke-dasharray="4 3"><line x1="{c.px(md):.1f}" '
            f'y1="{c.y1}" x2="{c.px(md):.1f}" y2="{c.y0}"/><line x1="{c.x0}" y1="{c.py(mi):.1f}" '
            f'x2="{c.x1}" y2="{c.py(mi):.1f}"/></g>'
        )
    c.legend([("selected (top)", COLORS["top"]), ("other records", COLORS["pool"])])
    shown = len(rest) + len(top)
    caption = (
        f"{shown} of {int(ok.sum())} records shown"
        + (" (seeded subsample)" if shown < ok.sum() else "")
        + "; dashed lines at the medians of D and I."
    )
    return c.svg(), caption


def histogram_svg(name: str, series: dict[str, np.ndarray], bins: int = 24) -> str:
    """Density histograms of one quantity: the pool as bars, each group as a step line."""
    pool = series["pool"][~np.isnan(series["pool"])]
    lo, hi = _limits(pool)
    edges = np.linspace(lo, hi, bins + 1)
    dens = {}
    for key, vals in series.items():
        vals = vals[~np.isnan(vals)]
        counts, _ = np.histogram(vals, bins=edges)
        dens[key] = counts / (counts.sum() * (edges[1] - edges[0])) if counts.sum() else counts
    ymax = max((float(v.max()) for v in dens.values() if len(v)), default=1.0) or 1.0
    c = _Canvas(340, 250, (lo, hi), (0.0, ymax * 1.08), name, name, "density", left=48)
    bars = []
    for k in range(bins):
        x, x2 = c.px(edges[k]), c.px(edges[k + 1])
        y = c.py(float(dens["pool"][k]))
        bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{x2 - x:.1f}" height="{c.y0 - y:.1f}"/>')
    c.parts.append(
        f'<g class="pool" fill="{COLORS["pool"]}" fill-opacity="0.5">{"".join(bars)}</g>'
    )
    for key in GROUPS:
        if key not in dens:
            continue
        pts = []
        for k in range(bins):
            y = c.py(float(dens[key][k]))
            pts.append(f"{c.px(edges[k]):.1f},{y:.1f} {c.px(edges[k + 1]):.1f},{y:.1f}")
        c.parts.append(
            f'<polyline class="{key}" fill="none" stroke="{COLORS[key]}" stroke-width="1.6" '
            f'points="{" ".join(pts)}"/>'
        )
    c.legend([(k, COLORS[k]) for k in ("pool", *GROUPS) if k in dens])
    return c.svg()


def composition_svg(comp: dict[str, Any]) -> str:
    """Horizontal bars: share of each task category in the pool and in the selected subset."""
    cats = comp["categories"]
    layers = [("pool", COLORS["pool"])]
    if comp.get("selected"):
        layers.append(("selected", COLORS["selected"]))
    row_h = 8 * len(layers) + 8
    width, left, top = 560, 150, 30
    height = top + row_h * len(cats) + 30
    smax = max(max(comp[k]["shares"].values()) for k, _ in layers) or 1.0
    scale = (width - left - 60) / smax
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11" role="img" '
        f'aria-label="task-type composition"><title>task-type composition</title>',
        f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" font-size="13">'
        "Task types: share of records</text>",
    ]
    for r, cat in enumerate(cats):
        y = top + r * row_h
        parts.append(
            f'<text x="{left - 6}" y="{y + row_h / 2 + 2:.0f}" text-anchor="end">{esc(cat)}</text>'
        )
        for j, (key, color) in enumerate(layers):
            share = comp[key]["shares"][cat]
            yy = y + 4 + 8 * j
            parts.append(
                f'<rect class="{key}" x="{left}" y="{yy}" width="{share * scale:.1f}" height="7" '
                f'fill="{color}"/><text x="{left + share * scale + 4:.1f}" y="{yy + 7}" '
                f'font-size="9">{share:.1%}</text>'
            )
    for j, (key, color) in enumerate(layers):
        x = left + 90 * j
        parts.append(
            f'<rect x="{x}" y="{height - 16}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{height - 7}">{esc(key)}</text>'
        )
    return "".join(parts) + "</svg>"


# ---------------------------------------------------------------- sections


def analysis_section(comp: dict[str, Any] | None) -> str:
    """The `tasks` section: composition table and chart, or a note that the analysis did not run."""
    if not comp:
        return (
            f'<section id="tasks"><h2>Task types</h2>{ANALYSIS_MARK}<p class="muted">The task-type '
            "analysis did not run (<code>adg run --analyse</code>, the pipeline parameter "
            "<code>analyse_enabled</code>, or <code>adg analyse ... --report report.html</code>)."
            "</p></section>"
        )
    sel = comp.get("selected")
    head = ["category", "pool", "pool share"]
    if sel:
        head += ["selected", "selected share", "shift"]
    rows = []
    for cat in comp["categories"]:
        row = [cat, comp["pool"]["counts"][cat], f"{comp['pool']['shares'][cat]:.1%}"]
        if sel:
            row += [sel["counts"][cat], f"{sel['shares'][cat]:.1%}", f"{comp['shift'][cat]:+.1%}"]
        rows.append(row)
    return (
        f'<section id="tasks"><h2>Task types</h2><p>Classifier: {esc(comp["classifier"])}; '
        f"{comp['pool']['count']} pool records"
        + (f", {sel['count']} selected" if sel else "")
        + f'.</p><p class="{"sel" if comp.get("indicative_only", True) else "muted"}">'
        + f"{esc(accuracy_sentence(comp))}</p>"
        + f'{html_table(head, rows)}<div class="plots">{composition_svg(comp)}</div></section>'
    )


def add_analysis(page: str, comp: dict[str, Any]) -> str:
    """Replace the `tasks` section of a rendered page with the given composition."""
    start = page.find('<section id="tasks">')
    if start < 0:
        raise InputError("not an adg report page (no tasks section)")
    end = page.index("</section>", start) + len("</section>")
    return page[:start] + analysis_section(comp) + page[end:]


def reports_with_analysis(page: str, markdown: str, comp: dict[str, Any]) -> tuple[str, str]:
    """The selection report (HTML page, Markdown summary) with the task-type composition in it."""
    return add_analysis(page, comp), markdown.rstrip("\n") + "\n\n" + analysis_markdown(comp) + "\n"


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


def _example_html(r: dict[str, Any], d: float, i: float, selected: bool) -> str:
    answers = r.get("generated_answers") or []
    items = "".join(f"<li><pre>{esc(_cut(a, ANSWER_CHARS))}</pre></li>" for a in answers)
    extra = (r.get("input") or "").strip()
    return (
        f'<div class="ex"><div>id {esc(r.get("id"))} · D {d:.4f} · I {i:.4f} · score '
        f"{esc(_num(r.get('score')))}"
        + (' · <span class="sel">selected</span>' if selected else "")
        + f"</div><pre>{esc(_cut(r.get('instruction'), INSTRUCTION_CHARS))}</pre>"
        + (f'<pre class="muted">{esc(_cut(extra, INSTRUCTION_CHARS))}</pre>' if extra else "")
        + (f"<div>{len(answers)} sampled answers:</div><ol>{items}</ol>" if answers else "")
        + "</div>"
    )


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
        params["model"] = "embedded (SmolLM2-135M-Instruct)"
    for key in ("budget", "strategy"):
        if not any(k.endswith(key) for k in params):
            params[key] = numbers[key]
    metrics = headline_metrics(numbers, pool, groups, rejected)
    top_keys = {id_key(r["id"]) for r in groups["top"]}
    top_mask = np.array([id_key(r["id"]) in top_keys for r in pool], dtype=bool)
    d, i = fields.values(pool, "dispersion"), fields.values(pool, "anisotropy")

    # run: parameters and counts
    # Sorted: the pipeline hands the parameters over as a JSON object, in no fixed order.
    params = dict(sorted(params.items()))
    param_rows = [[k, _param(v)] for k, v in params.items()]
    counts = [
        ["records in (scored pool)", numbers["records"]],
        ["rejected at ingest", "not known" if rejected is None else rejected],
        ["selected (top)", numbers["top"]["count"]],
        ["middle / bottom", f"{numbers['middle']['count']} / {numbers['bottom']['count']}"],
        ["budget fill", f"{numbers['budget_fill']:.1%}"],
        ["bins (non-empty)", numbers["bins"]],
        [
            "bins contributing to top",
            f"{numbers['bins_in_top']} ({metrics['bins_in_top_share']:.1%})",
        ],
    ]
    group_rows = []
    for name, recs in (("pool", pool), *((g, groups[g]) for g in GROUPS)):
        group_rows.append(
            [name, len(recs)]
            + [
                _num(fields.mean(fields.values(recs, f)))
                for f in ("score", "dispersion", "anisotropy")
            ]
        )
    group_head = ["group", "records", "mean score", "mean D", "mean I"]
    collapse = numbers.get("score_collapse") or []
    warning = (
        '<p class="sel">Warning, score collapse: ' + esc("; ".join(collapse)) + "</p>"
        if collapse
        else ""
    )
    run = (
        '<section id="run"><h2>Run</h2>'
        + warning
        + '<div class="plots"><div><h3>Parameters</h3>'
        + html_table(["parameter", "value"], param_rows, left=2)
        + "</div><div><h3>Counts</h3>"
        + html_table(["", "value"], counts)
        + "</div></div>"
        + html_table(group_head, group_rows)
        + "</section>"
    )

    plane, caption = plane_svg(d, i, top_mask)
    plane_sec = (
        f'<section id="plane"><h2>Dispersion × anisotropy</h2><div class="plots">{plane}</div>'
        f'<p class="muted">{esc(caption)}</p></section>'
    )

    hists = []
    for field, label in (
        ("score", "score"),
        ("dispersion", "dispersion D"),
        ("anisotropy", "anisotropy I"),
    ):
        series = {"pool": fields.values(pool, field)}
        series.update({g: fields.values(groups[g], field) for g in GROUPS if groups[g]})
        hists.append(histogram_svg(label, series))
    hist_sec = (
        '<section id="histograms"><h2>Distributions</h2><div class="plots">'
        + "".join(hists)
        + '</div><p class="muted">Densities over shared bins: the pool as bars, each group as a '
        "line.</p></section>"
    )

    table = numbers.get("bins_table", [])
    bin_rows = [
        [b["bin"], b["size"], b["quota"], b["top"], b["middle"], b["bottom"]] for b in table
    ]
    bins_sec = (
        '<section id="bins"><h2>Coverage of the bins</h2>'
        f"<p>{numbers['bins_in_top']} of {numbers['bins']} non-empty bins "
        f"({metrics['bins_in_top_share']:.1%}) contribute to the top set; "
        f"{numbers.get('bins_with_quota', '–')} bins have a non-zero quota. "
        f"The {len(table)} largest bins:</p>"
        + html_table(["bin", "size", "quota", "top", "middle", "bottom"], bin_rows, left=0)
        + "</section>"
    )

    chosen, md, mi = _examples(pool, d, i, top_keys)
    ex_parts = [
        '<section id="examples"><h2>Examples by quadrant</h2>'
        f'<p class="muted">Quadrants split at median D = {_num(md)} and median I = {_num(mi)}; '
        "the records farthest from the medians are shown.</p>"
    ]
    for q, title, meaning in QUADRANTS:
        ex_parts.append(f'<h3 id="q-{q}">{esc(title)}</h3><p class="muted">{esc(meaning)}</p>')
        for k in chosen[q]:
            ex_parts.append(_example_html(pool[k], d[k], i[k], bool(top_mask[k])))
        if not chosen[q]:
            ex_parts.append('<p class="muted">no records</p>')
    ex_parts.append("</section>")

    body = run + plane_sec + hist_sec + bins_sec + "".join(ex_parts) + analysis_section(analysis)
    page = render.page("ADG selection report", body)
    markdown = _markdown(numbers, params, counts, group_head, group_rows, table, analysis)
    return Report(page, markdown, metrics)


def _markdown(numbers, params, counts, group_head, group_rows, table, analysis) -> str:
    parts = [
        "# ADG selection report",
        f"Selected **{numbers['top']['count']}** of {numbers['records']} records "
        f"(budget {numbers['budget']}, fill {numbers['budget_fill']:.1%}, strategy "
        f"{numbers['strategy']}); {numbers['bins_in_top']} of {numbers['bins']} bins contribute.",
        "## Parameters",
        markdown_table(["parameter", "value"], [[k, _param(v)] for k, v in params.items()]),
        "## Counts",
        markdown_table(["", "value"], counts),
        "## Groups",
        markdown_table(group_head, group_rows),
    ]
    if table:
        parts += [
            "## Largest bins",
            markdown_table(
                ["bin", "size", "quota", "top", "middle", "bottom"],
                [
                    [b["bin"], b["size"], b["quota"], b["top"], b["middle"], b["bottom"]]
                    for b in table
                ],
            ),
        ]
    if analysis:
        parts.append(analysis_markdown(analysis))
    return "\n\n".join(parts) + "\n"


def analysis_markdown(comp: dict[str, Any]) -> str:
    """The task-type composition as a Markdown section."""
    sel = comp.get("selected")
    head = ["category", "pool share"] + (["selected share", "shift"] if sel else [])
    rows = []
    for c in comp["categories"]:
        row = [c, f"{comp['pool']['shares'][c]:.1%}"]
        if sel:
            row += [f"{sel['shares'][c]:.1%}", f"{comp['shift'][c]:+.1%}"]
        rows.append(row)
    return (
        f"## Task types\n\nClassifier: {comp['classifier']}\n\n{accuracy_sentence(comp)}\n\n"
        + markdown_table(head, rows)
    )


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
