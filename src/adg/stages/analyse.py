"""The analyse stage: label every instruction with its task type and compare the category mix of
the pool with that of the selected subset.

The classifiers (`vectors`, `likelihood`, `endpoint`) are adg.method.task_classifiers. Their
measured accuracy on human labels (`benchmark_of`) goes into the composition
(`classifier_benchmark`), and below `TRUSTED_ACCURACY` (or when not measured, as for an endpoint or
another backbone) the mix is marked `indicative_only`.

Outputs: labels JSONL (`{"id", "category"}` per record, pool order) and a composition dict: counts
and shares per category for the pool and, when given, for the selected subset, and the shift
(selected share − pool share).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adg.config import AnalyseConfig
from adg.io.jsonl import write_jsonl
from adg.io.reading import read_records
from adg.io.records import PoolError, id_key
from adg.method.task_classifiers import CATEGORIES, benchmark_of, make_classifier
from adg.method.task_types import TRUSTED_ACCURACY, accuracy_sentence


def _mix(labels: Sequence[str]) -> dict[str, Any]:
    counts = {c: 0 for c in CATEGORIES}
    for label in labels:
        counts[label] += 1
    total = len(labels)
    shares = {c: (counts[c] / total if total else 0.0) for c in CATEGORIES}
    return {"count": total, "counts": counts, "shares": shares}


def composition(
    pool_labels: Sequence[str],
    selected_labels: Sequence[str] | None,
    classifier: str = "",
    benchmark: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Category counts and shares of the pool and the selected subset, and the shift between.

    `benchmark` is the classifier's measured accuracy on human labels (None: not measured); the
    mix is `indicative_only` unless that accuracy reaches `TRUSTED_ACCURACY`."""
    pool = _mix(pool_labels)
    out: dict[str, Any] = {
        "categories": list(CATEGORIES),
        "classifier": classifier,
        "classifier_benchmark": benchmark,
        "trusted_accuracy": TRUSTED_ACCURACY,
        "indicative_only": not benchmark or benchmark["accuracy"] < TRUSTED_ACCURACY,
        "pool": pool,
        "selected": None,
        "shift": None,
    }
    if selected_labels is not None:
        sel = _mix(selected_labels)
        out["selected"] = sel
        out["shift"] = {c: sel["shares"][c] - pool["shares"][c] for c in CATEGORIES}
    return out


def composition_lines(comp: dict[str, Any]) -> list[str]:
    """The composition as a plain-text table."""
    sel = comp["selected"]
    head = f"{'category':<22} {'pool':>12}" + (f" {'selected':>12} {'shift':>8}" if sel else "")
    lines = [f"task types by {comp['classifier']}", accuracy_sentence(comp), head]
    for c in comp["categories"]:
        row = f"{c:<22} {comp['pool']['counts'][c]:>5} {comp['pool']['shares'][c]:>6.1%}"
        if sel:
            row += f" {sel['counts'][c]:>5} {sel['shares'][c]:>6.1%} {comp['shift'][c]:>+8.1%}"
        lines.append(row)
    return lines


def analyse_records(
    pool: Sequence[dict[str, Any]],
    selected: Sequence[dict[str, Any]] | None,
    classifier,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Label the pool (and selected records missing from it); return (labels, composition)."""
    keys = [id_key(r["id"]) for r in pool]
    known = set(keys)
    extra = [r for r in selected or () if id_key(r["id"]) not in known]
    todo = list(pool) + extra
    labels = classifier.classify(todo)
    by_key = {id_key(r["id"]): lab for r, lab in zip(todo, labels, strict=True)}
    rows = [{"id": r["id"], "category": lab} for r, lab in zip(pool, labels, strict=False)]
    sel_labels = None if selected is None else [by_key[id_key(r["id"])] for r in selected]
    bench = getattr(classifier, "benchmark", None)
    comp = composition(labels[: len(pool)], sel_labels, classifier.description, bench)
    return rows, comp


def analyse_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    selected_path: str | os.PathLike | None = None,
    model: str | None = None,
    endpoint: str = "",
    endpoint_model: str = "",
    batch_size: int = AnalyseConfig.batch_size,
    timeout: float = AnalyseConfig.timeout,
    composition_output: str | os.PathLike | None = None,
    classifier: str = "vectors",
    retries: int = 2,
) -> dict[str, Any]:
    """The analyse stage: write the labels JSONL (and the composition as JSON to
    `composition_output` when given); return the composition."""
    pool = read_records(input_path)
    if not pool:
        raise PoolError(f"{input_path}: no records to analyse")
    for n, r in enumerate(pool, start=1):
        if not isinstance(r.get("instruction"), str) or not r["instruction"].strip():
            raise PoolError(
                f"{input_path}: record {n} (id {r['id']!r}): field 'instruction' missing"
            )
    selected = read_records(selected_path) if selected_path else None
    clf = make_classifier(model, endpoint, endpoint_model, batch_size, timeout, classifier, retries)
    clf.benchmark = benchmark_of(clf.name, model)
    rows, comp = analyse_records(pool, selected, clf)
    write_jsonl(output_path, rows)
    if composition_output:
        with open(composition_output, "w", encoding="utf-8") as fh:
            json.dump(comp, fh, indent=2)
            fh.write("\n")
    return comp


def composition_path(labels_path: str | os.PathLike) -> Path:
    """Where `analyse_file` writes the composition next to a labels file."""
    p = Path(labels_path)
    return p.with_name(p.stem + ".composition.json")
