"""Ingest: validation, reject accounting with file/line/field, id assignment, formats."""

import gzip
import json

import pytest

from adg import records
from adg.cli import main

BAD_POOL = "\n".join(
    [
        '{"id": 1, "instruction": "Say hi", "output": "hi", "extra": {"keep": [1, 2]}}',
        '{"id": 2, "instruction": "broken" ',
        "[1, 2, 3]",
        '{"id": 3, "output": "no instruction"}',
        '{"id": 4, "instruction": "   "}',
        '{"id": 5, "instruction": "ok", "input": 7}',
        '{"id": 1, "instruction": "duplicate id"}',
        '{"instruction": "no id here"}',
        "",
        '{"id": "x-9", "instruction": "string id", "input": "ctx"}',
    ]
)


def test_ingest_rejects_every_bad_record(tmp_path):
    src = tmp_path / "pool.jsonl"
    src.write_text(BAD_POOL)
    out, rej = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    summary = records.ingest(src, out, rej)
    assert (summary.accepted, summary.rejected, summary.ids_assigned) == (3, 6, 1)
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in kept] == [1, 7, "x-9"]  # the id-less record gets its position 7
    assert kept[0]["extra"] == {"keep": [1, 2]}  # unknown fields carried through untouched
    rejects = [json.loads(line) for line in rej.read_text().splitlines()]
    by_line = {r["line"]: r["reason"] for r in rejects}
    assert set(by_line) == {2, 3, 4, 5, 6, 7}
    assert "malformed JSON" in by_line[2]
    assert "not a JSON object" in by_line[3]
    assert "field 'instruction': missing" in by_line[4]
    assert "field 'instruction'" in by_line[5] and "non-empty" in by_line[5]
    assert "field 'input'" in by_line[6]
    assert "duplicate id 1" in by_line[7]
    assert all(r["file"] == str(src) for r in rejects)


def test_json_array_keeps_line_numbers(tmp_path):
    src = tmp_path / "pool.json"
    src.write_text(
        '[\n  {"instruction": "a", "output": "x"},\n  {"instruction": ""},\n'
        '  {"instruction": "c"}\n]\n'
    )
    result = records.read_pool(src)
    assert [r["id"] for r in result.records] == [0, 2]
    assert result.rejects[0].line == 3


def test_gzip_and_original_adg_format(tmp_path):
    src = tmp_path / "pool.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"instruction": "a", "generated_answers": ["x", "y"]}) + "\n")
    assert records.read_records(src)[0] == {
        "id": 0,
        "instruction": "a",
        "generated_answers": ["x", "y"],
    }


def test_truncated_array_is_one_clear_error(tmp_path):
    src = tmp_path / "pool.json"
    src.write_text('[{"instruction": "a"},\n {"instruction": ')
    with pytest.raises(records.PoolError, match=r"pool.json:2: malformed JSON array"):
        records.read_pool(src)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("", "the pool is empty"), ("[]", "no valid records")],
)
def test_cli_clear_errors(tmp_path, capsys, content, message):
    src = tmp_path / "pool.jsonl"
    if content is not None:
        src.write_text(content)
    code = main(["ingest", str(src), "--output", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_summary_line(tmp_path, capsys):
    src = tmp_path / "pool.jsonl"
    src.write_text(BAD_POOL)
    rej = tmp_path / "r.jsonl"
    assert (
        main(["ingest", str(src), "--output", str(tmp_path / "o.jsonl"), "--rejects", str(rej)])
        == 0
    )
    out = capsys.readouterr().out
    assert "3 accepted, 6 rejected, 1 ids assigned" in out


def test_partial_jsonl_tail_is_cut(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "gen')
    assert [r["id"] for r in records.iter_jsonl_tolerant(f)] == [1, 2]
    records.truncate_partial_line(f)
    assert f.read_text() == '{"id": 1}\n{"id": 2}\n'
