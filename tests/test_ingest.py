"""Ingest: validation, reject accounting with file/line/field, id assignment, formats."""

import gzip
import json
import random
import re

import pytest

from adg.cli import main
from adg.io import reading, records
from adg.stages import ingest

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
    summary = ingest.ingest(src, out, rej)
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
    assert "ingest: 3 accepted + 6 rejected = 9 read (1 ids assigned)" in out


# --- issue 14: inputs that used to lose good records -------------------------------------------


def good(i: int) -> str:
    return json.dumps({"id": i, "instruction": f"Task {i}", "output": f"answer {i}"})


def ingest_cli(tmp_path, name: str, data: bytes, capsys, *extra: str):
    """Run `adg ingest` on a file holding `data`: (exit status, accepted ids, rejects, stdout)."""
    src = tmp_path / name
    src.write_bytes(data)
    out, rej = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    code = main(["ingest", str(src), "--output", str(out), "--rejects", str(rej), *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()] if out.exists() else []
    rejects = [json.loads(line) for line in rej.read_text().splitlines()] if rej.exists() else []
    return code, ids, rejects, captured.out + captured.err


def lines(*items: str) -> bytes:
    return "".join(item + "\n" for item in items).encode()


LATIN1 = '{"id": 2, "instruction": "Caf\u00e9 au lait"}\n'.encode("latin-1")

# (file name, content, accepted ids, {reject line: reason fragment})
CASES = {
    "bom-jsonl": ("p.jsonl", b"\xef\xbb\xbf" + lines(good(1), good(2)), [1, 2], {}),
    "bom-array": (
        "p.json",
        b"\xef\xbb\xbf" + f"[\n{good(1)},\n{good(2)}\n]\n".encode(),
        [1, 2],
        {},
    ),
    "first-line-numbers": (
        "p.jsonl",
        lines("[1, 2, 3]", good(1), good(2)),
        [1, 2],
        {1: "not a JSON object (got a JSON array)"},
    ),
    "first-line-array-of-records": (
        "p.jsonl",
        lines(f"[{good(0)}]", good(1), good(2)),
        [1, 2],
        {1: "not a JSON object (got a JSON array)"},
    ),
    "array-then-lines": (
        "p.json",
        f"[\n{good(1)},\n{good(2)}\n]\n{good(3)}\n{good(4)}\n".encode(),
        [1, 2, 3, 4],
        {},
    ),
    "one-line-array": ("p.json", f"[{good(1)}, {good(2)}]".encode(), [1, 2], {}),
    "invalid-utf8-line": (
        "p.jsonl",
        lines(good(1)) + LATIN1 + lines(good(3)),
        [1, 3],
        {2: "not valid UTF-8 text (first bad byte at column 30)"},
    ),
    "invalid-utf8-element": (
        "p.json",
        f"[\n{good(1)},\n".encode() + LATIN1.rstrip() + f",\n{good(3)}\n]".encode(),
        [1, 3],
        {3: "not valid UTF-8"},
    ),
    "raw-carriage-return": (
        "p.jsonl",
        lines(good(1), '{"id": 2, "instruction": "two\rlines"}', good(3), '{"id": 4, "x": }'),
        [1, 2, 3],
        {4: "malformed JSON: Expecting value (column 16)"},
    ),
    "crlf-line-ends": ("p.jsonl", f"{good(1)}\r\n{good(2)}\r\n".encode(), [1, 2], {}),
    "malformed-array-element": (
        "p.json",
        f'[\n{good(1)},\n{{"id": 2, "instruction": "x" "y"}},\n{good(3)}\n]\n'.encode(),
        [1, 3],
        {3: "malformed JSON: Expecting ',' delimiter (line 3, column 30)"},
    ),
    "malformed-last-element-then-lines": (
        "p.json",
        f'[\n{good(1)},\n{{"id": 2, "instruction": \n]\n{good(3)}\n'.encode(),
        [1, 3],
        {3: "malformed JSON"},
    ),
    "malformed-element-in-one-line-array": (
        "p.json",
        f'[{good(1)}, {{"id": 2, "instruction" 5}}, {good(3)}]'.encode(),
        [1, 3],
        {1: "Expecting ':' delimiter"},
    ),
    "control-character-message": (
        "p.jsonl",
        lines(good(1), '{"id": 2, "instruction": "\x01" x}'),
        [1],
        {2: "malformed JSON"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_loses_no_good_record(tmp_path, capsys, case):
    name, data, want_ids, want_rejects = CASES[case]
    code, ids, rejects, out = ingest_cli(tmp_path, name, data, capsys)
    assert code == 0
    assert ids == want_ids
    assert {r["line"]: r["reason"] for r in rejects}.keys() == want_rejects.keys()
    for r in rejects:
        assert want_rejects[r["line"]] in r["reason"]
        assert "at at" not in r["reason"]
    read = len(want_ids) + len(want_rejects)
    assert f"{len(want_ids)} accepted + {len(want_rejects)} rejected = {read} read" in out


def test_broken_element_with_nested_objects_resumes_at_the_next_element(tmp_path):
    # ShareGPT-style records hold lists of objects; json.dump(indent=2) puts those deeper, so the
    # nested {"from": ...} objects of the broken element are not taken for array elements.
    conv = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    recs = [{"id": i, "instruction": f"Task {i}", "conversations": conv} for i in range(4)]
    text = json.dumps(recs, indent=2)
    broken = text.replace('"instruction": "Task 1"', '"instruction": "Task 1" "oops"')
    src = tmp_path / "p.json"
    src.write_text(broken)
    result = reading.read_pool(src)
    assert [r["id"] for r in result.records] == [0, 2, 3]
    assert len(result.rejects) == 1 and result.read == 4
    assert result.records[1]["conversations"] == conv


def test_a_broken_first_line_starting_with_a_bracket_loses_no_later_line(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(lines("[1, 2", good(1), '{"id": 9, "instruction": "x" "y"}', good(2), good(3)))
    result = reading.read_pool(src)
    assert [r["id"] for r in result.records] == [1, 2, 3]
    assert result.read == len(result.records) + len(result.rejects)


def test_raw_carriage_return_is_kept_inside_the_string(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_bytes(lines(good(1), '{"id": 2, "instruction": "two\rlines"}', "{", good(3)))
    result = reading.read_pool(src)
    assert [r["instruction"] for r in result.records] == ["Task 1", "two\rlines", "Task 3"]
    assert [r.line for r in result.rejects] == [3]  # line numbers are not shifted


def _gzip_pool(n: int) -> bytes:
    return gzip.compress(lines(*(good(i) for i in range(n))), mtime=0)


def test_truncated_gzip_keeps_the_lines_before_the_cut(tmp_path, capsys):
    data = _gzip_pool(400)
    code, ids, rejects, out = ingest_cli(tmp_path, "p.jsonl.gz", data[: len(data) // 2], capsys)
    assert code == 0
    assert ids == list(range(len(ids))) and 0 < len(ids) < 400
    assert len(rejects) == 1 and rejects[0]["line"] == len(ids) + 1
    assert "corrupt compressed data after line" in rejects[0]["reason"]
    assert f"{len(ids)} accepted + 1 rejected = {len(ids) + 1} read" in out


def test_corrupt_gzip_is_a_reject_not_a_traceback(tmp_path, capsys):
    data = bytearray(_gzip_pool(400))
    data[len(data) // 2 : len(data) // 2 + 40] = bytes(40)  # zlib.error or a CRC failure
    code, ids, rejects, out = ingest_cli(tmp_path, "p.jsonl.gz", bytes(data), capsys)
    assert code == 0 and len(ids) > 50
    assert ids[:50] == list(range(50))  # the records before the damage are all there
    assert "corrupt compressed data" in rejects[-1]["reason"]
    assert f"{len(ids)} accepted + {len(rejects)} rejected = {len(ids) + len(rejects)} read" in out


def test_a_file_that_is_not_gzip_is_one_line(tmp_path, capsys):
    code, ids, _rejects, out = ingest_cli(tmp_path, "p.jsonl.gz", lines(good(1)), capsys)
    assert code == 2 and ids == []
    assert "p.jsonl.gz: cannot decompress" in out and len(out.strip().splitlines()) == 1


def test_duplicate_across_files_names_the_first_place(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(lines(good(1), good(2)))
    b.write_bytes(lines(good(3), good(2)))
    result = reading.read_sources([str(a), str(b)])
    assert [r["id"] for r in result.records] == [1, 2, 3]
    assert [(r.file, r.line) for r in result.rejects] == [(str(b), 2)]
    assert f"first at {a}:2" in result.rejects[0].reason
    assert result.read == 4


def test_limit_stops_reading_and_keeps_the_equation(tmp_path, capsys):
    data = lines(good(1), "{", good(2), good(3), "{", good(4))
    code, ids, rejects, out = ingest_cli(tmp_path, "p.jsonl", data, capsys, "--limit", "2")
    assert code == 0 and ids == [1, 2] and [r["line"] for r in rejects] == [2]
    assert "2 accepted + 1 rejected = 3 read (0 ids assigned, stopped at --limit 2)" in out


def test_write_error_names_the_output_not_the_temp_file(tmp_path, capsys):
    src = tmp_path / "p.jsonl"
    src.write_bytes(lines(good(1)))
    out = tmp_path / "missing-dir" / "pool.jsonl"
    assert main(["ingest", str(src), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: cannot write" in err and ".tmp" not in err
    assert len(err.strip().splitlines()) == 1


DECODER_BREAKERS = [
    ('{"id": 1, "instruction": "lone \\ud800"}', r"lone UTF-16 surrogate \(\\ud800\)"),
    ('{"id": 2, "instruction": "x", "\\udfff": 1}', r"lone UTF-16 surrogate \(\\udfff\)"),
    ('{"id": 3, "instruction": "x", "v": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested more"),
    ('{"id": 4, "instruction": "x", "v": ' + "[" * 101 + "]" * 101 + "}", "nested more"),
    ('{"id": 5, "instruction": "x", "v": 1e400}', "number out of range: 1e400"),
    ('{"id": 6, "instruction": "x", "v": -1E+999}', "number out of range: -1E\\+999"),
    ('{"id": 7, "instruction": "x", "v": ' + "1" * 5000 + "}", "an integer of 5000 digits"),
]


@pytest.mark.parametrize("as_array", [False, True])
def test_lines_that_break_the_decoder_are_rejects_with_their_line(tmp_path, capsys, as_array):
    keep = [
        '{"id": 10, "instruction": "pair \\ud83d\\ude00 is one character"}',
        '{"id": 11, "instruction": "deep enough", "v": ' + "[" * 99 + "]" * 99 + "}",
        '{"id": 12, "instruction": "x", "v": 1e308, "nan": NaN}',
    ]
    lines = [line for line, _ in DECODER_BREAKERS] + keep
    src = tmp_path / ("pool.json" if as_array else "pool.jsonl")
    text = ("[\n" + ",\n".join(lines) + "\n]\n") if as_array else "\n".join(lines) + "\n"
    src.write_text(text)
    out, rej = tmp_path / "out.jsonl", tmp_path / "rej.jsonl"
    assert main(["ingest", str(src), "--output", str(out), "--rejects", str(rej)]) == 0
    assert "accepted" in capsys.readouterr().out
    rejects = [json.loads(line) for line in rej.read_text().splitlines()]
    first = 2 if as_array else 1
    assert [r["line"] for r in rejects] == list(range(first, first + len(DECODER_BREAKERS)))
    for r, (_line, reason) in zip(rejects, DECODER_BREAKERS, strict=True):
        assert re.search(reason, r["reason"]), r["reason"]
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in kept] == [10, 11, 12]
    assert kept[0]["instruction"] == "pair \U0001f600 is one character"


def test_ids_1_and_string_1_are_distinct_everywhere(tmp_path):
    # 1 and "1" are two ids (README.md, "Decisions ..."): ingest keeps both, stages treat them
    # as two records.
    src = tmp_path / "pool.jsonl"
    src.write_text('{"id": 1, "instruction": "a"}\n{"id": "1", "instruction": "b"}\n')
    summary = ingest.ingest(src, tmp_path / "out.jsonl", tmp_path / "rej.jsonl")
    assert (summary.accepted, summary.rejected) == (2, 0)
    assert reading.check_records(tmp_path / "out.jsonl") == 2
    assert records.id_key(1) != records.id_key("1")


# --- the fuzz test: random mixes of good and broken lines ----------------------------------


BROKEN = [
    lambda rng, i: "{" + good(i)[1:-1],  # no closing brace
    lambda rng, i: "[1, 2, 3]",
    lambda rng, i: json.dumps({"id": f"b{i}", "output": "no instruction"}),
    lambda rng, i: json.dumps({"id": f"b{i}", "instruction": "  "}),
    lambda rng, i: json.dumps({"id": f"b{i}", "instruction": "x", "input": rng.randint(0, 9)}),
    lambda rng, i: json.dumps({"id": f"b{i}", "instruction": True}),
    lambda rng, i: "null",
    lambda rng, i: "\u00e9t\u00e9 " * rng.randint(1, 3),
    lambda rng, i: good(i)[: rng.randint(1, 20)],
    # Lines that break the decoder or the writer rather than the syntax.
    lambda rng, i: f'{{"id": "s{i}", "instruction": "lone \\ud800 surrogate"}}',
    lambda rng, i: f'{{"id": "d{i}", "instruction": "x", "v": {_nested(rng)}}}',
    lambda rng, i: f'{{"id": "n{i}", "instruction": "x", "v": {rng.choice(HUGE)}}}',
]
HUGE = ["1e400", "-1e999", "9" * 5000]


def _nested(rng: random.Random) -> str:
    depth = rng.choice([101, 3000, 50_000])
    return "[" * depth + "]" * depth


BROKEN_BYTES = [b"\xff\xfe{}", b'{"id": "latin", "instruction": "caf\xe9"}', b"\x00\x01"]


CONVERSATION = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]


def _pretty(obj: dict) -> bytes:
    """One array element as json.dump(indent=2) writes it inside an array."""
    return json.dumps(obj, indent=2, ensure_ascii=False).replace("\n", "\n  ").encode()


def _fuzz_pool(rng: random.Random) -> tuple[bytes, list[int], str]:
    """A random pool: (bytes, the good ids in order, the file name)."""
    n = rng.randint(1, 40)
    array = rng.random() < 0.3  # the original ADG format: a pretty-printed array
    good_ids, parts = [], []
    for i in range(n):
        obj = {"id": 1000 + i, "instruction": f"Task {i}", "output": "x"}
        if rng.random() < 0.3:
            obj["conversations"] = CONVERSATION  # nested objects, deeper in a pretty array
        if rng.random() < 0.55:
            if rng.random() < 0.2:  # a raw CR or tab inside a string is still good
                obj["instruction"] = "Ta\rsk" if rng.random() < 0.5 else "Ta\tsk"
            parts.append(_pretty(obj) if array else json.dumps(obj).encode())
            good_ids.append(1000 + i)
        elif array and rng.random() < 0.3:  # a pretty element broken inside
            parts.append(_pretty(obj).replace(b'"output"', b'"oops" "output"'))
        elif rng.random() < 0.3:
            parts.append(rng.choice(BROKEN_BYTES))
        else:
            parts.append(rng.choice(BROKEN)(rng, i).encode())
    bom = b"\xef\xbb\xbf" if rng.random() < 0.2 else b""
    eol = b"\r\n" if rng.random() < 0.2 else b"\n"
    if array:
        body = b"[\n" + b",\n".join(b"  " + p for p in parts if p.strip()) + b"\n]\n"
        return bom + body.replace(b"\n", eol), good_ids, "pool.json"
    if rng.random() < 0.2:
        parts.insert(rng.randint(0, len(parts)), b"   ")  # blank lines are not items
    data = bom + eol.join(parts) + eol
    if rng.random() < 0.3:
        return gzip.compress(data, mtime=0), good_ids, "pool.jsonl.gz"
    return data, good_ids, "pool.jsonl"


@pytest.mark.parametrize("seed", range(20))
def test_fuzz_every_item_is_accepted_or_rejected(tmp_path, seed):
    rng = random.Random(seed)
    for round_ in range(10):
        data, good_ids, name = _fuzz_pool(rng)
        src = tmp_path / f"{round_}-{name}"
        src.write_bytes(data)
        out, rej = tmp_path / f"{round_}-out.jsonl", tmp_path / f"{round_}-rej.jsonl"
        try:
            summary = ingest.ingest(src, out, rej)
        except records.PoolError as err:
            assert not good_ids, f"seed {seed} round {round_}: {err}"
            continue
        kept = [json.loads(line)["id"] for line in out.read_text().splitlines()]
        rejected = rej.read_text().splitlines()
        assert kept == good_ids, f"seed {seed} round {round_}: a good record was lost"
        assert summary.accepted + summary.rejected == summary.read
        assert (summary.accepted, summary.rejected) == (len(kept), len(rejected))
        nonblank = [p for p in data.split(b"\n") if p.strip()] if not name.endswith(".gz") else []
        if name.endswith(".jsonl"):
            assert summary.read == len(nonblank)  # one item per non-blank line
