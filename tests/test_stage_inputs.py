"""Bad inputs to the stages after ingest (select, score, generate): each ends in one line naming
the file, line and field with exit status 2, or is handled; no traceback, no half-written
output, nothing already done lost."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adg.cli import main


def scored(i: int, score) -> dict:
    return {"id": i, "instruction": f"Task {i}", "output": "x", "score": score}


def write_scored(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def run_select(tmp_path, capsys, records, bins, budget: int = 2):
    """`adg select` on the records and a clusters.npy written from `bins` (bytes: as they are)."""
    src = write_scored(tmp_path / "scored.jsonl", records)
    clusters = tmp_path / "clusters.npy"
    if isinstance(bins, bytes):
        clusters.write_bytes(bins)
    else:
        np.save(clusters, bins)
    out = tmp_path / "sel"
    args = ["--input", src, "--clusters", str(clusters), "--budget", str(budget)]
    code = main(["select", *args, "--output-dir", str(out)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err, out


def one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


POOL = [scored(i, i / 10) for i in range(8)]
BINS = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.int32)


@pytest.mark.parametrize(
    ("bins", "message"),
    [
        (BINS.astype(np.float64), "dtype float64, expected integer bin ids"),
        (b"", "not a readable .npy array"),
        (np.int32(3), "shape (), expected a 1-d array"),
        (BINS.reshape(2, 4), "shape (2, 4)"),
        (BINS[:5], "5 bin labels for 8 scored records"),
        (np.array([0, 0, 0, -1, 1, 1, 1, 1]), "bin id -1 at position 3"),
        (np.array([0, 1, None, 1, 1, 1, 1, 1], dtype=object), "holds Python objects"),
        (b"\x93NUMPY garbage", "not a readable .npy array"),
    ],
)
def test_select_refuses_bad_clusters_in_one_line(tmp_path, capsys, bins, message):
    code, err, out = run_select(tmp_path, capsys, POOL, bins)
    assert code == 2
    one_line_error(err, "clusters.npy", message)
    assert not (out / "top.json").exists()


def test_select_npz_instead_of_npy(tmp_path, capsys):
    np.savez(tmp_path / "c.npz", bins=BINS)
    code, err, _out = run_select(tmp_path, capsys, POOL, (tmp_path / "c.npz").read_bytes())
    assert code == 2
    one_line_error(err, "clusters.npy", "not a .npy array")


def test_a_huge_bin_id_allocates_nothing_from_it(tmp_path, capsys):
    # Bin ids of the pool size or more are renumbered in their order; the report keeps the ids.
    bins = np.array([7, 7, 7, 7, 10**9, 10**9, 10**9, 10**9], dtype=np.int64)
    code, _err, out = run_select(tmp_path, capsys, POOL, bins)
    assert code == 0
    report = json.loads((out / "selection_report.json").read_text())
    assert report["bins"] == 2 and {b["bin"] for b in report["bins_table"]} == {7, 10**9}
    (tmp_path / "ref").mkdir()
    want_code, _, want_out = run_select(tmp_path / "ref", capsys, POOL, BINS)
    assert want_code == 0  # the same partition with ids 0 and 1 selects the same records
    assert (out / "top.json").read_text() == (want_out / "top.json").read_text()


def _strict_load(text: str):
    def refuse(token):
        raise ValueError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_infinite_scores_warn_and_the_report_is_strict_json(tmp_path, capsys):
    records = [scored(i, i / 10) for i in range(6)]
    records += [scored(6, float("inf")), scored(7, float("-inf"))]
    code, err, out = run_select(tmp_path, capsys, records, BINS)
    assert code == 0
    assert "score collapse" in err and "2 of 8 scores are infinite" in err
    report = _strict_load((out / "selection_report.json").read_text())
    assert "2 of 8 scores are infinite" in report["score_collapse"]
    assert report["pool"]["score"] == {"min": 0.0, "mean": 0.25, "max": 0.5}
    assert json.loads((out / "top.json").read_text())[0]["id"] == 6  # +Infinity ranks first


def test_nan_scores_leave_no_nan_in_the_report(tmp_path, capsys):
    records = [scored(i, float("nan")) for i in range(8)]
    code, _err, out = run_select(tmp_path, capsys, records, BINS)
    assert code == 0
    report = _strict_load((out / "selection_report.json").read_text())
    assert report["pool"]["score"] == {"min": None, "mean": None, "max": None}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("score", True, "field 'score': expected a number, got true"),
        ("score", "0.5", "field 'score': expected a number, got \"0.5\""),
        ("score", None, "field 'score' missing"),
        ("dispersion", "high", "field 'dispersion': expected a number"),
        ("input", 7, "field 'input': expected a string, got 7"),
        ("input", ["a"], "field 'input': expected a string"),
    ],
)
def test_select_bad_record_fields_in_one_line(tmp_path, capsys, field, value, message):
    records = [dict(r) for r in POOL]
    records[3][field] = value
    code, err, out = run_select(tmp_path, capsys, records, BINS)
    assert code == 2
    one_line_error(err, "scored.jsonl:4 (id 3)", message)
    assert not out.exists() or not any(out.iterdir())


# --- generate and score ---------------------------------------------------------------------


def generated(i: int, **fields) -> dict:
    return {"id": i, "instruction": f"Task {i}", "generated_answers": ["a b", "c d"], **fields}


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


def test_embed_checks_records_and_output_before_loading_the_model(tmp_path, capsys):
    src = tmp_path / "pool.jsonl"
    src.write_text(json.dumps(generated(1)) + "\n" + json.dumps({"id": 2}) + "\n")
    out = tmp_path / "embeddings.npy"
    assert main(["embed", "--input", str(src), "--output", str(out)]) == 2
    one_line_error(capsys.readouterr().err, "pool.jsonl:2: field 'instruction': missing")
    src.write_text(json.dumps(generated(1)) + "\n")
    out = tmp_path / "missing" / "embeddings.npy"
    assert main(["embed", "--input", str(src), "--output", str(out)]) == 2
    one_line_error(capsys.readouterr().err, f"{out}: cannot write (no such folder")
