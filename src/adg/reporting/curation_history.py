"""The curation history report: how the curated subset changed from version to version.

One row per version of a curation index (oldest first): when and by which run it was written,
how many entries and indexed records it covers, the size and mean score of its top set, and how
many top records it added and dropped against the version before. Markdown and a static HTML page
(every value escaped); input is the list of version manifests written by
`adg.stages.curation.select_version`.
"""

from __future__ import annotations

import html
from typing import Any

HEAD = (
    "version",
    "written",
    "run",
    "entries",
    "indexed records",
    "top",
    "top mean score",
    "added",
    "dropped",
)


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4f}"


def _rows(history: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for m in history:
        diff = m.get("diff") or {}
        rows.append(
            [
                str(m.get("id", "")),
                str(m.get("created_at", "")),
                str(m.get("run_id") or "-"),
                str(len(m.get("entries", []))),
                str(m.get("records", "")),
                str((m.get("counts") or {}).get("top", "")),
                _num((m.get("top_score") or {}).get("mean")),
                str(diff.get("added", "")),
                str(diff.get("dropped", "")),
            ]
        )
    return rows


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def history_markdown(history: list[dict[str, Any]]) -> str:
    last = history[-1]
    lines = [
        f"# Curated set, version {last['id']}",
        "",
        f"Top {last['counts']['top']} of {last['records']} indexed records "
        f"(budget {last['budget']}, model {last['settings'].get('model')}).",
        "",
        "## How the curated set changed",
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "---|" * len(HEAD),
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in _rows(history)]
    return "\n".join(lines) + "\n"


def history_html(history: list[dict[str, Any]]) -> str:
    last = history[-1]
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEAD)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in _rows(history)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Curated set, version {esc(str(last['id']))}</title></head><body>"
        f"<h1>Curated set, version {esc(str(last['id']))}</h1>"
        f"<p>Top {esc(str(last['counts']['top']))} of {esc(str(last['records']))} indexed "
        f"records (budget {esc(str(last['budget']))}, model "
        f"{esc(str(last['settings'].get('model')))}).</p>"
        "<h2>How the curated set changed</h2>"
        f"<table><tr>{head}</tr>{body}</table></body></html>\n"
    )
