"""Selectors side by side: one table over the subsets that ADG and the baselines selected.

Each selector's run is its selected subset (`top.json`, a JSON array of scored records) and, when
training ran, the lm-eval results of the model fine-tuned on it. `compare_runs` reads those files
and returns the comparison: per selector the selected count, mean score (each method's own scale),
mean dispersion D and anisotropy I where the records carry them, and, when evaluated, the
Reasoning / Knowledge / Coding / Average scores as in the paper (`adg.stages.evaluate.summarise`);
the pairwise Jaccard overlap of the selected ids; the selected ids themselves, so `with_task_mix`
can later add each subset's task-type mix from the analyse stage's labels. A baseline scores the
pool, not ADG's answers, so its subset carries no D and I of its own: given ADG's scored records,
`compare_runs` looks them up by id. `plan_selectors` validates the pipeline's `selectors`
parameter and splits off the baselines, `baseline_case` which of them need a model (and a GPU); the
rest renders the comparison as Markdown and a standalone HTML page. Pure: files in, dicts and
text out.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adg.errors import InputError
from adg.io import fields
from adg.io.reading import iter_records
from adg.io.records import PoolError, id_key
from adg.reporting import render
from adg.stages.evaluate import CATEGORIES as EVAL_CATEGORIES
from adg.stages.evaluate import load_results, summarise

ADG = "adg"
DIVERGENCE_FIELDS = ("dispersion", "anisotropy")
# Output name -> file name of the comparison (the compare step and `adg run` write these).
COMPARISON_FILES = {
    "comparison": "comparison.json",
    "table": "comparison.md",
    "html": "comparison.html",
}


@dataclass(frozen=True)
class SelectorRun:
    """One selector's files: its selected subset and, optionally, its evaluation results."""

    name: str
    top: str | os.PathLike
    results: str | os.PathLike | None = None


def plan_selectors(selectors: list[str]) -> tuple[list[str], bool]:
    """(baseline methods in the given order, without ADG and repeats; whether to compare).

    ADG always runs (it is the pipeline's own selection); a comparison happens when any other
    selector is asked for.
    """
    from adg.config import SCORE_METHODS

    if not isinstance(selectors, list) or not selectors:
        raise InputError("selectors: expected a non-empty list of scoring methods")
    unknown = [s for s in selectors if s not in SCORE_METHODS]
    if unknown:
        raise InputError(
            f"selectors: unknown method(s) {', '.join(map(repr, unknown))}; "
            f"choose from {sorted(SCORE_METHODS)}"
        )
    baselines = list(dict.fromkeys(s for s in selectors if s != ADG))
    return baselines, bool(baselines)


def baseline_case(baselines: list[str]) -> tuple[list[str], str]:
    """(the baselines that need a model, in order; which mix: "both", "models", "random" or
    "none"). The model-free one (random) scores in a CPU task of its own, without the GPU
    placement or the model cache; the pipeline has one branch per mix."""
    from adg.config import MODEL_FREE_METHODS

    with_model = [m for m in baselines if m not in MODEL_FREE_METHODS]
    free = any(m in MODEL_FREE_METHODS for m in baselines)
    case = {(True, True): "both", (True, False): "models", (False, True): "random"}
    return with_model, case.get((bool(with_model), free), "none")


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets are identical (1.0)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def _read_top(path: str | os.PathLike) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        raise PoolError(f"{path}: selected subset not found")
    return list(iter_records(path))


def _jsonable_id(value: Any) -> Any:
    return value if isinstance(value, int | str) else str(value)


def _divergence_by_id(scored: str | os.PathLike) -> dict[Any, dict[str, float]]:
    """id → ADG's dispersion and anisotropy, streamed from its scored records (which also hold
    every generated answer, so only these two numbers are kept)."""
    if not Path(scored).is_file():
        raise PoolError(f"{scored}: ADG's scored records not found")
    return {
        id_key(r["id"]): {f: r[f] for f in DIVERGENCE_FIELDS if f in r}
        for r in iter_records(scored)
    }


