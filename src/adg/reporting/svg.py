"""Inline SVG plots of the selection report: the dispersion × anisotropy plane, density
histograms and the task-type composition bars. Fixed-size images, no plotting library, no script;
every label goes through `adg.reporting.render.esc`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adg.reporting.render import esc

GROUPS = ("top", "middle", "bottom")
COLORS = {
    "pool": "#9aa5b1",
    "top": "#d9480f",
    "middle": "#1c7ed6",
    "bottom": "#5f3dc4",
    "selected": "#d9480f",
}
MAX_POINTS = 4000  # per layer of the D-I plane; larger pools are subsampled (seeded)


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


def plane(d: np.ndarray, i: np.ndarray, top_mask: np.ndarray) -> tuple[str, str]:
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


def histogram(name: str, series: dict[str, np.ndarray], bins: int = 24) -> str:
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


def composition(comp: dict[str, Any]) -> str:
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
