"""Human task-type labels: the source mappings, the shipped seed set and evaluation sample
(disjoint, all ten categories), the measurement (accuracy, recall, confusion, majority baseline),
and the vector classifier: mechanics on a tiny model, accuracy on the embedded model against
human labels."""

from __future__ import annotations

import json

import pytest
from helpers import REPO, embedded_model_or_skip

from adg.method import task_classifiers as analysis
from adg.method import task_types

EVAL_SAMPLE = REPO / "data" / "task_types_eval.jsonl"


def _eval_records() -> list[dict]:
    return [json.loads(line) for line in EVAL_SAMPLE.read_text(encoding="utf-8").splitlines()]


def test_mappings_name_only_known_categories():
    for source, mapping in task_types.SOURCE_MAPS.items():
        assert set(mapping.values()) <= set(analysis.CATEGORIES), source
        assert source in task_types.LABEL_FIELDS
    assert task_types.mapped_category("dolly", {"category": "closed_qa"}) == "Knowledge"
    assert task_types.mapped_category("dolly", {"category": "brainstorming"}) is None
    assert task_types.mapped_category("wizardlm", {"skill": "Multilingual"}) is None


def test_seed_set_covers_all_categories_and_is_disjoint_from_evaluation():
    seed = task_types.seed_records()
    assert {r["category"] for r in seed} == set(analysis.CATEGORIES)
    assert all(r["instruction"].strip() for r in seed)
    # every category a human-labelled source labels is labelled in a second source too, so a
    # leave-one-source-out fold still knows it
    for source in task_types.SOURCE_MAPS:
        for category in set(task_types.SOURCE_MAPS[source].values()):
            others = {r["source"] for r in seed if r["category"] == category} - {source}
            assert others, (source, category)
    for r in seed:  # a mapped label must agree with the mapping
        if r["source"] in task_types.SOURCE_MAPS:
            mapped = task_types.SOURCE_MAPS[r["source"]][r["source_label"]]
            assert mapped == r["category"]
    evaluation = _eval_records()
    seen = {(r["source"], r["source_id"]) for r in seed}
    assert not seen & {(r["source"], r["source_id"]) for r in evaluation}
    assert not {r["instruction"] for r in seed} & {r["instruction"] for r in evaluation}
    for r in evaluation:
        assert task_types.SOURCE_MAPS[r["source"]][r["source_label"]] == r["category"]


def test_measure_counts_accuracy_recall_confusion_and_majority():
    cats = ["A", "B", "C"]
    truth = ["A", "A", "A", "B", "B", "C"]
    pred = ["A", "A", "B", "B", "A", "A"]
    m = task_types.measure(truth, pred, cats)
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(3 / 6)
    assert m["majority_class"] == "A" and m["majority_accuracy"] == pytest.approx(3 / 6)
    assert m["recall"] == {"A": pytest.approx(2 / 3), "B": 0.5, "C": 0.0}
    assert m["confusion"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert task_types.measure(["A"], ["B"], [*cats, "D"])["recall"]["D"] is None
    lines = task_types.measure_lines(m, "x")
    assert lines[0].startswith("x: accuracy 50.0% on 6 records; majority class (A) 50.0%")
    assert lines[2].split()[:3] == ["A", "3", "66.7%"]
    with pytest.raises(ValueError, match="2 true labels but 1"):
        task_types.measure(["A", "B"], ["A"], cats)


def test_vector_classifier_mechanics_on_tiny_model(tiny):
    tokenizer, model = tiny
    clf = analysis.VectorClassifier(tokenizer=tokenizer, lm=model)
    records = _eval_records()[:12]
    labels = clf.classify(records)
    assert len(labels) == 12 and set(labels) <= set(analysis.CATEGORIES)
    assert labels == clf.classify(records)  # deterministic
    # fitted on the seed set: its own records mostly come back with their labels
    seed = task_types.seed_records()
    own = clf.classify(seed)
    assert sum(a == r["category"] for a, r in zip(own, seed, strict=True)) > len(seed) / 2


def test_benchmark_table_names_the_default_classifier():
    """The shipped measurement, leave-one-source-out (bench/task_types.py --loso), is what the
    report states for the default classifier: the figure and each source's, from the data file."""
    from adg.method.task_types import accuracy_sentence
    from adg.stages.analyse import composition

    bench = analysis.benchmark_of("vectors", None)
    assert bench is not None and bench["n"] >= 100
    assert bench["protocol"] == "leave-one-source-out"
    assert set(bench["by_source"]) == {"dolly", "cot", "wizardlm"}
    assert bench["accuracy"] > bench["majority_accuracy"]
    sentence = accuracy_sentence(composition(["Math", "Coding"], None, "vectors", bench))
    assert f"{bench['accuracy']:.0%}" in sentence and "leave-one-source-out" in sentence
    for source, result in bench["by_source"].items():
        assert f"{source} {result['accuracy']:.0%}" in sentence
    assert "indicative only" in sentence  # below 80 %
    assert analysis.benchmark_of("vectors", "/somewhere/other-model") is None
    assert analysis.benchmark_of("endpoint", None) is None


@pytest.mark.integration
def test_embedded_vector_classifier_beats_majority_on_human_labels(capsys):
    path = embedded_model_or_skip()
    clf = analysis.VectorClassifier(str(path))
    records = _eval_records()
    labels = clf.classify(records)
    m = task_types.measure([r["category"] for r in records], labels, analysis.CATEGORIES)
    with capsys.disabled():
        print("\n" + "\n".join(task_types.measure_lines(m, "vectors on data/task_types_eval")))
    assert m["accuracy"] >= m["majority_accuracy"] + 0.15


def test_seed_vectors_are_cached_per_backbone(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ADG_HOME", str(tmp_path))
    first = analysis.VectorClassifier(str(tiny_model_dir))
    cached = list((tmp_path / "task_types").glob(f"{tiny_model_dir.name}-*.npy"))
    assert len(cached) == 1
    cached[0].write_bytes(b"")  # a broken cache entry is recomputed, not trusted
    again = analysis.VectorClassifier(str(tiny_model_dir))
    assert (again.seed_x == first.seed_x).all()
    third = analysis.VectorClassifier(str(tiny_model_dir))  # from the rewritten cache
    assert (third.seed_x == first.seed_x).all()
    records = _eval_records()[:5]
    assert third.classify(records) == first.classify(records)
