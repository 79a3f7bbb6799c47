"""Pools read with reject counting (adg.io.reading, on the scanner of adg.io.jsonscan): line
numbers in a JSON array, gzip and the original ADG format, a truncated array, a partial JSONL tail
(cut by adg.io.jsonl), and a zstd pool whole and cut in half."""

from __future__ import annotations

import gzip
import json
import random

import pyarrow as pa
from helpers import REAL, as_messages

from adg.io import jsonl, reading


def test_json_array_keeps_line_numbers(tmp_path):
    src = tmp_path / "pool.json"
    src.write_text(
        '[\n  {"instruction": "a", "output": "x"},\n  {"instruction": ""},\n'
        '  {"instruction": "c"}\n]\n'
    )
    result = reading.read_pool(src)
    assert [r["id"] for r in result.records] == [0, 2]
    assert result.rejects[0].line == 3


def test_gzip_and_original_adg_format(tmp_path):
    src = tmp_path / "pool.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"instruction": "a", "generated_answers": ["x", "y"]}) + "\n")
    assert reading.read_records(src)[0] == {
        "id": 0,
        "instruction": "a",
        "generated_answers": ["x", "y"],
    }


def test_truncated_array_keeps_what_came_before(tmp_path):
    src = tmp_path / "pool.json"
    src.write_text('[{"instruction": "a"},\n {"instruction": ')
    result = reading.read_pool(src)
    assert [r["instruction"] for r in result.records] == ["a"]
    assert [(r.line, r.raw) for r in result.rejects] == [(2, '{"instruction":')]
    assert "malformed JSON: Expecting value (line 2, column 18)" in result.rejects[0].reason


def test_partial_jsonl_tail_is_cut(tmp_path):
    f = tmp_path / "g.jsonl"
    f.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "gen')
    assert [r["id"] for r in reading.iter_jsonl_tolerant(f)] == [1, 2]
    jsonl.truncate_partial_line(f)
    assert f.read_text() == '{"id": 1}\n{"id": 2}\n'


def test_zstd_jsonl_and_a_truncated_one(tmp_path):
    # Words of the real records in a seeded random order: text zstd cannot fold into a few
    # bytes, so a file cut in half still holds whole blocks (pyarrow decodes 64 KiB at a time).
    words = " ".join(r["output"] for r in REAL).split()
    rng = random.Random(0)
    rows = [
        {"id": n, **as_messages({"instruction": " ".join(rng.sample(words, 40)), "output": x})}
        for n, x in enumerate(" ".join(rng.sample(words, 80)) for _ in range(1500))
    ]
    src = tmp_path / "chat.jsonl.zst"
    with pa.output_stream(str(src), compression="zstd") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows).encode())
    assert len(reading.read_pool(src).records) == len(rows)
    whole = src.read_bytes()
    cut = tmp_path / "cut.jsonl.zst"
    cut.write_bytes(whole[: len(whole) // 2])
    result = reading.read_pool(cut)
    # The lines before the damage are kept; the damage is one reject.
    assert [r["id"] for r in result.records] == list(range(len(result.records)))
    assert 0 < len(result.records) < len(rows) and result.read == len(result.records) + 1
    assert "corrupt compressed data after line" in result.rejects[-1].reason
