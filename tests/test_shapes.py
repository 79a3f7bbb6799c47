"""Pools as users have them: every shape in its own file and as Parquet, detection, --format and
--columns, rejects with file and line (Parquet: row), .zst, Parquet shards and `datasets` folders,
the conversation rule, and the round trip back to the pool's own shape.

The fixtures are real Alpaca-GPT4 records from the in-repository sample, rewritten into each
shape the way those datasets lay them out (Dolly's original `context` / `response`, TRL's
`prompt` / `completion`, ShareGPT's `conversations`, OpenAI's `messages`)."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import sample_records, write_jsonl

from adg.cli import main
from adg.errors import InputError
from adg.io import reading, shapes
from adg.method.prompts import build_prompt, chat_prompt
from adg.stages import ingest
from adg.stages.export import SCORE_COLUMNS, write_selected

REAL = sample_records(12)
SYSTEM = "You are a careful assistant. Answer in plain English."


def request(r: dict) -> str:
    """The user's turn of a record: its instruction, then its input after a blank line."""
    return r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")


def as_alpaca(r):
    return {"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}


def as_dolly(r):
    return {
        "instruction": r["instruction"],
        "context": r.get("input", ""),
        "response": r["output"],
        "category": "closed_qa" if r.get("input") else "open_qa",
    }


def as_prompt_completion(r):
    return {"prompt": request(r), "completion": r["output"]}


def as_messages(r, earlier=None, system=SYSTEM):
    turns = [{"role": "system", "content": system}] if system else []
    if earlier is not None:
        turns += [
            {"role": "user", "content": request(earlier)},
            {"role": "assistant", "content": earlier["output"]},
        ]
    turns += [
        {"role": "user", "content": request(r)},
        {"role": "assistant", "content": r["output"]},
    ]
    return {"messages": turns}


def as_sharegpt(r, earlier=None, system=SYSTEM):
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    turns = as_messages(r, earlier, system)["messages"]
    return {"conversations": [{"from": names[t["role"]], "value": t["content"]} for t in turns]}


SHAPES = {
    "alpaca": as_alpaca,
    "dolly": as_dolly,
    "prompt-completion": as_prompt_completion,
    "sharegpt": lambda r: as_sharegpt(r, earlier=REAL[0]),
    "messages": lambda r: as_messages(r, earlier=REAL[0]),
}


def expected(shape: str, r: dict) -> dict:
    """Where ADG must read each shape's prompt, context and reference answer."""
    if shape in ("alpaca", "dolly"):
        return {"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
    out = {"instruction": request(r), "output": r["output"]}  # prompt / completion: no input
    if shape in ("sharegpt", "messages"):
        out["input"] = ""  # a conversation has no context field
        earlier = REAL[0]
        out["system"] = SYSTEM
        out["history"] = [
            {"role": "user", "content": request(earlier)},
            {"role": "assistant", "content": earlier["output"]},
        ]
    return out


def write_pool(tmp_path, shape: str, container: str, rows: list[dict]):
    if container == "parquet":
        path = tmp_path / f"{shape}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    return write_jsonl(tmp_path / f"{shape}.jsonl", rows)


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


# --- every shape, in its own file and as Parquet ------------------------------------------------


@pytest.mark.parametrize("container", ["jsonl", "parquet"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_is_read_where_adg_reads_it(tmp_path, shape, container):
    rows = [SHAPES[shape](r) for r in REAL[1:]]
    src = write_pool(tmp_path, shape, container, rows)
    out, rej = tmp_path / "pool.jsonl", tmp_path / "rejects.jsonl"
    summary = ingest.ingest(src, out, rej)
    assert (summary.accepted, summary.rejected) == (len(rows), 0)
    assert summary.source_lines() == [
        f"ingest: {src}: {shape} shape, {len(rows)} accepted, 0 rejected"
    ]
    pool = read_jsonl(out)
    for record, real in zip(pool, REAL[1:], strict=True):
        want = expected(shape, real)
        assert {k: record.get(k) for k in want} == want
    if shape == "dolly":  # the passage a closed-QA instruction is about reaches the prompt
        with_context = next(r for r in pool if r["input"])
        assert f"### Input:\n{with_context['input']}" in build_prompt(with_context, "alpaca")
        assert {r["category"] for r in pool} == {"open_qa", "closed_qa"}  # carried through


def test_the_cli_prints_each_files_shape(tmp_path, capsys):
    a = write_pool(tmp_path, "alpaca", "jsonl", [as_alpaca(r) for r in REAL[:3]])
    d = write_pool(tmp_path, "dolly", "parquet", [as_dolly(r) for r in REAL[3:6]])
    m = write_pool(tmp_path, "messages", "jsonl", [as_messages(r) for r in REAL[6:9]])
    code = main(["ingest", str(a), str(d), str(m), "--output", str(tmp_path / "o.jsonl")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"ingest: {d}: dolly shape, 3 accepted, 0 rejected" in out
    assert f"ingest: {m}: messages shape, 3 accepted, 0 rejected" in out
    assert "ingest: 9 accepted + 0 rejected = 9 read (9 ids assigned)" in out


def test_detection_follows_the_table_order():
    assert shapes.detect(["instruction", "context", "response", "category"]).name == "dolly"
    # An ADG record that also carries "response" or "messages" is read as it always was.
    assert shapes.detect(["instruction", "output", "response"]).name == "alpaca"
    assert shapes.detect(["instruction", "messages"]).name == "alpaca"
    assert shapes.detect(["prompt", "completion"]).name == "prompt-completion"
    assert shapes.detect(["conversations", "id"]).name == "sharegpt"
    assert shapes.detect(["messages"]).name == "messages"
    assert shapes.detect(["text"]) is None


# --- overrides ----------------------------------------------------------------------------------


def test_format_overrides_detection(tmp_path, capsys):
    rows = [{"instruction": "tag", **as_messages(r)} for r in REAL[:3]]
    src = write_jsonl(tmp_path / "both.jsonl", rows)
    out = tmp_path / "o.jsonl"
    assert main(["ingest", str(src), "--output", str(out), "--format", "messages"]) == 0
    assert "messages shape (given), 3 accepted" in capsys.readouterr().out
    assert [r["instruction"] for r in read_jsonl(out)] == [request(r) for r in REAL[:3]]


def test_columns_map_any_names(tmp_path, capsys):
    rows = [
        {"question": r["instruction"], "context": r.get("input", ""), "answer": r["output"]}
        for r in REAL[:4]
    ]
    src = write_pool(tmp_path, "qa", "parquet", rows)
    out = tmp_path / "o.jsonl"
    args = ["ingest", str(src), "--output", str(out)]
    assert main(args) == 2  # read as alpaca, nothing fits: the error says what to give
    assert "give --format or --columns" in capsys.readouterr().err
    columns = "instruction=question,input=context,output=answer"
    assert main([*args, "--columns", columns]) == 0
    printed = capsys.readouterr().out
    assert "alpaca shape (given by --columns; columns " in printed and "0 rejected" in printed
    assert read_jsonl(out)[1] == {"id": 1, **as_alpaca(REAL[1])}


def test_columns_rename_a_conversations_fields(tmp_path):
    rows = [
        {
            "dialog": [
                {"speaker": t["role"], "text": t["content"]} for t in as_messages(r)["messages"]
            ]
        }
        for r in REAL[:2]
    ]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    how = reading.PoolFormat.parse("messages", "messages=dialog,role=speaker,content=text")
    result = reading.read_pool(src, how=how)
    assert not result.rejects and result.records[0]["system"] == SYSTEM


@pytest.mark.parametrize(
    ("fmt", "columns", "message"),
    [
        ("yaml", "", "unknown pool format 'yaml'"),
        ("auto", "instruction", "'instruction' is not ADG_FIELD=POOL_FIELD"),
        ("dolly", "prompt=q", "'prompt' is not a field of the dolly shape"),
    ],
)
def test_bad_overrides_are_one_line(tmp_path, fmt, columns, message):
    with pytest.raises(InputError, match=message):
        reading.PoolFormat.parse(fmt, columns)


# --- bad records: rejects with the reason and where ---------------------------------------------


def said(*turns: str) -> list[dict]:
    """Turns from "role: content" strings."""
    return [dict(zip(("role", "content"), t.split(": ", 1), strict=True)) for t in turns]


BAD_TURNS = [
    (said("user: Hi"), "does not end in an assistant turn"),
    (said("system: s", "assistant: A"), "no user turn"),
    (
        said("user: Q", "tool: {}", "assistant: A"),
        "turn 2: 'role' 'tool' is not user|assistant|system",
    ),
    (said("user: Q", "system: s", "assistant: A"), "turn 2: a system turn after the first"),
    (
        said("user: Q", "assistant: A", "assistant: B"),
        "the last assistant turn does not answer a user turn",
    ),
    ([{"role": "user", "content": ["Q"]}, *said("assistant: A")], "not text"),
    ("hello", "expected a list of turns"),
]


def test_conversations_that_do_not_fit_are_rejects(tmp_path):
    rows = [as_messages(REAL[1])] + [{"messages": turns} for turns, _ in BAD_TURNS]
    src = write_jsonl(tmp_path / "chat.jsonl", rows)
    result = reading.read_pool(src)
    assert len(result.records) == 1 and result.read == len(rows)
    assert [r.line for r in result.rejects] == list(range(2, len(rows) + 1))
    for reject, (_turns, reason) in zip(result.rejects, BAD_TURNS, strict=True):
        assert reason in reject.reason and reject.reason.startswith("field 'messages'")


def test_parquet_rejects_name_the_row_and_the_pools_own_field(tmp_path):
    rows = [as_dolly(r) for r in REAL[:5]]
    rows[2]["instruction"] = None
    rows[3]["response"] = None
    src = write_pool(tmp_path, "dolly", "parquet", rows)
    out, rej = tmp_path / "o.jsonl", tmp_path / "r.jsonl"
    summary = ingest.ingest(src, out, rej)
    # A null optional column is a missing field (columns exist in every row); a null
    # instruction is a reject naming the row, counted from 0 like dataset[i].
    assert (summary.accepted, summary.rejected, summary.read) == (4, 1, 5)
    (reject,) = read_jsonl(rej)
    assert reject["row"] == 2 and reject["file"] == str(src)
    assert "field 'instruction'" in reject["reason"] and json.loads(reject["raw"])["context"] == ""
    assert "output" not in read_jsonl(out)[2]  # row 3: no response, as if the field were absent


def test_a_renamed_fields_error_names_the_pools_field(tmp_path):
    rows = [as_dolly(REAL[0]), {**as_dolly(REAL[1]), "context": ["not", "text"]}]
    result = reading.read_pool(write_jsonl(tmp_path / "d.jsonl", rows))
    assert "field 'context'" in result.rejects[0].reason


# --- conversations: the rule, and where the earlier turns go -----------------------------------


def test_the_same_conversation_in_two_shapes_is_one_canonical_record():
    sg = shapes.to_canonical(
        as_sharegpt(REAL[2], REAL[3]), shapes.reading("auto", {}, ["conversations"])
    )
    oa = shapes.to_canonical(
        as_messages(REAL[2], REAL[3]), shapes.reading("auto", {}, ["messages"])
    )
    assert sg == oa
    assert shapes.canonical_content(sg) == shapes.canonical_content(oa)
    from adg.io.curation_index import record_keys

    assert record_keys({"id": 1, **sg}) == record_keys({"id": 1, **oa})
    # A single-turn record hashes as before conversations existed (indexes stay valid).
    plain = {"id": 1, **as_alpaca(REAL[4])}
    assert shapes.content_text(plain) == "\x1f".join(
        [REAL[4]["instruction"], REAL[4].get("input", ""), REAL[4]["output"]]
    )


def test_system_field_parts_and_trl_conversational_prompt_completion():
    # LLaMA-Factory's sharegpt: the system prompt is a field, not a turn.
    row = {**as_sharegpt(REAL[1], system=None), "system": SYSTEM}
    got = shapes.to_canonical(row, shapes.reading("sharegpt", {}, None))
    assert got["system"] == SYSTEM and got["instruction"] == request(REAL[1])
    # OpenAI content as a list of text parts.
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}
    parts["messages"].append({"role": "assistant", "content": "Hello"})
    assert shapes.to_canonical(parts, shapes.reading("messages", {}, None))["instruction"] == "Hi"
    # TRL's conversational prompt / completion.
    msgs = as_messages(REAL[1], REAL[2])["messages"]
    trl = {"prompt": msgs[:-1], "completion": msgs[-1:], "id": "x"}
    got = shapes.to_canonical(trl, shapes.reading("auto", {}, trl.keys()))
    assert got == {"id": "x", **expected("messages", REAL[1]) | {"history": got["history"]}}
    assert got["history"][0]["content"] == request(REAL[2])
    # LLaMA-Factory's alpaca history: [[query, response], ...].
    lf = {**as_alpaca(REAL[1]), "history": [[request(REAL[2]), REAL[2]["output"]]]}
    got = shapes.to_canonical(lf, shapes.reading("auto", {}, lf.keys()))
    assert got["history"] == [
        {"role": "user", "content": request(REAL[2])},
        {"role": "assistant", "content": REAL[2]["output"]},
    ]


def test_chat_renders_the_whole_conversation_and_alpaca_refuses_it(tiny, tmp_path, capsys):
    tokenizer, _model = tiny
    record = shapes.to_canonical(
        as_messages(REAL[1], REAL[2]), shapes.reading("messages", {}, None)
    )
    text = chat_prompt(record, tokenizer)
    order = [SYSTEM, request(REAL[2]), REAL[2]["output"], request(REAL[1])]
    assert [text.index(part) for part in order] == sorted(text.index(part) for part in order)
    assert REAL[1]["output"] not in text  # the turn to score is what the model answers
    # --prompt-format alpaca cannot hold earlier turns: one line, before any model loads.
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": 0, **record}])
    args = ["generate", "--input", str(pool), "--output", str(tmp_path / "g.jsonl")]
    args += ["--prompt-format", "alpaca"]
    assert main([*args, "--model", str(tmp_path / "no-such-model")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{pool}:1" in err and "use --prompt-format auto or chat" in err


def test_ifd_conditions_on_the_rendered_conversation(tiny):
    from adg.method.ifd import IFDScorer

    tokenizer, model = tiny
    record = shapes.to_canonical(
        as_messages(REAL[1], REAL[2]), shapes.reading("messages", {}, None)
    )
    cond, labels, direct = IFDScorer(tokenizer, model, prompt_format="chat")._sequences(record)
    prompt = tokenizer(chat_prompt(record, tokenizer), add_special_tokens=False)["input_ids"]
    # The template writes its own opening tokens: no BOS before it; the answer follows it.
    answer = direct[1:]
    assert direct[0] == tokenizer.bos_token_id and cond == prompt + answer
    assert labels == [-100] * len(prompt) + answer
    with pytest.raises(InputError, match="earlier turns"):
        IFDScorer(tokenizer, model)._sequences(record)


def test_training_renders_a_conversation_in_the_chat_template(tiny):
    from adg.stages.train import encode

    tokenizer, _model = tiny
    record = shapes.to_canonical(
        as_messages(REAL[1], REAL[2]), shapes.reading("messages", {}, None)
    )
    ex = encode(record, tokenizer, 4096)
    prompt = tokenizer(chat_prompt(record, tokenizer), add_special_tokens=False)["input_ids"]
    assert ex["input_ids"][: len(prompt)] == prompt
    assert ex["labels"][: len(prompt)] == [-100] * len(prompt)


def test_the_report_shows_the_conversation(tmp_path):
    from helpers import selected_run

    conv = [
        {
            "id": n,
            **shapes.to_canonical(as_messages(r, REAL[0]), shapes.reading("messages", {}, None)),
        }
        for n, r in enumerate(REAL[1:])
    ]
    selected_run(tmp_path, conv, budget=3)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert SYSTEM in page and "user (the turn scored)" in page
    assert REAL[0]["instruction"][:50] in page


# --- containers ---------------------------------------------------------------------------------


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


def test_a_folder_of_parquet_shards(tmp_path, capsys):
    shards = tmp_path / "data"
    shards.mkdir()
    rows = [as_alpaca(r) for r in REAL]
    for i in range(2):
        part = pa.Table.from_pylist(rows[i * 6 : (i + 1) * 6])
        pq.write_table(part, shards / f"train-0000{i}-of-00002.parquet")
    out = tmp_path / "o.jsonl"
    assert main(["ingest", str(shards), "--output", str(out)]) == 0
    ids = [r["id"] for r in read_jsonl(out)]
    assert ids[:2] == ["train-00000-of-00002.parquet#0", "train-00000-of-00002.parquet#1"]
    assert len(ids) == 12 and "train-00001-of-00002.parquet: alpaca shape, 6" in (
        capsys.readouterr().out
    )


def test_a_datasets_folder(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    rows = [{**as_messages(r, REAL[0]), "source": "alpaca-gpt4"} for r in REAL[1:]]
    folder = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder), num_shards=2)
    out, orig = tmp_path / "o.jsonl", tmp_path / "orig"
    assert main(["ingest", str(folder), "--output", str(out), "--originals", str(orig)]) == 0
    assert "messages shape, 11 accepted, 0 rejected" in capsys.readouterr().out
    assert [r["instruction"] for r in read_jsonl(out)] == [request(r) for r in REAL[1:]]
    assert pq.read_table(orig).to_pylist() == rows
    # A DatasetDict with one split is that split; with two, the user picks one.
    split = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
    split.save_to_disk(str(tmp_path / "dd"))
    assert len(reading.read_pool(tmp_path / "dd").records) == 11
    datasets.DatasetDict({"train": split["train"], "test": split["train"]}).save_to_disk(
        str(tmp_path / "dd2")
    )
    assert main(["ingest", str(tmp_path / "dd2"), "--output", str(out)]) == 2
    assert "give one split's folder, e.g." in capsys.readouterr().err


def test_a_file_that_is_not_parquet_is_one_line(tmp_path, capsys):
    src = tmp_path / "pool.parquet"
    src.write_text('{"instruction": "x"}\n')
    assert main(["ingest", str(src), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{src}: not a readable parquet file" in err


# --- handed back as they were -------------------------------------------------------------------


def _select_some(pool_path, out_path, picks):
    """A top.json: some pool records, best first, with ADG's score fields."""
    pool = read_jsonl(pool_path)
    top = [
        {**pool[i], "dispersion": 0.5, "anisotropy": 0.25, "score": 1.0 - n / 10}
        for n, i in enumerate(picks)
    ]
    out_path.write_text(json.dumps(top))
    return top


@pytest.mark.parametrize("shape", ["dolly", "sharegpt", "messages"])
def test_round_trip_jsonl(tmp_path, shape):
    rows = [{**SHAPES[shape](r), "meta": {"n": n, "tags": ["a"]}} for n, r in enumerate(REAL)]
    src = write_jsonl(tmp_path / f"{shape}.jsonl", rows)
    pool, orig = tmp_path / "pool.jsonl", tmp_path / "originals"
    assert ingest.ingest(src, pool, None, originals=orig).originals == "jsonl"
    top = _select_some(pool, tmp_path / "top.json", [7, 2, 9])
    out = tmp_path / "selected.jsonl"
    assert write_selected(tmp_path / "top.json", pool, orig, out) == 3
    back = read_jsonl(out)
    for got, i, t in zip(back, [7, 2, 9], top, strict=True):
        assert {k: v for k, v in got.items() if k not in SCORE_COLUMNS.values()} == rows[i]
        assert list(got)[: len(rows[i])] == list(rows[i])  # same keys, same order
        assert got["adg_score"] == t["score"] and got["adg_dispersion"] == 0.5


def test_round_trip_parquet_keeps_the_schema(tmp_path):
    rows = [{**as_messages(r, REAL[0]), "id": 100 + n, "rating": n / 2} for n, r in enumerate(REAL)]
    schema = pa.Table.from_pylist(rows).schema.with_metadata({b"huggingface": b'{"info": 1}'})
    table = pa.Table.from_pylist(rows, schema=schema).cast(
        schema.set(schema.get_field_index("id"), pa.field("id", pa.int32()))
    )
    src = tmp_path / "chat.parquet"
    pq.write_table(table, src)
    pool, orig = tmp_path / "pool.jsonl", tmp_path / "originals"
    ingest.ingest(src, pool, None, originals=orig)
    _select_some(pool, tmp_path / "top.json", [11, 0, 5])
    out = tmp_path / "selected.parquet"
    write_selected(tmp_path / "top.json", pool, orig, out)
    back = pq.read_table(out)
    source = pq.read_schema(src)
    extra = [back.schema.field(c) for c in SCORE_COLUMNS.values()]
    assert back.schema.remove_metadata() == pa.schema([*source.remove_metadata(), *extra])
    assert back.schema.metadata == source.metadata and all(f.type == pa.float64() for f in extra)
    want = [table.slice(i, 1).to_pylist()[0] for i in (11, 0, 5)]
    assert back.drop_columns(list(SCORE_COLUMNS.values())).to_pylist() == want


# --- through the pipeline (kfp.local) -----------------------------------------------------------

TINY_RUN = ["--cluster-count", "2", "--num-samples", "2", "--max-new-tokens", "4"]


def chat_pool(n: int) -> list[dict]:
    """A messages pool as chat SFT sets have it: some conversations with a system prompt, some
    with earlier turns, some single-turn, each with a field of the pool's own."""
    real = sample_records(2 * n)
    pool = []
    for i in range(n):
        earlier = real[n + i] if i % 3 else None
        system = SYSTEM if i % 2 == 0 else None
        pool.append({**as_messages(real[i], earlier, system), "source": f"alpaca-gpt4/{i}"})
    return pool


@pytest.mark.kfp_local
def test_adg_run_on_a_chat_pool_hands_back_messages(tmp_path, tiny_model_dir):
    pool = chat_pool(12)
    src = write_jsonl(tmp_path / "chat.jsonl", pool)
    out = tmp_path / "run"
    args = ["run", "--input", str(src), "--model", str(tiny_model_dir), "--budget", "3"]
    args += ["--output-dir", str(out)]  # the default prompt format: auto, resolved to chat
    assert main([*args, *TINY_RUN]) == 0
    top = json.loads((out / "top.json").read_text())
    assert len(top) == 3 and all("history" in r and "generated_answers" in r for r in top)
    back = read_jsonl(out / "selected.jsonl")
    assert not (out / "selected.parquet").exists()
    for got, t in zip(back, top, strict=True):
        original = {k: v for k, v in got.items() if k not in SCORE_COLUMNS.values()}
        assert original == pool[t["id"]]  # the conversation exactly as it was read
        assert got["adg_score"] == t["score"]
    groups = [json.loads((out / f"{g}.json").read_text()) for g in ("top", "middle", "bottom")]
    scored = [r for g in groups for r in g]
    assert any(r["history"] for r in scored) and any(r["system"] for r in scored)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "user (the turn scored)" in page


def test_the_pipeline_wires_the_shape_and_the_baselines_prompt():
    """In the compiled pipeline: ingest takes ingest_format / ingest_columns, every baseline
    scoring task takes generation's prompt format, export hands back from ingest's originals."""
    import yaml
    from helpers import REPO

    spec = next(yaml.safe_load_all((REPO / "pipelines" / "adg_pipeline.yaml").read_text()))
    tasks = [
        task
        for comp in [spec["root"], *spec["components"].values()]
        for task in comp.get("dag", {}).get("tasks", {}).values()
    ]

    def named(display: str) -> list[dict]:
        return [t for t in tasks if t["taskInfo"]["name"] == display]

    def source(task: dict, name: str) -> str:
        return task["inputs"]["parameters"][name].get("componentInputParameter", "")

    (ingest,) = named("ingest")
    assert source(ingest, "pool_format") == "ingest_format"
    assert source(ingest, "columns") == "ingest_columns"
    # with and without training, in the branches "both" and "models"; random in its own task;
    # each takes the pool's one format, resolved by curation_route
    baselines = named("score_baseline")
    assert len(baselines) == 4 and len(named("score_random")) == 4
    for task in baselines + named("score_random"):
        assert source(task, "prompt_format") == "pipelinechannel--curation-route-prompt_format"
    (export,) = named("export")  # inside a condition: ingest's outputs come in as channels
    originals = export["inputs"]["artifacts"]["originals"]["componentInputArtifact"]
    assert originals == "pipelinechannel--ingest-originals"


@pytest.mark.kfp_local
def test_a_parquet_pool_in_object_storage_through_the_pipeline(tmp_path, tiny_model_dir, bucket):
    from adg.io import storage

    rows = [{"id": 1000 + n, **as_dolly(r)} for n, r in enumerate(sample_records(12))]
    table = pa.Table.from_pylist(rows)
    table = table.cast(table.schema.set(0, pa.field("id", pa.int32()))).replace_schema_metadata(
        {b"huggingface": b'{"info": {"features": {}}}'}
    )
    local = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(table, local)
    uri = f"s3://{bucket}/pools/dolly/train-00000-of-00001.parquet"
    storage.upload(local, uri)
    out, export = tmp_path / "run", f"s3://{bucket}/exports/dolly"
    args = ["run", "--input", uri, "--model", str(tiny_model_dir), "--budget", "3"]
    args += ["--export-uri", export, "--output-dir", str(out)]
    assert main([*args, *TINY_RUN]) == 0
    selected = pq.read_table(out / "selected.parquet")
    extra = [pa.field(c, pa.float64()) for c in SCORE_COLUMNS.values()]
    assert selected.schema == pa.schema([*table.schema, *extra], metadata=table.schema.metadata)
    top = json.loads((out / "top.json").read_text())
    assert selected.column("id").to_pylist() == [r["id"] for r in top]
    assert (
        storage.read_bytes(f"{export}/selected.parquet") == (out / "selected.parquet").read_bytes()
    )
    manifest = storage.read_json(f"{export}/manifest.json")
    assert set(manifest["files"]) >= {"top.json", "selected.parquet"}


def test_a_damaged_row_group_keeps_the_rows_before_it(tmp_path):
    rows = [as_alpaca(r) for r in sample_records(200)]
    src = tmp_path / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=50)
    page = pq.ParquetFile(src).metadata.row_group(3).column(2).data_page_offset
    data = bytearray(src.read_bytes())
    data[page : page + 16] = b"\xff" * 16  # the last row group's page header
    src.write_bytes(bytes(data))
    result = reading.read_pool(src)
    assert len(result.records) == 150 and result.read == 151
    (reject,) = result.rejects
    assert reject.line == 150 and reject.unit == "row"
    assert "damaged data after row 149" in reject.reason and "\n" not in reject.reason


def test_nulls_in_an_alpaca_parquet_are_missing_fields(tmp_path):
    rows = [as_alpaca(r) for r in REAL[:3]]
    rows[1]["input"] = None
    result = reading.read_pool(write_pool(tmp_path, "alpaca", "parquet", rows))
    assert not result.rejects and "input" not in result.records[1]
