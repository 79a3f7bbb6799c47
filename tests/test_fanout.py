"""Sharded fan-out end to end: the whole pipeline under kfp.local with two shards (through `adg
run`), plus a recurring-curation run over a bucket prefix that records its pool files in the ledger
and then finds nothing new. The shard arithmetic and the merge are in test_shard.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import sample_records, write_jsonl

from adg.io import storage

SMALL_RUN = ["--num-samples", "3", "--max-new-tokens", "8", "--backend", "hf"]


def _run_dir(root: Path) -> Path:
    (run,) = sorted(root.glob("adg-selection-*"))
    return run


@pytest.mark.kfp_local
def test_adg_run_fans_out_over_two_shards(tiny_model_dir, tmp_path, bucket):
    from adg.cli import main

    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(12))
    out = tmp_path / "run"
    export = f"s3://{bucket}/exports/local"
    args = ["run", "--input", str(pool), "--model", str(tiny_model_dir), "--budget", "3"]
    args += ["--cluster-count", "2", "--shard-count", "2", "--output-dir", str(out)]
    args += ["--export-uri", export, *SMALL_RUN]
    assert main(args) == 0

    run = _run_dir(out / "kfp-local")
    for i in range(2):
        generated = run / f"for-loop-2-iteration-{i}" / "generate" / "generated"
        assert len(generated.read_text().splitlines()) == 6
    merged = [json.loads(x) for x in (run / "merge" / "merged").read_text().splitlines()]
    assert [r["id"] for r in merged] == [r["id"] for r in sample_records(12)]
    assert all("score" in r and len(r["generated_answers"]) == 3 for r in merged)

    top = json.loads((out / "top.json").read_text())
    report = json.loads((out / "selection_report.json").read_text())
    assert len(top) == 3 and report["records"] == 12
    manifest = storage.read_json(f"{export}/manifest.json")
    assert manifest["counts"]["top"] == 3 and manifest["parameters"]["shard_count"] == 2
    top_bytes = storage.read_bytes(f"{export}/top.json")
    assert top_bytes == (out / "top.json").read_bytes()


@pytest.mark.kfp_local
def test_recurring_curation_records_the_ledger_then_has_nothing_to_do(
    tiny_model_dir, tmp_path, bucket
):
    from kfp import local

    from adg_kfp.pipelines.adg_pipeline import adg_pipeline

    prefix, ledger_uri = f"s3://{bucket}/pools/", f"s3://{bucket}/adg/ledger.json"
    records = sample_records(10)
    storage.upload(write_jsonl(tmp_path / "a.jsonl", records[:6]), f"{prefix}a.jsonl")
    storage.upload(write_jsonl(tmp_path / "b.jsonl", records[6:]), f"{prefix}b.jsonl")

    def run(root: Path) -> Path:
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(root),
            raise_on_error=True,
        )
        adg_pipeline(
            ingest_pool_prefix=prefix,
            ingest_ledger_uri=ledger_uri,
            model=str(tiny_model_dir),
            shard_count=2,
            generate_num_samples=3,
            generate_max_new_tokens=8,
            generate_backend="hf",
            cluster_count=2,
            select_budget=2,
        )
        return _run_dir(root)

    first = run(tmp_path / "first")
    assert len(json.loads((first / "select" / "top").read_text())) == 2
    files = storage.read_json(ledger_uri)["files"]
    assert sorted(files) == [f"{prefix}a.jsonl", f"{prefix}b.jsonl"]

    second = run(tmp_path / "second")
    assert not (second / "select").exists()
    report = json.loads((second / "nothing-to-do" / "report").read_text())
    assert report["nothing_to_do"] is True
    assert json.loads((second / "nothing-to-do" / "top").read_text()) == []
    assert storage.read_json(ledger_uri)["files"] == files


@pytest.mark.kfp_local
def test_second_scheduled_run_reads_the_new_files(tmp_path, bucket):
    """What a second scheduled run does, through the real components under kfp.local: ingest
    reads only the files that arrived since (ingest is never cached in the compiled spec, see
    test_compiled_pipeline), record_ledger adds them, and a third run finds nothing."""
    from kfp import local

    from adg_kfp.components.ingest import ingest
    from adg_kfp.components.ledger import nothing_to_do, record_ledger

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )
    prefix, ledger_uri = f"s3://{bucket}/pools/", f"s3://{bucket}/adg/ledger.json"
    records = sample_records(9)
    storage.upload(write_jsonl(tmp_path / "a.jsonl", records[:4]), f"{prefix}a.jsonl")

    def scheduled_run(run_id: str):
        ing = ingest(pool_uri="", pool_prefix=prefix, ledger_uri=ledger_uri, limit=0)
        args = {"ledger_uri": ledger_uri, "sources": ing.outputs["sources"], "run_id": run_id}
        if ing.outputs["new_files"]:
            record_ledger(**args)
        else:
            nothing_to_do(pool_prefix=prefix, **args)
        pool = Path(ing.outputs["pool"].path).read_text().splitlines()
        return ing.outputs["new_files"], [json.loads(x)["id"] for x in pool]

    assert scheduled_run("run-1") == (1, [r["id"] for r in records[:4]])
    storage.upload(write_jsonl(tmp_path / "b.jsonl", records[4:]), f"{prefix}b.jsonl")
    assert scheduled_run("run-2") == (1, [r["id"] for r in records[4:]])
    assert scheduled_run("run-3") == (0, [])
    # A file without one valid record: the run ends in nothing_to_do, which records it as
    # rejected, so later runs neither fail on it nor read it again.
    storage.write_bytes(f"{prefix}c.jsonl", b'{"instruction": ""}\n')
    assert scheduled_run("run-4") == (0, [])
    assert scheduled_run("run-5") == (0, [])
    files = storage.read_json(ledger_uri)["files"]
    assert {u: (e["run_id"], e["status"]) for u, e in files.items()} == {
        f"{prefix}a.jsonl": ("run-1", "curated"),
        f"{prefix}b.jsonl": ("run-2", "curated"),
        f"{prefix}c.jsonl": ("run-4", "rejected"),
    }
