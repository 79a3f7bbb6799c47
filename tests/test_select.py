"""The select stage (adg.stages.select, `adg select`): a score collapse warns (and fails with
--fail-on-collapse), bad clusters and bad record fields are one line naming the file and the
record, huge bin ids allocate nothing, and infinite or NaN scores leave a strict-JSON report. The
bin-wise selection math is in test_selection.py, the report's pages in test_report.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import one_line_error, write_jsonl

from adg.cli import main


def test_select_warns_and_fails_on_collapse(tmp_path, capsys):
    recs = [{"id": i, "instruction": "x", "score": 0.25} for i in range(8)]
    src = write_jsonl(tmp_path / "scored.jsonl", recs)
    np.save(tmp_path / "c.npy", np.zeros(8, dtype=np.int32))
    args = ["select", "--input", str(src), "--clusters", str(tmp_path / "c.npy"), "--budget", "2"]
    assert main([*args, "--output-dir", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "score collapse" in captured.err and "zero spread" in captured.out
    report = json.loads((tmp_path / "a" / "selection_report.json").read_text())
    assert report["score_collapse"]
    assert main([*args, "--output-dir", str(tmp_path / "b"), "--fail-on-collapse"]) == 2
    assert "score collapse" in capsys.readouterr().err


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
