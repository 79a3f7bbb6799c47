"""Evaluation: lm-eval run for real on two tiny offline tasks, flat metrics, the Markdown table.

tests/lm_eval_tasks/ holds a multiple-choice task and a generate-until task with their JSONL data;
they run against the tiny in-test model (and, marked `integration`, the embedded SmolLM2). The
published-benchmark summary is checked on a hand-made results dict, since those datasets live on
the hub.
"""

import json
import os
from pathlib import Path

import pytest
from helpers import REPO

from adg.cli import main
from adg.stages.evaluate import (
    BENCHMARKS,
    DEFAULT_TASKS,
    EvalConfig,
    code_execution,
    dump_results,
    evaluate,
    flatten,
    load_results,
    markdown_table,
    parse_fewshot,
    parse_limit,
    parse_tasks,
    plan_runs,
    summarise,
)

TASKS_DIR = REPO / "tests" / "lm_eval_tasks"
TINY_TASKS = ["adg_tiny_mc", "adg_tiny_gen"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny models run far faster on one thread than on a few contended ones."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- parameters


def test_defaults_are_the_published_benchmarks():
    assert parse_tasks("") == list(DEFAULT_TASKS)
    assert parse_tasks(" gsm8k , mmlu,") == ["gsm8k", "mmlu"]
    shots = {task: b.shots for task, b in BENCHMARKS.items()}
    assert shots == {
        "bbh": 3,
        "gsm8k": 8,
        "mmlu": 4,
        "truthfulqa_mc2": 0,
        "mbpp": 1,
        "humaneval": 0,
    }
    categories = {b.category for b in BENCHMARKS.values()}
    assert categories == {"Reasoning", "Knowledge", "Coding"}


def test_fewshot_and_limit_parsing():
    assert parse_fewshot("") is None
    assert parse_fewshot("5") == 5
    assert parse_fewshot("gsm8k=2, bbh=0") == {"gsm8k": 2, "bbh": 0}
    with pytest.raises(ValueError, match="--num-fewshot"):
        parse_fewshot("gsm8k=two")
    assert parse_limit(0) is None and parse_limit(None) is None
    assert parse_limit(5.0) == 5 and isinstance(parse_limit(5.0), int)
    assert parse_limit(0.25) == 0.25
    with pytest.raises(ValueError, match="--limit"):
        parse_limit(-1)


def test_runs_group_by_shots_and_isolate_code_tasks():
    runs = plan_runs(list(DEFAULT_TASKS), None)
    assert runs == [
        (3, False, ["bbh"]),
        (8, False, ["gsm8k"]),
        (4, False, ["mmlu"]),
        (0, False, ["truthfulqa_mc2"]),
        (1, True, ["mbpp"]),
        (0, True, ["humaneval"]),
    ]
    assert plan_runs(["mmlu", "my_task", "humaneval"], 2) == [
        (2, False, ["mmlu", "my_task"]),
        (2, True, ["humaneval"]),
    ]
    # A task outside the published set keeps its own default unless told otherwise.
    assert plan_runs(["my_task", "gsm8k"], {"gsm8k": 1}) == [
        (None, False, ["my_task"]),
        (1, False, ["gsm8k"]),
    ]


def test_code_execution_is_switched_on_only_inside_the_block(monkeypatch):
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    with code_execution(False):
        assert "HF_ALLOW_CODE_EVAL" not in os.environ
    with code_execution(True):
        assert os.environ["HF_ALLOW_CODE_EVAL"] == "1"
    assert "HF_ALLOW_CODE_EVAL" not in os.environ
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "0")
    with code_execution(True):
        assert os.environ["HF_ALLOW_CODE_EVAL"] == "1"
    assert os.environ["HF_ALLOW_CODE_EVAL"] == "0"


# ----------------------------------------------------------------------------- summary


