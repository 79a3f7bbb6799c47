"""Bad inputs to generate and score, the stages that load a model: each ends in one line naming the
file, line and field with exit status 2 before the model loads, or is handled; no traceback, no
half-written output, nothing already done lost. The same contract for select and embed is in
test_select.py and test_embed.py."""

from __future__ import annotations

import json

import pytest
from helpers import generated, one_line_error

from adg.cli import main

# --- generate and score ---------------------------------------------------------------------


def run_stage(tmp_path, capsys, stage: str, records, *extra: str):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    code = main([stage, "--input", str(src), "--output", str(out), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err, out


def test_generate_refuses_batch_size_zero(tmp_path, capsys):
    code, err, out = run_stage(tmp_path, capsys, "generate", [generated(1)], "--batch-size", "0")
    assert code == 2
    one_line_error(err, "--batch-size must be at least 1, got 0")
    assert not out.exists()


@pytest.mark.parametrize("stage", ["generate", "score"])
def test_a_failed_run_leaves_no_empty_output(tmp_path, capsys, stage):
    missing = str(tmp_path / "no-such-model")
    code, err, out = run_stage(tmp_path, capsys, stage, [generated(1)], "--model", missing)
    assert code == 2 and "no-such-model" in err
    assert not out.exists()


NO_INSTRUCTION = {"id": 2, "generated_answers": ["a", "b"]}


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([generated(1), NO_INSTRUCTION], "in.jsonl:2: field 'instruction': missing"),
        ([generated(1), generated(2, instruction=5)], "in.jsonl:2: field 'instruction'"),
        ([generated(1), generated(2), generated(1)], "in.jsonl:3: field 'id': duplicate id 1"),
        ([generated(1, generated_answers="ab")], "in.jsonl:1 (id 1): field 'generated_answers'"),
        ([generated(1, input=3)], "in.jsonl:1: field 'input'"),
    ],
)
def test_score_checks_every_record_before_any_work(tmp_path, capsys, records, message):
    # No model is needed: the check runs before the model would load.
    code, err, out = run_stage(tmp_path, capsys, "score", records)
    assert code == 2
    one_line_error(err, message)
    assert not out.exists()


def test_score_random_method_checks_records_too(tmp_path, capsys):
    records = [generated(1), generated(1)]
    code, err, out = run_stage(tmp_path, capsys, "score", records, "--method", "random")
    assert code == 2 and "duplicate id 1" in err and not out.exists()


def test_generate_checks_records_before_loading_the_model(tmp_path, capsys):
    code, err, out = run_stage(tmp_path, capsys, "generate", [{"id": 1, "output": "x"}])
    assert code == 2
    one_line_error(err, "in.jsonl:1: field 'instruction': missing")
    assert not out.exists()


def test_write_errors_name_the_output(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(generated(1)) + "\n" + json.dumps(generated(2)) + "\n")
    out = tmp_path / "missing" / "scored.jsonl"
    code = main(["score", "--input", str(src), "--output", str(out), "--method", "random"])
    err = capsys.readouterr().err
    assert code == 2
    one_line_error(err, f"{out}: cannot write")
    assert ".tmp" not in err


def test_score_random_still_scores_a_good_file(tmp_path, capsys):
    code, _err, out = run_stage(
        tmp_path, capsys, "score", [generated(1), generated(2)], "--method", "random"
    )
    assert code == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [1, 2]
