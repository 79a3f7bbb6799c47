"""Human task-type labels: how labelled pools map onto the ten categories, the labelled seed set
shipped with the package, and measuring a classifier against human labels.

Three public pools carry a human (or curator) label per instruction. Only labels whose meaning
falls inside one of the paper's categories are mapped (`SOURCE_MAPS`); the rest (Dolly's
brainstorming, general_qa, information_extraction; WizardLM's mixed skills such as Complex Format
or Multilingual; the CoT sets whose questions are as much recall as reasoning) are left out,
because a disagreement there would measure the mapping, not the classifier.

`measure(truth, predicted)` gives accuracy, per-category recall, the confusion matrix and the
majority-class baseline (always answering the commonest true category) in one dict;
`measure_lines` prints it as one table.

The seed set (`seed_records`, `data/task_types_seed.jsonl`, package `adg.data`) holds labelled
instructions for all ten categories; `data/README.md` says where each came from, who labelled it,
and the licences.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

from adg import package_data

# source name -> {label in that source -> category}; a label missing here is not used.
SOURCE_MAPS: dict[str, dict[str, str]] = {
    # databricks-dolly-15k `category` (human-written instructions, labelled by their authors)
    "dolly": {
        "open_qa": "Knowledge",
        "closed_qa": "Knowledge",
        "summarization": "Summarization",
        "creative_writing": "Writing",
        "classification": "Discrete_Decision",
    },
    # WizardLM test set `skill` (labelled by the WizardLM authors)
    "wizardlm": {
        "Math": "Math",
        "Code Generation": "Coding",
        "Code Debug": "Coding",
        "Writting": "Writing",  # sic, the source's spelling
        "Academic Writing": "Writing",
        "Reasoning": "Reasoning",
        "Biology": "Knowledge",
        "Chemistry": "Knowledge",
        "Physics": "Knowledge",
        "History": "Knowledge",
        # domain-knowledge questions of other fields: what a fact, term or work is, and why
        "Law": "Knowledge",
        "Medicine": "Knowledge",
        "Literature": "Knowledge",
        "Entertainment": "Knowledge",
        "Art": "Knowledge",
        "Music": "Knowledge",
        "Economy": "Knowledge",
        "Sport": "Knowledge",
        "Philosophy": "Knowledge",
    },
    # FLAN CoT via Alpaca-CoT `source` (the dataset a record comes from)
    "cot": {
        "aqua_train": "Math",  # AQuA-RAT: algebra word problems
        "strategyqa_train": "Reasoning",  # StrategyQA: multi-hop implicit reasoning
        "sensemaking_train": "Reasoning",  # Sen-Making: which statement defies common sense
    },
}
# Which field of a record holds the source's label.
LABEL_FIELDS = {"dolly": "category", "wizardlm": "skill", "cot": "source"}
SEED_FILE = "task_types_seed.jsonl"
# adg is a namespace package (no __init__), so the file is found next to this module.
SEED_PATH = package_data.path(SEED_FILE)


def mapped_category(source: str, record: dict[str, Any]) -> str | None:
    """The category a source's label maps to, or None when the label is not mapped."""
    return SOURCE_MAPS[source].get(str(record.get(LABEL_FIELDS[source], "")))


def seed_records() -> list[dict[str, Any]]:
    """The labelled seed set: records with `instruction`, `category`, `source`, `source_id`."""
    text = SEED_PATH.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def measure(
    truth: Sequence[str], predicted: Sequence[str], categories: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, per-category recall (None where a category has no true record), the confusion
    matrix (rows: true category, columns: predicted, in `categories` order) and the majority-class
    baseline of the same records."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions")
    index = {c: i for i, c in enumerate(categories)}
    confusion = [[0] * len(categories) for _ in categories]
    for t, p in zip(truth, predicted, strict=True):
        confusion[index[t]][index[p]] += 1
    n = len(truth)
    right = sum(confusion[i][i] for i in range(len(categories)))
    support = Counter(truth)
    majority, majority_n = support.most_common(1)[0] if n else ("", 0)
    recall = {
        c: (confusion[index[c]][index[c]] / support[c] if support[c] else None) for c in categories
    }
    return {
        "n": n,
        "accuracy": right / n if n else 0.0,
        "majority_class": majority,
        "majority_accuracy": majority_n / n if n else 0.0,
        "recall": recall,
        "support": {c: support[c] for c in categories},
        "categories": list(categories),
        "confusion": confusion,
    }


def measure_lines(result: dict[str, Any], title: str = "") -> list[str]:
    """One plain-text table: the headline numbers, then per true category its support, recall and
    the row of the confusion matrix (columns abbreviated to the categories' first four letters)."""
    cats = result["categories"]
    lines = [
        f"{title}: accuracy {result['accuracy']:.1%} on {result['n']} records; majority class "
        f"({result['majority_class']}) {result['majority_accuracy']:.1%}; "
        f"margin {result['accuracy'] - result['majority_accuracy']:+.1%}".lstrip(": ")
    ]
    corner = "true \\ predicted"
    columns = " ".join(f"{c[:4]:>4}" for c in cats)
    lines.append(f"{corner:<22}{'n':>5}{'recall':>8}  {columns}")
    for i, c in enumerate(cats):
        if not result["support"][c]:
            continue
        rec = result["recall"][c]
        row = " ".join(f"{v:>4}" for v in result["confusion"][i])
        lines.append(f"{c:<22}{result['support'][c]:>5}{rec:>8.1%}  {row}")
    return lines


# Below this accuracy on human labels, the report calls the task mix indicative only.
TRUSTED_ACCURACY = 0.8


def accuracy_sentence(comp: dict[str, Any]) -> str:
    """What the reader should know about the classifier's accuracy, in one sentence."""
    bench = comp.get("classifier_benchmark")
    if bench and bench.get("protocol") == "leave-one-source-out":
        sources = ", ".join(f"{s} {v['accuracy']:.0%}" for s, v in bench["by_source"].items())
        text = (
            f"Measured accuracy on {bench['n']} human-labelled instructions from sources it was "
            f"not fitted on (leave-one-source-out, as a new pool meets it): "
            f"{bench['accuracy']:.0%} ({sources}; always answering the commonest category: "
            f"{bench['majority_accuracy']:.0%})."
        )
    elif bench:
        text = (
            f"Measured accuracy on {bench['n']} human-labelled instructions: "
            f"{bench['accuracy']:.0%} (always answering the commonest category: "
            f"{bench['majority_accuracy']:.0%})."
        )
    else:
        text = "This classifier's accuracy on human-labelled instructions was not measured."
    if comp.get("indicative_only", True):
        text += (
            " The mix is indicative only (below "
            f"{comp.get('trusted_accuracy', TRUSTED_ACCURACY):.0%} measured accuracy)."
        )
    return text