def published_results(scale: float = 1.0) -> dict:
    """A results dict shaped like lm-eval's for the six benchmarks (values made up)."""
    values = {
        "bbh": {"exact_match,get-answer": 0.30, "exact_match_stderr,get-answer": 0.01},
        "bbh_cot_fewshot_navigate": {"exact_match,get-answer": 0.5, "alias": " - navigate"},
        "gsm8k": {"exact_match,strict-match": 0.20, "exact_match,flexible-extract": 0.22},
        "mmlu": {"acc,none": 0.40, "acc_stderr,none": 0.004, "alias": "mmlu"},
        "truthfulqa_mc2": {"acc,none": 0.50},
        "mbpp": {"pass_at_1,none": 0.10},
        "humaneval": {"pass@1,create_test": 0.06},
    }
    for metrics in values.values():
        for key, value in metrics.items():
            if isinstance(value, float) and "stderr" not in key:
                metrics[key] = value * scale
    return {
        "results": values,
        "group_subtasks": {"bbh": ["bbh_cot_fewshot_navigate"]},
        "adg": {"tasks": list(DEFAULT_TASKS)},
    }


def test_summary_groups_as_in_the_paper():
    s = summarise(published_results())
    assert [r["label"] for r in s["tasks"]] == [
        "BBH",
        "GSM8K",
        "MMLU",
        "TruthfulQA",
        "MBPP",
        "HumanEval",
    ]
    assert s["categories"]["Reasoning"] == pytest.approx(25.0)
    assert s["categories"]["Knowledge"] == pytest.approx(45.0)
    assert s["categories"]["Coding"] == pytest.approx(8.0)
    assert s["average"] == pytest.approx((30 + 20 + 40 + 50 + 10 + 6) / 6)


def test_flat_metrics_skip_stderr_and_labels():
    flat = flatten(published_results())
    assert flat["mmlu/acc"] == pytest.approx(0.40)
    assert flat["gsm8k/exact_match,strict-match"] == pytest.approx(0.20)
    assert flat["humaneval/pass@1,create_test"] == pytest.approx(0.06)
    assert flat["bbh_cot_fewshot_navigate/exact_match,get-answer"] == 0.5
    assert not any("stderr" in k or k.endswith("/alias") for k in flat)


def test_table_with_a_baseline_shows_deltas():
    table = markdown_table(published_results(1.1), baseline=published_results())
    lines = table.strip().splitlines()
    assert lines[0] == "| Group | Benchmark | Metric | Model | Baseline | Δ |"
    assert "| Reasoning | BBH | exact_match,get-answer | 33.00 | 30.00 | +3.00 |" in lines
    assert "| Knowledge | MMLU | acc | 44.00 | 40.00 | +4.00 |" in lines
    assert "| **Coding** |  | mean | 8.80 | 8.00 | +0.80 |" in lines
    assert lines[-1] == "| **Average** |  | mean | 28.60 | 26.00 | +2.60 |"
    alone = markdown_table(published_results())
    assert alone.splitlines()[0] == "| Group | Benchmark | Metric | Model |"
    assert "| **Average** |  | mean | 26.00 |" in alone


def test_results_files_round_trip_and_bad_ones_are_named(tmp_path):
    path = tmp_path / "r.json"
    dump_results(published_results(), path)
    assert load_results(path)["results"]["mmlu"]["acc,none"] == pytest.approx(0.4)
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": [1, 2')
    with pytest.raises(ValueError, match=r"bad.json:1: malformed JSON"):
        load_results(bad)
    bad.write_text('{"scores": {}}')
    with pytest.raises(ValueError, match="field 'results'"):
        load_results(bad)


# ----------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir):
    cfg = EvalConfig(
        model=str(tiny_model_dir),
        tasks=TINY_TASKS,
        num_fewshot=2,
        limit=4,
        include_path=[str(TASKS_DIR)],
        batch_size=4,
    )
    return evaluate(cfg)


@pytest.mark.slow
def test_lm_eval_runs_both_task_kinds_on_the_tiny_model(tiny_run):
    results = tiny_run["results"]
    assert set(TINY_TASKS) <= set(results)
    assert tiny_run["n-shot"] == {"adg_tiny_mc": 2, "adg_tiny_gen": 2}
    assert tiny_run["n-samples"]["adg_tiny_mc"]["effective"] == 4
    assert 0.0 <= results["adg_tiny_mc"]["acc,none"] <= 1.0
    assert 0.0 <= results["adg_tiny_gen"]["exact_match,first-number"] <= 1.0
    flat = flatten(tiny_run)
    assert set(flat) == {
        "adg_tiny_mc/acc",
        "adg_tiny_mc/acc_norm",
        "adg_tiny_gen/exact_match,first-number",
    }
    table = markdown_table(tiny_run)
    assert "| Other | adg_tiny_mc | acc |" in table
    assert "| Other | adg_tiny_gen | exact_match,first-number |" in table


