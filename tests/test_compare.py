"""Selectors side by side: the comparison table and the Jaccard overlap on hand-made files, the
multi-selector structure of the compiled pipeline, and `adg run --selectors adg,random` under
kfp.local on the tiny model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import sample_records, write_jsonl, yaml_documents

from adg.io.records import PoolError
from adg.stages.compare import (
    SelectorRun,
    baseline_case,
    compare_runs,
    comparison_html,
    comparison_markdown,
    jaccard,
    plan_selectors,
    with_task_mix,
)


def _top(path: Path, ids: list, scores: list[float], di: bool = True) -> Path:
    records = []
    for i, s in zip(ids, scores, strict=True):
        r = {"id": i, "instruction": f"q{i}", "output": "a", "score": s}
        if di:
            r.update(dispersion=2 * s, anisotropy=0.5)
        records.append(r)
    path.write_text(json.dumps(records))
    return path


def _results(path: Path, gsm8k: float, mmlu: float, mbpp: float) -> Path:
    results = {
        "results": {
            "gsm8k": {"exact_match,strict-match": gsm8k},
            "mmlu": {"acc,none": mmlu},
            "mbpp": {"pass_at_1,none": mbpp},
        },
        "adg": {"tasks": ["gsm8k", "mmlu", "mbpp"]},
    }
    path.write_text(json.dumps(results))
    return path


def test_jaccard():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5
    assert jaccard(set(), set()) == 1.0
    assert jaccard({1}, {2}) == 0.0


def test_plan_selectors():
    assert plan_selectors(["adg"]) == ([], False)
    assert plan_selectors(["adg", "random", "ifd", "random"]) == (["random", "ifd"], True)
    assert plan_selectors(["random"]) == (["random"], True)
    with pytest.raises(ValueError, match=r"unknown method.*'best'"):
        plan_selectors(["adg", "best"])


def test_selection_only_table_and_overlap(tmp_path):
    adg = _top(tmp_path / "adg.json", [1, 2, 3, 4], [0.9, 0.8, 0.7, 0.6])
    rnd = _top(tmp_path / "rnd.json", [3, 4, 5, 6], [0.5, 0.5, 0.5, 0.5], di=False)
    comp = compare_runs([SelectorRun("adg", adg), SelectorRun("random", rnd)])
    assert comp["selectors"] == ["adg", "random"] and comp["evaluated"] is False
    adg_row, rnd_row = comp["rows"]
    assert adg_row["selected"] == 4 and adg_row["mean_score"] == pytest.approx(0.75)
    assert adg_row["mean_dispersion"] == pytest.approx(1.5)
    assert rnd_row["mean_dispersion"] is None and rnd_row["mean_anisotropy"] is None
    (pair,) = comp["overlap"]
    assert pair == {"a": "adg", "b": "random", "jaccard": pytest.approx(2 / 6), "shared": 2}
    md = comparison_markdown(comp)
    assert "| Selector | Selected | Mean score | Mean D | Mean I |" in md
    assert "| adg | 4 | 0.7500 | 1.5000 | 0.5000 |" in md
    assert "| random | 4 | 0.5000 | – | – |" in md
    assert "| adg | 1.000 | 0.333 |" in md
    assert "Task-type mix" not in md
    page = comparison_html(comp)
    assert page.startswith("<!DOCTYPE html>") and "Jaccard" in page


def test_baselines_get_adgs_dispersion_and_anisotropy_by_id(tmp_path):
    adg = _top(tmp_path / "adg.json", [1, 2], [0.9, 0.8])
    rnd = _top(tmp_path / "rnd.json", ["3", 4, 9], [0.5, 0.5, 0.5], di=False)
    # ADG's merged scores: every record of the pool with its D and I (and its answers). The
    # string id "3" is not the integer 3: ids are matched by type and value.
    scored = [
        {
            "id": i,
            "instruction": "q",
            "output": "a",
            "dispersion": d,
            "anisotropy": a,
            "generated_answers": ["x", "y"],
        }
        for i, d, a in [(1, 1.8, 0.5), (2, 1.6, 0.5), ("3", 1.0, 0.2), (4, 3.0, 0.4)]
    ]
    scored_path = write_jsonl(tmp_path / "scored.jsonl", scored)
    comp = compare_runs([SelectorRun("adg", adg), SelectorRun("random", rnd)], scored_path)
    adg_row, rnd_row = comp["rows"]
    # ADG's own records keep their fields; the baseline's are looked up (id 9 is unknown).
    assert adg_row["mean_dispersion"] == pytest.approx(1.7)
    assert rnd_row["mean_dispersion"] == pytest.approx(2.0)
    assert rnd_row["mean_anisotropy"] == pytest.approx(0.3)
    with pytest.raises(PoolError, match="ADG's scored records not found"):
        compare_runs([SelectorRun("adg", adg)], tmp_path / "missing.jsonl")


def test_baseline_case():
    """Which baselines need a model (scored on the GPU placement, in the given order) and which
    mix of branches the pipeline runs: random scores in a CPU task of its own."""
    assert baseline_case(["ifd", "random", "superfiltering"]) == (["ifd", "superfiltering"], "both")
    assert baseline_case(["superfiltering"]) == (["superfiltering"], "models")
    assert baseline_case(["random"]) == ([], "random")
    assert baseline_case([]) == ([], "none")


def test_evaluated_table_in_the_papers_shape(tmp_path):
    adg = _top(tmp_path / "adg.json", [1, 2], [0.9, 0.8])
    rnd = _top(tmp_path / "rnd.json", [2, 3], [0.1, 0.2])
    runs = [
        SelectorRun("adg", adg, _results(tmp_path / "a.json", 0.30, 0.40, 0.20)),
        SelectorRun("random", rnd, _results(tmp_path / "r.json", 0.20, 0.40, 0.10)),
    ]
    comp = compare_runs(runs)
    assert comp["evaluated"] is True
    adg_row = comp["rows"][0]
    assert adg_row["categories"] == {
        "Reasoning": pytest.approx(30.0),
        "Knowledge": pytest.approx(40.0),
        "Coding": pytest.approx(20.0),
    }
    assert adg_row["average"] == pytest.approx(30.0)
    md = comparison_markdown(comp)
    assert "| Selector | Selected | Reasoning | Knowledge | Coding | Average |" in md
    assert "| adg | 2 | 30.00 | 40.00 | 20.00 | 30.00 |" in md
    assert "| random | 2 | 20.00 | 40.00 | 10.00 | 23.33 |" in md


def test_task_mix_from_labels(tmp_path):
    adg = _top(tmp_path / "adg.json", [1, 2], [0.9, 0.8])
    rnd = _top(tmp_path / "rnd.json", [3, 4], [0.1, 0.2])
    comp = compare_runs([SelectorRun("adg", adg), SelectorRun("random", rnd)])
    labels = tmp_path / "labels.jsonl"
    cats = {1: "Math", 2: "Math", 3: "Coding", 4: "Writing"}
    write_jsonl(labels, [{"id": i, "category": c} for i, c in cats.items()])
    mixed = with_task_mix(comp, labels)
    shares = mixed["task_mix"]["shares"]
    assert shares["pool"]["Math"] == 0.5 and shares["adg"]["Math"] == 1.0
    assert shares["random"]["Coding"] == 0.5 and shares["random"]["Math"] == 0.0
    md = comparison_markdown(mixed)
    assert "### Task-type mix" in md and "| Math | 50.0% | 100.0% | 0.0% |" in md
    write_jsonl(labels, [{"id": 1, "category": "Math"}])
    with pytest.raises(PoolError, match="no label for selected id 2"):
        with_task_mix(comp, labels)


def test_missing_subset_is_one_clear_error(tmp_path):
    with pytest.raises(PoolError, match="selected subset not found"):
        compare_runs([SelectorRun("adg", tmp_path / "nope.json")])


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> list[dict]:
    from adg_kfp.pipelines.local import compile_pipeline

    path = tmp_path_factory.mktemp("compiled") / "p.yaml"
    compile_pipeline(path)
    return list(yaml_documents(path.read_text()))


def test_compiled_pipeline_fans_out_over_selectors(compiled):
    spec, platform = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["selectors"]["defaultValue"] == ["adg"]
    comps = spec["components"]
    dags = {name: c["dag"]["tasks"] for name, c in comps.items() if "dag" in c}
    # The ADG path keeps its task names.
    assert any({"select", "plan-selectors"} <= set(t) for t in dags.values())
    # One branch per mix of baselines (plan_selectors' case), with and without training; a loop
    # over the baselines that need a model in each branch that has them.
    iterators = []
    for tasks in dags.values():
        for task in tasks.values():
            it = task.get("parameterIterator")
            if it and "plan-selectors" in json.dumps(it):
                assert "model_baselines" in json.dumps(it)
                iterators.append(task["componentRef"]["name"])
    assert len(iterators) == 4  # cases "both" and "models", trained and not
    bodies = [{re.sub(r"-\d+$", "", t) for t in dags[name]} for name in iterators]
    assert sorted(map(sorted, bodies)) == [
        ["evaluate", "score", "select", "train"],
        ["evaluate", "score", "select", "train"],
        ["score", "select"],
        ["score", "select"],
    ]
    for name in iterators:
        # A baseline scores the pool: nothing of ADG's generate, score or merge enters the loop,
        # so the baselines do not wait for ADG's GPU work.
        artifacts = set(comps[name]["inputDefinitions"]["artifacts"])
        assert "pipelinechannel--ingest-pool" in artifacts
        assert not any("merge" in a or "score" in a or "generate" in a for a in artifacts)
    conditions = {
        n: t["triggerPolicy"]["condition"]
        for tasks in dags.values()
        for n, t in tasks.items()
        if "plan-selectors-case" in json.dumps(t.get("triggerPolicy", {}))
    }
    assert sorted(c.split("==")[-1].strip() for c in conditions.values()) == sorted(
        ["'both'", "'models'", "'random'"] * 2
    )
    # Each compare gathers its branch's subsets (and, when trained, the evaluations).
    compares = [t for tasks in dags.values() for n, t in tasks.items() if n.startswith("compare")]
    compares = [t for t in compares if "componentRef" in t and "compare" in t["taskInfo"]["name"]]
    assert len(compares) == 6
    for task in compares:
        arts = task["inputs"]["artifacts"]
        assert bool("baseline_tops" in arts) or "random_top" in arts
        if "baseline_tops" in arts:
            assert arts["baseline_tops"]["taskOutputArtifact"]["producerTask"].startswith(
                "for-loop"
            )
    assert sum("adg_results" in t["inputs"]["artifacts"] for t in compares) == 3
    # random: a score task of its own, method "random", on CPU without the model cache.
    randoms = [
        (n, t)
        for tasks in dags.values()
        for n, t in tasks.items()
        if t.get("inputs", {}).get("parameters", {}).get("method", {}).get("runtimeValue")
    ]
    assert len(randoms) == 4
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for _, task in randoms:
        assert task["inputs"]["parameters"]["method"]["runtimeValue"]["constant"] == "random"
        label = comps[task["componentRef"]["name"]]["executorLabel"]
        assert "accelerator" not in spec["deploymentSpec"]["executors"][label]["container"].get(
            "resources", {}
        )
        assert "pvcMount" not in k8s.get(label, {}) and "nodeSelector" not in k8s.get(label, {})


@pytest.mark.kfp_local
def test_adg_run_compares_adg_and_random(tiny_model_dir, tmp_path, capsys):
    from adg.cli import main

    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(8))
    out = tmp_path / "run"
    args = ["run", "--input", str(pool), "--model", str(tiny_model_dir), "--output-dir", str(out)]
    args += ["--budget", "3", "--cluster-count", "2", "--num-samples", "2"]
    args += ["--max-new-tokens", "4", "--backend", "hf", "--selectors", "adg,random"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "## Selector comparison" in printed
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["selectors"] == ["adg", "random"]
    assert [r["selected"] for r in comp["rows"]] == [3, 3]
    # random scored the pool on its own; its records' D and I come from ADG's merged scores.
    assert all(r["mean_dispersion"] is not None for r in comp["rows"])
    adg_ids = [r["id"] for r in json.loads((out / "top.json").read_text())]
    assert comp["selected_ids"]["adg"] == adg_ids
    (pair,) = comp["overlap"]
    assert 0.0 <= pair["jaccard"] <= 1.0
    assert "| random | 3 |" in (out / "comparison.md").read_text()
    assert (out / "comparison.html").read_text().startswith("<!DOCTYPE html>")


def test_adg_run_rejects_an_unknown_selector(tmp_path, capsys):
    from adg.cli import main

    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(4))
    args = ["run", "--input", str(pool), "--output-dir", str(tmp_path), "--budget", "1"]
    assert main([*args, "--selectors", "adg,best"]) == 2
    assert "unknown method(s) 'best'" in capsys.readouterr().err


def test_adg_compare_cli(tmp_path, capsys):
    from adg.cli import main

    adg = _top(tmp_path / "adg.json", [1, 2], [0.9, 0.8])
    rnd = _top(tmp_path / "rnd.json", [2, 3], [0.1, 0.2])
    out = tmp_path / "cmp"
    args = ["compare", "--run", f"adg={adg}", "--run", f"random={rnd}", "--output-dir", str(out)]
    assert main(args) == 0
    assert "| adg | 1.000 | 0.333 |" in capsys.readouterr().out
    labels = write_jsonl(
        tmp_path / "labels.jsonl", [{"id": i, "category": "Math"} for i in (1, 2, 3)]
    )
    again = ["compare", "--comparison", str(out / "comparison.json"), "--labels", str(labels)]
    assert main([*again, "--output-dir", str(out)]) == 0
    assert "### Task-type mix" in (out / "comparison.md").read_text()
    assert main(["compare", "--run", "adg", "--output-dir", str(out)]) == 2
    assert "expected NAME=TOP.json" in capsys.readouterr().err
