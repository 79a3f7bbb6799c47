"""The recurring ingest's ledger (adg.stages.ledger) against a real S3 API (moto's server on
loopback): only new or changed pool files are planned, each file's status (curated, rejected,
deferred by the limit) is recorded, two runs cannot lose an update, and a file changed after
listing is not read as the listed version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import sample_records, write_jsonl

from adg.io import storage
from adg.stages import ledger


def put_file(path: Path, uri: str) -> None:
    storage.upload(path, uri)


def test_ledger_plans_only_new_files_and_records_after(bucket, tmp_path):
    prefix, ledger_uri = f"s3://{bucket}/pools", f"s3://{bucket}/adg/ledger.json"
    for i in range(2):
        src = write_jsonl(tmp_path / f"p{i}.jsonl", sample_records(3 + i))
        storage.upload(src, f"{prefix}/p{i}.jsonl")
    storage.write_bytes(f"{prefix}/README.txt", b"not a pool")

    first = ledger.plan_sources("", prefix, ledger_uri)
    assert [s["uri"] for s in first] == [f"{prefix}/p0.jsonl", f"{prefix}/p1.jsonl"]
    assert ledger.record(ledger_uri, first, run_id="run-1") == 2
    assert ledger.plan_sources("", prefix, ledger_uri) == []

    summary, sources = ledger.ingest_pending(
        "", prefix, ledger_uri, tmp_path / "pool.jsonl", tmp_path / "rej.jsonl"
    )
    assert summary is None and sources == [] and (tmp_path / "pool.jsonl").read_text() == ""

    # A new file and a changed one are pending again; the unchanged one is not.
    storage.upload(write_jsonl(tmp_path / "p2.jsonl", sample_records(2)), f"{prefix}/p2.jsonl")
    storage.upload(write_jsonl(tmp_path / "p1b.jsonl", sample_records(6)), f"{prefix}/p1.jsonl")
    pending = [s["uri"] for s in ledger.plan_sources("", prefix, ledger_uri)]
    assert pending == [f"{prefix}/p1.jsonl", f"{prefix}/p2.jsonl"]
    entry = ledger.read_ledger(ledger_uri)["files"][f"{prefix}/p0.jsonl"]
    assert entry["run_id"] == "run-1" and entry["size"] > 0


def test_several_pool_files_get_distinct_assigned_ids(bucket, tmp_path):
    prefix = f"s3://{bucket}/pools"
    no_ids = [{"instruction": f"task {i}"} for i in range(3)]
    for name in ("a.jsonl", "b.jsonl"):
        storage.upload(write_jsonl(tmp_path / name, no_ids), f"{prefix}/{name}")
    summary, sources = ledger.ingest_pending(
        "", prefix, "", tmp_path / "pool.jsonl", tmp_path / "rej.jsonl"
    )
    ids = [json.loads(line)["id"] for line in (tmp_path / "pool.jsonl").read_text().splitlines()]
    assert summary.accepted == 6 and len(sources) == 2
    assert ids == ["a.jsonl#0", "a.jsonl#1", "a.jsonl#2", "b.jsonl#0", "b.jsonl#1", "b.jsonl#2"]


def test_ledger_marks_curated_rejected_and_defers_files_cut_by_the_limit(bucket, tmp_path):
    prefix, ledger_uri = f"s3://{bucket}/pools", f"s3://{bucket}/adg/ledger.json"
    records = sample_records(5)
    put_file(write_jsonl(tmp_path / "a.jsonl", records[:2]), f"{prefix}/a.jsonl")
    put_file(write_jsonl(tmp_path / "b.jsonl", [{"instruction": ""}]), f"{prefix}/b.jsonl")
    storage.write_bytes(f"{prefix}/c.json", b"this is not JSON")
    put_file(write_jsonl(tmp_path / "d.jsonl", records[2:]), f"{prefix}/d.jsonl")

    summary, sources = ledger.ingest_pending(
        "", prefix, ledger_uri, tmp_path / "pool.jsonl", tmp_path / "rej.jsonl", limit=3
    )
    by_name = {s["uri"].rsplit("/", 1)[1]: s for s in sources}
    assert summary.accepted == 3
    assert {n: s["status"] for n, s in by_name.items()} == {
        "a.jsonl": "curated",
        "b.jsonl": "rejected",
        "c.json": "rejected",
        "d.jsonl": "deferred",
    }
    assert by_name["a.jsonl"]["records"] == 2 and by_name["d.jsonl"]["records"] == 1
    assert ledger.files_with_records(sources) == 2
    assert "stopped reading it after 1 records" in by_name["d.jsonl"]["reason"]

    assert ledger.record(ledger_uri, sources, run_id="run-1") == 3
    files = ledger.read_ledger(ledger_uri)["files"]
    assert files[f"{prefix}/a.jsonl"]["status"] == "curated"
    assert files[f"{prefix}/b.jsonl"]["status"] == "rejected"
    assert files[f"{prefix}/c.json"]["status"] == "rejected"
    assert files[f"{prefix}/c.json"]["reason"] == "no valid record"
    assert f"{prefix}/d.jsonl" not in files
    # The next run reads only the deferred file, whole.
    assert [s["uri"] for s in ledger.plan_sources("", prefix, ledger_uri)] == [f"{prefix}/d.jsonl"]


def test_a_prefix_with_only_bad_files_is_not_an_error(bucket, tmp_path):
    prefix, ledger_uri = f"s3://{bucket}/pools", f"s3://{bucket}/adg/ledger.json"
    storage.write_bytes(f"{prefix}/bad.jsonl", b'{"output": "no instruction"}\n')
    summary, sources = ledger.ingest_pending(
        "", prefix, ledger_uri, tmp_path / "pool.jsonl", tmp_path / "rej.jsonl"
    )
    assert summary.accepted == 0 and ledger.files_with_records(sources) == 0
    assert (tmp_path / "pool.jsonl").read_text() == ""
    assert ledger.record(ledger_uri, sources, run_id="run-1") == 1
    assert ledger.plan_sources("", prefix, ledger_uri) == []  # not retried until it changes


def test_two_runs_on_one_ledger_cannot_lose_an_update(bucket):
    ledger_uri = f"s3://{bucket}/adg/ledger.json"
    a = [{"uri": f"s3://{bucket}/p/a.jsonl", "etag": "1", "status": "curated", "records": 1}]
    b = [{"uri": f"s3://{bucket}/p/b.jsonl", "etag": "2", "status": "curated", "records": 1}]
    # Both runs read "no ledger yet"; the first write wins, the second fails loudly.
    (first, etag_a), (second, etag_b) = ledger.load(ledger_uri), ledger.load(ledger_uri)
    ledger.save(ledger_uri, ledger.updated(first, a, "run-a")[0], etag_a)
    with pytest.raises(ledger.LedgerConflict, match="another run"):
        ledger.save(ledger_uri, ledger.updated(second, b, "run-b")[0], etag_b)
    # Both read the same version; the later writer's stale ETag is refused.
    (first, etag_a), (second, etag_b) = ledger.load(ledger_uri), ledger.load(ledger_uri)
    ledger.save(ledger_uri, ledger.updated(first, b, "run-b")[0], etag_a)
    with pytest.raises(ledger.LedgerConflict):
        ledger.save(ledger_uri, ledger.updated(second, [], "run-c")[0], etag_b)
    assert set(ledger.read_ledger(ledger_uri)["files"]) == {a[0]["uri"], b[0]["uri"]}


def test_a_file_changed_after_listing_is_not_read_as_the_listed_version(bucket, tmp_path):
    from adg.stages.ingest import ingest

    prefix = f"s3://{bucket}/pools"
    put_file(write_jsonl(tmp_path / "a.jsonl", sample_records(2)), f"{prefix}/a.jsonl")
    (listed,) = ledger.plan_sources("", prefix, "")
    put_file(write_jsonl(tmp_path / "a2.jsonl", sample_records(3)), f"{prefix}/a.jsonl")
    with pytest.raises(storage.PreconditionFailed, match=r"a\.jsonl"):
        ingest([listed["uri"]], tmp_path / "p.jsonl", None, etags={listed["uri"]: listed["etag"]})
