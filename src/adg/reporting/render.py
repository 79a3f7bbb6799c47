"""The shared pieces of the HTML and Markdown output (the selection report, the selector
comparison): the page frame and its stylesheet, escaping, one table renderer for each format, and
the Jinja2 environment of the report templates (package data under `adg/templates`).

Every cell is escaped: HTML cells with `html.escape`; Markdown cells so that any renderer shows
them literally (raw HTML such as `<script>` escaped, inline syntax and pipes backslash-escaped).
`*.html.j2` templates autoescape; `*.md.j2` templates escape values with the `md` filter (`md_cell`)
and tables with `markdown_table`.
"""

from __future__ import annotations

import html
import re
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

CSS = " ".join(
    [
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#212529;",
        "padding:0 1em}h1{font-size:1.6em}h2{border-bottom:1px solid #dee2e6;margin-top:1.6em}",
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #dee2e6;",
        "padding:.25em .6em;text-align:right}th{background:#f1f3f5}td.l,th.l{text-align:left}",
        ".plots{display:flex;flex-wrap:wrap;gap:1em}.ex{border:1px solid #dee2e6;",
        "border-radius:4px;padding:.5em .8em;margin:.5em 0}.ex pre{white-space:pre-wrap;",
        "margin:.2em 0;font-size:.9em}.muted{color:#868e96}.sel{color:#d9480f;font-weight:600}",
    ]
)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    """A standalone page around `body` (HTML, already escaped)."""
    return template("page.html.j2").render(title=title, body=Markup(body))


def html_table(head: list[str], rows: list[list[Any]], left: int = 1) -> str:
    """An HTML table; the first `left` columns are left-aligned; cells are escaped."""

    def cells(tag: str, row: list[Any]) -> str:
        attr = ' class="l"'
        return "".join(
            f"<{tag}{attr if i < left else ''}>{esc(c)}</{tag}>" for i, c in enumerate(row)
        )

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', head)}</tr>{body}</table>"


# Markdown's inline syntax; a backslash before one makes it literal.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def md_cell(value: Any) -> str:
    """A table cell's text, literal in any Markdown renderer: HTML escaped (a renderer passes raw
    HTML such as `<script>` through), inline syntax and pipes backslash-escaped, one line."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


def markdown_table(head: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; cells are escaped (`md_cell`)."""

    def line(row: list[Any]) -> str:
        return "| " + " | ".join(md_cell(c) for c in row) + " |"

    return "\n".join([line(head), "|" + "---|" * len(head), *(line(r) for r in rows)])


@cache
def environment() -> Environment:
    """The templates' environment: autoescape for HTML, an undefined name is an error."""
    env = Environment(
        loader=PackageLoader("adg", "templates"),
        autoescape=select_autoescape(["html.j2"], default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.do"],
    )
    env.filters["md"] = md_cell
    env.globals.update(
        css=Markup(CSS),
        html_table=lambda head, rows, left=1: Markup(html_table(head, rows, left)),
        markdown_table=markdown_table,
    )
    return env


def template(name: str):
    """A template of `adg/templates` by file name."""
    return environment().get_template(name)
