"""The selected records handed back in the pool's own shape (adg.io.handback's `Originals`, written
by ingest, read back by export): JSONL keeps each record's keys, order and nesting, Parquet keeps
the pool's schema and metadata; through `adg run` on a chat pool and on a Parquet pool in object
storage."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import (
    REAL,
    SHAPES,
    SYSTEM,
    as_dolly,
    as_messages,
    read_jsonl,
    sample_records,
    write_jsonl,
)

from adg.cli import main
from adg.stages import ingest
from adg.stages.export import SCORE_COLUMNS, write_selected


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