def _with_divergence(top: list[dict[str, Any]], divergence: dict) -> list[dict[str, Any]]:
    """The subset's records with ADG's D and I filled in where they lack them."""
    return [{**divergence.get(id_key(r["id"]), {}), **r} for r in top]


def compare_runs(
    runs: list[SelectorRun], adg_scored: str | os.PathLike | None = None
) -> dict[str, Any]:
    """The comparison of the selectors' runs (see the module docstring); `adg_scored` (ADG's
    scored records) gives the D and I of the baselines' records."""
    if not runs:
        raise InputError("nothing to compare: no selector runs")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise InputError(f"selectors compared twice: {names}")
    evaluated = all(r.results for r in runs)
    divergence = _divergence_by_id(adg_scored) if adg_scored else {}
    rows, ids = [], {}
    for run in runs:
        top = _with_divergence(_read_top(run.top), divergence)
        ids[run.name] = [r["id"] for r in top]
        row: dict[str, Any] = {
            "selector": run.name,
            "selected": len(top),
            "mean_score": fields.mean(fields.values(top, "score")),
            "mean_dispersion": fields.mean(fields.values(top, "dispersion")),
            "mean_anisotropy": fields.mean(fields.values(top, "anisotropy")),
        }
        if evaluated:
            summary = summarise(load_results(run.results))
            row["categories"] = {c: summary["categories"].get(c) for c in EVAL_CATEGORIES}
            row["average"] = summary["average"]
            row["benchmarks"] = {t["label"]: t["score"] for t in summary["tasks"]}
        rows.append(row)
    keys = {name: {id_key(i) for i in values} for name, values in ids.items()}
    overlap = [
        {
            "a": a,
            "b": b,
            "jaccard": jaccard(keys[a], keys[b]),
            "shared": len(keys[a] & keys[b]),
        }
        for a, b in itertools.combinations(names, 2)
    ]
    return {
        "selectors": names,
        "evaluated": evaluated,
        "rows": rows,
        "overlap": overlap,
        "task_mix": None,
        "selected_ids": {n: [_jsonable_id(i) for i in v] for n, v in ids.items()},
    }


def read_labels(path: str | os.PathLike) -> dict[tuple[str, Any], str]:
    """id → task type, from the analyse stage's labels JSONL."""
    labels = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise PoolError(f"{path}:{lineno}: malformed JSON: {err.msg}") from None
            if not isinstance(row, dict) or "id" not in row or not row.get("category"):
                raise PoolError(f"{path}:{lineno}: field 'id' or 'category' missing")
            labels[id_key(row["id"])] = str(row["category"])
    return labels


def with_task_mix(comparison: dict[str, Any], labels_path: str | os.PathLike) -> dict[str, Any]:
    """The comparison plus each selected subset's task-type shares (and the pool's)."""
    from adg.method.task_classifiers import CATEGORIES
    from adg.stages.analyse import composition

    labels = read_labels(labels_path)
    pool = list(labels.values())
    mix: dict[str, Any] = {"categories": list(CATEGORIES), "shares": {}}
    mix["shares"]["pool"] = composition(pool, None)["pool"]["shares"]
    for name, ids in comparison["selected_ids"].items():
        missing = [i for i in ids if id_key(i) not in labels]
        if missing:
            raise PoolError(f"{labels_path}: no label for selected id {missing[0]!r} ({name})")
        chosen = [labels[id_key(i)] for i in ids]
        mix["shares"][name] = composition(pool, chosen)["selected"]["shares"]
    return {**comparison, "task_mix": mix}