@pytest.mark.slow
def test_cli_evaluate_writes_results_table_and_compares(tiny_model_dir, tiny_run, tmp_path, capsys):
    baseline = tmp_path / "base.json"
    dump_results(tiny_run, baseline)
    out = tmp_path / "eval" / "results.json"
    rc = main(
        ["evaluate", "--output", str(out), "--model", str(tiny_model_dir),
         "--tasks", ",".join(TINY_TASKS), "--num-fewshot", "adg_tiny_mc=2,adg_tiny_gen=2",
         "--limit", "4", "--include-path", str(TASKS_DIR), "--baseline", str(baseline),
         "--batch-size", "4"]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    # Same model, same data, greedy decoding: the scores repeat exactly, so every delta is zero.
    assert flatten(written) == flatten(tiny_run)
    table = out.with_suffix(".md").read_text()
    assert table in printed
    assert "| Model | Baseline | Δ |" in table
    rows = [line for line in table.splitlines()[2:]]
    assert rows and all(line.endswith("| +0.00 |") for line in rows)


@pytest.mark.slow
def test_cli_evaluate_rejects_unknown_tasks_and_bad_baselines(tiny_model_dir, tmp_path, capsys):
    args = ["evaluate", "--output", str(tmp_path / "r.json"), "--model", str(tiny_model_dir),
            "--include-path", str(TASKS_DIR)]  # fmt: skip
    assert main([*args, "--tasks", "adg_no_such_task"]) == 2
    err = capsys.readouterr().err
    assert "unknown lm-eval task(s): adg_no_such_task" in err and err.count("\n") == 1
    bad = tmp_path / "b.json"
    bad.write_text("[]")
    assert main([*args, "--tasks", "adg_tiny_mc", "--baseline", str(bad)]) == 2
    assert "not an lm-eval results file" in capsys.readouterr().err
    assert main([*args, "--tasks", "adg_tiny_mc", "--num-fewshot", "x=y"]) == 2
    assert main(["evaluate", "--output", "r.json", "--include-path", str(tmp_path / "no")]) == 2


@pytest.mark.kfp_local
def test_evaluate_component_through_kfp_local(tiny_model_dir, tmp_path):
    from kfp import dsl, local

    from adg_kfp.components.evaluate import evaluate as evaluate_component

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )

    @dsl.pipeline
    def only_evaluate() -> dsl.Markdown:
        model = dsl.importer(
            artifact_uri=str(tiny_model_dir), artifact_class=dsl.Model, reimport=False
        )
        return evaluate_component(
            model=model.output,
            tasks="adg_tiny_mc",
            num_fewshot="",
            limit=3.0,
            include_path=str(TASKS_DIR),
            baseline="",
            backend="hf",
            batch_size="4",
        ).outputs["table"]

    run = only_evaluate()
    table = Path(run.output.path).read_text()
    assert "| Other | adg_tiny_mc | acc |" in table


@pytest.mark.integration
def test_embedded_model_on_the_tiny_tasks(tmp_path):
    from helpers import embedded_model_or_skip

    model_dir = embedded_model_or_skip()
    cfg = EvalConfig(
        model=str(model_dir), tasks=TINY_TASKS, num_fewshot=3, include_path=[str(TASKS_DIR)]
    )
    results = evaluate(cfg)
    scores = results["results"]
    # Four-way questions a child can answer: a real instruction-tuned model beats chance (0.25).
    assert scores["adg_tiny_mc"]["acc,none"] >= 0.5
    assert 0.0 <= scores["adg_tiny_gen"]["exact_match,first-number"] <= 1.0
    assert results["n-samples"]["adg_tiny_mc"]["effective"] == 8
