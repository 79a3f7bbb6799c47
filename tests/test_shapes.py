"""Pools as users have them (adg.io.shapes): every shape in its own file and as Parquet, detection,
--format and --columns, rejects with file and line (Parquet: row), the conversation rule, and the
compiled pipeline's wiring of the shape. Parquet shards and `datasets` folders are in
test_tables.py, zstd in test_reading.py, the round trip back to the pool's own shape in
test_handback.py.

The fixtures are real Alpaca-GPT4 records from the in-repository sample, rewritten into each
shape the way those datasets lay them out (helpers.py: Dolly's original `context` / `response`,
TRL's `prompt` / `completion`, ShareGPT's `conversations`, OpenAI's `messages`)."""

from __future__ import annotations

import json

import pytest
from helpers import (
    REAL,
    SHAPES,
    SYSTEM,
    as_alpaca,
    as_dolly,
    as_messages,
    as_sharegpt,
    read_jsonl,
    request,
    write_jsonl,
    write_pool,
    yaml_documents,
)

from adg.cli import main
from adg.errors import InputError
from adg.io import reading, shapes
from adg.method.prompts import build_prompt, chat_prompt
from adg.stages import ingest


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


# --- in the compiled pipeline ---------------------------------------------------------------------


def test_the_pipeline_wires_the_shape_and_the_baselines_prompt():
    """In the compiled pipeline: ingest takes ingest_format / ingest_columns, every baseline
    scoring task takes generation's prompt format, export hands back from ingest's originals."""
    from helpers import REPO

    spec = next(yaml_documents((REPO / "pipelines" / "adg_pipeline.yaml").read_text()))
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