# ---------------------------------------------------------------- rendering


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _main_table(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    if comparison["evaluated"]:
        head = ["Selector", "Selected", *EVAL_CATEGORIES, "Average"]
        rows = [
            [
                r["selector"],
                str(r["selected"]),
                *(_fmt(r["categories"].get(c), 2) for c in EVAL_CATEGORIES),
                _fmt(r["average"], 2),
            ]
            for r in comparison["rows"]
        ]
        return head, rows
    head = ["Selector", "Selected", "Mean score", "Mean D", "Mean I"]
    rows = [
        [
            r["selector"],
            str(r["selected"]),
            _fmt(r["mean_score"]),
            _fmt(r["mean_dispersion"]),
            _fmt(r["mean_anisotropy"]),
        ]
        for r in comparison["rows"]
    ]
    return head, rows


def _overlap_table(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = comparison["selectors"]
    pairs = {(o["a"], o["b"]): o["jaccard"] for o in comparison["overlap"]}
    pairs.update({(b, a): v for (a, b), v in list(pairs.items())})
    rows = [[a, *(_fmt(1.0 if a == b else pairs[(a, b)], 3) for b in names)] for a in names]
    return ["Jaccard", *names], rows


def _mix_table(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    mix = comparison["task_mix"]
    columns = ["pool", *comparison["selectors"]]
    rows = [
        [category, *(f"{100 * mix['shares'][c][category]:.1f}%" for c in columns)]
        for category in mix["categories"]
    ]
    return ["Task type", *columns], rows


NOTES = {
    False: "Selection only (training was off). Mean score is on each method's own scale; mean D "
    "and I are ADG's dispersion and anisotropy of the selected records (– where unknown).",
    True: "Scores in percent of the model fine-tuned on each selector's subset, trained and "
    "evaluated with identical settings.",
}


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """The comparison as Markdown: the main table, the overlap and (if present) the task mix."""
    parts = ["## Selector comparison", "", NOTES[comparison["evaluated"]], ""]
    parts += [render.markdown_table(*_main_table(comparison)), ""]
    parts += ["### Overlap of the selected subsets (Jaccard of ids)", ""]
    parts += [render.markdown_table(*_overlap_table(comparison)), ""]
    if comparison.get("task_mix"):
        parts += ["### Task-type mix", "", render.markdown_table(*_mix_table(comparison)), ""]
    return "\n".join(parts)


def comparison_html(comparison: dict[str, Any]) -> str:
    """The comparison as a standalone HTML page."""
    body = [f"<p>{NOTES[comparison['evaluated']]}</p>", render.html_table(*_main_table(comparison))]
    body += ["<h2>Overlap of the selected subsets (Jaccard of ids)</h2>"]
    body += [render.html_table(*_overlap_table(comparison))]
    if comparison.get("task_mix"):
        body += ["<h2>Task-type mix</h2>", render.html_table(*_mix_table(comparison))]
    return render.page("ADG selector comparison", "".join(body))


def write_comparison(comparison: dict[str, Any], paths: dict[str, str | os.PathLike]) -> None:
    """Write the JSON, Markdown and HTML under `paths` (keys of `COMPARISON_FILES`)."""
    with open(paths["comparison"], "w", encoding="utf-8") as fh:
        json.dump(comparison, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    Path(paths["table"]).write_text(comparison_markdown(comparison), encoding="utf-8")
    Path(paths["html"]).write_text(comparison_html(comparison), encoding="utf-8")


def comparison_metrics(comparison: dict[str, Any]) -> dict[str, float]:
    """Flat numbers for a Metrics artifact: per selector and per pair of selectors."""
    out: dict[str, float] = {}
    for r in comparison["rows"]:
        name = r["selector"]
        out[f"{name}/selected"] = float(r["selected"])
        if r["mean_score"] is not None:
            out[f"{name}/mean_score"] = r["mean_score"]
        if r.get("average") is not None:
            out[f"{name}/average"] = r["average"]
    for o in comparison["overlap"]:
        out[f"jaccard/{o['a']}-{o['b']}"] = o["jaccard"]
    return out
