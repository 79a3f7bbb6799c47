"""The curation index (adg.io.curation_index) and the curation stage (adg.stages.curation): dedup,
consistency, entries and versions in a local folder and in S3 (moto).

Scored batches here are real pool records with synthetic scores and random unit-norm embeddings:
what is under test is the index's bookkeeping and the selection over all of it; the model stages
that produce those fields are tested end to end in test_pipeline's curation runs.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import sample_records, write_jsonl

from adg.io import curation_index, storage
from adg.method.clustering import kmeans_bins, kmeans_bins_parts
from adg.stages import curation

SETTINGS = curation.scoring_settings("tiny-a", generate_num_samples=3, score_dispersion_weight=0.6)
OTHER = curation.scoring_settings("tiny-b", generate_num_samples=3, score_dispersion_weight=0.6)


def scored_batch(tmp_path, name, records, seed):
    """A scored batch as the pipeline leaves it: scored.jsonl + embeddings.npy."""
    rng = np.random.default_rng(seed)
    scored = [
        {**r, "generated_answers": ["a", "b", "c"], "dispersion": d, "anisotropy": a, "score": s}
        for r, d, a, s in zip(
            records,
            rng.random(len(records)),
            rng.random(len(records)),
            rng.random(len(records)),
            strict=True,
        )
    ]
    path = write_jsonl(tmp_path / f"{name}.scored.jsonl", scored)
    emb = rng.standard_normal((len(records), 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    np.save(tmp_path / f"{name}.emb.npy", emb)
    return path, tmp_path / f"{name}.emb.npy"


def curate(tmp_path, index, name, pool, settings=SETTINGS, rescore=False, run_id="run"):
    """One run's index work: plan, 'score' the planned records, add the entry, select."""
    pool_path = write_jsonl(tmp_path / f"{name}.pool.jsonl", pool)
    todo = tmp_path / f"{name}.todo.jsonl"
    plan = curation.plan_batch(index, pool_path, todo, settings, rescore_mismatched=rescore)
    planned = [json.loads(line) for line in todo.read_text().splitlines()]
    if planned:
        scored, emb = scored_batch(tmp_path, name, planned, seed=len(name))
        curation.add_entry(index, scored, emb, settings, run_id, plan.supersedes)
    return plan, planned


def run_two_batches(tmp_path, index):
    records = sample_records(30)
    first, second = records[:16], records[16:]
    plan1, _ = curate(tmp_path, index, "one", first, run_id="run-1")
    v1 = curation.select_version(index, 6, tmp_path / "v1", cluster_count=3, run_id="run-1")
    # The second run sees both files, and a copy of a first-file record under a new id.
    copy = {**first[0], "id": "copy-of-first"}
    plan2, planned = curate(tmp_path, index, "two", first + second + [copy], run_id="run-2")
    v2 = curation.select_version(index, 6, tmp_path / "v2", cluster_count=3, run_id="run-2")
    return plan1, plan2, planned, v1, v2, records


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_runs_score_only_new_records_and_select_over_all(tmp_path, where, request):
    index = str(tmp_path / "index")
    if where == "s3":
        index = f"s3://{request.getfixturevalue('bucket')}/curation"
    plan1, plan2, planned, v1, v2, records = run_two_batches(tmp_path, index)
    assert (plan1.records, plan1.duplicates) == (16, 0)
    # Only the second file's records are scored again; the copied record is scored once.
    assert [r["id"] for r in planned] == [r["id"] for r in records[16:]]
    assert (plan2.pool, plan2.duplicates, plan2.records) == (31, 17, 14)
    assert v1["entries"] == ["000001"] and v2["entries"] == ["000001", "000002"]
    assert v2["records"] == 30 and v2["counts"]["top"] == 6 and v2["previous"] == v1["id"]
    top = json.loads((tmp_path / "v2" / "top.json").read_text())
    assert len(top) == 6 and all("generated_answers" in r for r in top)
    assert [r["score"] for r in top] == sorted((r["score"] for r in top), reverse=True)
    diff = json.loads((tmp_path / "v2" / "diff.json").read_text())
    top1 = [r["id"] for r in json.loads((tmp_path / "v1" / "top.json").read_text())]
    assert set(diff["added"]) == {r["id"] for r in top} - set(top1)
    assert set(diff["dropped"]) == set(top1) - {r["id"] for r in top}
    # Manifests name every file with its sha256, in the index itself.
    idx = curation_index.Index(index)
    for kind, name in (("entries", "000002"), ("versions", v2["id"])):
        manifest = idx.read_json(kind, name, "manifest.json")
        for file, meta in manifest["files"].items():
            with idx.local(kind, name, file) as path:
                assert storage.sha256_file(path) == meta["sha256"]
    entry = idx.read_json("entries", "000002", "manifest.json")
    assert entry["records"] == 14 and entry["settings"] == SETTINGS and entry["run_id"] == "run-2"
    report = (tmp_path / "v2" / "report.md").read_text()
    assert "| 000001 |" in report and "| 000002 |" in report


def test_selection_is_over_the_whole_index(tmp_path):
    """The best records of the first batch stay in the top set when the second batch is worse."""
    index = str(tmp_path / "index")
    records = sample_records(20)
    curate(tmp_path, index, "one", records[:10])
    curate(tmp_path, index, "two", records[10:])
    idx = curation_index.Index(index)
    entries, _ = curation_index.active_entries(idx)
    arrays = curation_index.load_arrays(idx, entries, tmp_path)
    assert len(arrays.score) == 20 and isinstance(arrays.embeddings[0], np.memmap)
    assert arrays.embeddings[0].dtype == np.float16
    sel, _bins = curation.select_arrays(arrays, 5, cluster_count=1)
    assert set(sel.top.tolist()) == set(np.argsort(-arrays.score)[:5].tolist())


@pytest.mark.parametrize("where", ["local", "s3"])
def test_mismatched_entries_are_refused_or_rescored(tmp_path, where, request):
    index = str(tmp_path / "index")
    if where == "s3":
        index = f"s3://{request.getfixturevalue('bucket')}/curation"
    records = sample_records(12)
    curate(tmp_path, index, "one", records[:8], settings=OTHER)
    with pytest.raises(curation.CurationMismatch, match=r"model='tiny-b'.*--rescore-mismatched"):
        curate(tmp_path, index, "two", records[8:])
    assert len(curation_index.Index(index).manifests("entries")) == 1  # nothing written
    plan, planned = curate(tmp_path, index, "three", records[8:], rescore=True)
    assert plan.supersedes == ["000001"] and plan.rescored == 8 and plan.records == 12
    assert all("score" not in r and "generated_answers" not in r for r in planned)
    version = curation.select_version(index, 4, tmp_path / "v", cluster_count=2)
    assert version["entries"] == ["000002"] and version["records"] == 12


def test_select_refuses_budget_above_index(tmp_path):
    index = str(tmp_path / "index")
    curate(tmp_path, index, "one", sample_records(5))
    with pytest.raises(ValueError, match="budget 9 is larger than the curation index"):
        curation.select_version(index, 9, tmp_path / "v")


def test_plan_refuses_a_budget_the_index_will_not_hold_before_any_scoring(tmp_path):
    index = str(tmp_path / "index")
    records = sample_records(9)
    curate(tmp_path, index, "one", records[:5])
    # 5 indexed; a pool of 6 with 2 already indexed brings 4 new: 9 fits, 10 does not.
    pool = write_jsonl(tmp_path / "two.pool.jsonl", records[3:])
    plan = curation.plan_batch(index, pool, tmp_path / "todo.jsonl", SETTINGS, budget=9)
    assert (plan.indexed, plan.records) == (5, 4)
    with pytest.raises(ValueError, match=r"budget 10 .* after this run \(5 indexed \+ 4 new"):
        curation.plan_batch(index, pool, tmp_path / "todo.jsonl", SETTINGS, budget=10)


def test_parts_binning_equals_stage_binning_when_small():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    parts = [x[:100].astype(np.float16), x[100:].astype(np.float16)]
    stacked = np.concatenate(parts).astype(np.float32)
    assert np.array_equal(kmeans_bins_parts(parts, 5), kmeans_bins(stacked, 5))
    sampled = kmeans_bins_parts(parts, 5, fit_rows=120, pca_dims=4)
    assert sampled.shape == (300,) and set(np.unique(sampled)) == set(range(5))
    assert sampled[0] == 0  # renumbered by first appearance


def test_a_local_pool_folder_is_read_file_by_file(tmp_path):
    """`adg run --input FOLDER` (with a curation index): every pool file in it, sorted."""
    from adg.stages.ledger import plan_sources, pool_files

    for name in ("b.jsonl", "a.json", "notes.txt"):
        (tmp_path / name).write_text("[]")
    assert [s["uri"] for s in plan_sources(str(tmp_path), "", "")] == [
        str(tmp_path / "a.json"),
        str(tmp_path / "b.jsonl"),
    ]
    assert pool_files(str(tmp_path / "a.json")) == []


def test_an_s3_pool_folder_is_read_file_by_file(tmp_path, bucket):
    """The same for an s3:// URI ending in "/"; an empty one is one clear error."""
    from adg.stages.ledger import plan_sources, pool_files

    for name in ("b.jsonl", "a.json", "notes.txt", "sub/c.jsonl.gz"):
        storage.write_bytes(f"s3://{bucket}/pools/{name}", b"[]")
    assert [s["uri"] for s in plan_sources(f"s3://{bucket}/pools/", "", "")] == [
        f"s3://{bucket}/pools/a.json",
        f"s3://{bucket}/pools/b.jsonl",
        f"s3://{bucket}/pools/sub/c.jsonl.gz",
    ]
    assert pool_files(f"s3://{bucket}/pools/a.json") == []
    with pytest.raises(ValueError, match=r"empty/: no pool files"):
        pool_files(f"s3://{bucket}/empty/")


# --- runs that overlap on one index -----------------------------------------------------------


def race(*jobs):
    """Run the callables in threads at once; their results in order (an exception re-raised)."""
    import threading

    results: list = [None] * len(jobs)

    def run(i, job):
        try:
            results[i] = job()
        except BaseException as err:  # handed to the test below
            results[i] = err

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def index_keys(idx: curation_index.Index, tmp_path) -> set[tuple[int, int]]:
    """(id hash, content hash) of every record the index counts (each once)."""
    entries, _ = curation_index.active_entries(idx)
    with tempfile.TemporaryDirectory(dir=tmp_path) as work:
        arrays = curation_index.load_arrays(idx, entries, Path(work))
        keys = []
        for pos, entry in enumerate(arrays.entries):
            with np.load(idx.fetch(Path(work), "entries", entry["id"], "arrays.npz")) as a:
                rows = arrays.row[arrays.entry == pos]
                keys += zip(
                    a["id_hash"][rows].tolist(), a["content_hash"][rows].tolist(), strict=True
                )
    assert len(keys) == len(set(keys)) == len(arrays.score)
    return set(keys)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_runs_racing_on_one_index_land_as_two_entries_and_count_records_once(
    tmp_path, where, request
):
    """Two runs plan against the same (empty) index, so both score the 20 records their pools
    share; then both write their entry and their version at the same moment. Each lands whole in
    its own entry and version; every record counts once; nothing is lost; the ledger holds both
    runs' files."""
    import threading

    from adg.stages import ledger

    index = str(tmp_path / "index")
    if where == "s3":
        bucket = request.getfixturevalue("serial_bucket")
        index = f"s3://{bucket}/curation"
        ledger_uri = f"s3://{bucket}/adg/ledger.json"
    records = sample_records(40)
    pools = {"a": records[:30], "b": records[10:]}
    planned, written = threading.Barrier(2), threading.Barrier(2)

    def run(name):
        pool = write_jsonl(tmp_path / f"{name}.pool.jsonl", pools[name])
        todo = tmp_path / f"{name}.todo.jsonl"
        plan = curation.plan_batch(index, pool, todo, SETTINGS)
        batch = [json.loads(line) for line in todo.read_text().splitlines()]
        scored, emb = scored_batch(tmp_path, name, batch, seed=ord(name))
        planned.wait()  # neither has written yet: both planned all of their pool
        entry = curation.add_entry(index, scored, emb, SETTINGS, f"run-{name}")
        written.wait()
        version = curation.select_version(index, 8, tmp_path / name, cluster_count=3)
        recorded = 0
        if where == "s3":
            source = {"uri": f"s3://{bucket}/pools/{name}.jsonl", "etag": name}
            recorded = ledger.record(ledger_uri, [{**source, "records": plan.records}], name)
        return plan, entry, version, recorded

    (plan_a, entry_a, version_a, rec_a), (plan_b, entry_b, version_b, rec_b) = race(
        lambda: run("a"), lambda: run("b")
    )
    assert plan_a.records == plan_b.records == 30  # the shared 20 were planned by both
    idx = curation_index.Index(index)
    assert sorted([entry_a, entry_b]) == ["000001", "000002"]
    assert sorted([version_a["id"], version_b["id"]]) == ["000001", "000002"]
    # Each entry is one run's batch, whole: its files are the ones its manifest lists.
    for entry_id, run_id in ((entry_a, "run-a"), (entry_b, "run-b")):
        manifest = idx.read_json("entries", entry_id, "manifest.json")
        assert manifest["run_id"] == run_id and manifest["records"] == 30
        for file, meta in manifest["files"].items():
            with idx.local("entries", entry_id, file) as path:
                assert storage.sha256_file(path) == meta["sha256"]
    # Every record of both pools is in the index, once; the shared ones are the first entry's.
    assert index_keys(idx, tmp_path) == {curation_index.record_keys(r) for r in records}
    final = curation.select_version(index, 8, tmp_path / "final", cluster_count=3)
    assert (final["records"], final["duplicates"], final["entries"]) == (
        40,
        20,
        ["000001", "000002"],
    )
    for name in ("a", "b", "final"):
        chosen = [
            r["id"]
            for group in curation.GROUPS
            for r in json.loads((tmp_path / name / f"{group}.json").read_text())
        ]
        assert len(chosen) == len(set(chosen)), f"{name}: a record selected twice"
    if where == "s3":
        assert rec_a == rec_b == 1
        files = ledger.read_ledger(ledger_uri)["files"]
        assert set(files) == {f"s3://{bucket}/pools/a.jsonl", f"s3://{bucket}/pools/b.jsonl"}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_id_claimed_by_a_run_still_writing_is_skipped(tmp_path, where, request):
    """A claim without a manifest (a run still writing, or one that died) keeps its id: the next
    writer takes the one after, and readers ignore the unfinished entry."""
    index = str(tmp_path / "index")
    if where == "s3":
        index = f"s3://{request.getfixturevalue('serial_bucket')}/curation"
    idx = curation_index.Index(index)
    assert idx.create_json({"run_id": "slow"}, "entries", "000001", "claim.json")
    assert not idx.create_json({"run_id": "late"}, "entries", "000001", "claim.json")
    assert idx.read_json("entries", "000001", "claim.json") == {"run_id": "slow"}
    curate(tmp_path, index, "one", sample_records(6))
    assert [m["id"] for m in idx.manifests("entries")] == ["000002"]
    assert idx.ids("entries") == [1, 2]


def test_a_manifest_is_created_never_replaced(tmp_path):
    """Publishing into an id whose manifest exists (a lost claim, a bug) refuses with one line
    and leaves the first manifest as it was."""
    idx = curation_index.Index(str(tmp_path / "index"))
    data = tmp_path / "data.txt"
    data.write_text("x\n")
    curation_index.publish(idx, "entries", {"id": "000001"}, {"data.txt": data})
    first = idx.read_json("entries", "000001", "manifest.json")
    assert first["files"]["data.txt"] == {"sha256": storage.sha256_file(data), "bytes": 2}
    with pytest.raises(storage.StorageError, match=r"000001/manifest.json: already exists"):
        curation_index.publish(idx, "entries", {"id": "000001", "run_id": "b"}, {"data.txt": data})
    assert idx.read_json("entries", "000001", "manifest.json") == first


def test_many_ledger_writers_at_once_all_land(serial_bucket):
    """Six runs record their files in one ledger at the same moment: every file ends up in it."""
    from adg.stages import ledger

    ledger_uri = f"s3://{serial_bucket}/adg/ledger.json"

    def writer(i):
        source = {"uri": f"s3://{serial_bucket}/p/{i}.jsonl", "etag": str(i), "records": 1}
        return ledger.record(ledger_uri, [source], f"run-{i}")

    assert race(*[lambda i=i: writer(i) for i in range(6)]) == [1] * 6
    files = ledger.read_ledger(ledger_uri)["files"]
    assert {v["run_id"] for v in files.values()} == {f"run-{i}" for i in range(6)}


KILL_HALF_WAY = """
import os, signal, sys
from adg.io.curation_index import Index
from adg.stages import curation

put = Index.put
def put_then_die(self, local, *parts):
    put(self, local, *parts)
    os.kill(os.getpid(), signal.SIGKILL)  # the pod killed after its first file
Index.put = put_then_die
index, scored, emb, settings = sys.argv[1:5]
import json
curation.add_entry(index, scored, emb, json.loads(settings), "run-7")
"""


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_retried_add_reuses_the_entry_its_killed_attempt_left(tmp_path, where, request):
    """curation_add killed half-way (SIGKILL after its first file: claim and one file, no
    manifest), then retried with the same run id: the index lists one entry, finished, under the
    id the first attempt claimed; no unfinished one is left beside it."""
    import os
    import subprocess
    import sys

    index = str(tmp_path / "index")
    if where == "s3":
        index = f"s3://{request.getfixturevalue('serial_bucket')}/curation"
    idx = curation_index.Index(index)
    scored, emb = scored_batch(tmp_path, "b", sample_records(5), seed=3)
    args = [sys.executable, "-c", KILL_HALF_WAY, index, str(scored), str(emb), json.dumps(SETTINGS)]
    killed = subprocess.run(args, env=os.environ.copy(), capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert idx.ids("entries") == [1] and idx.manifests("entries") == []
    assert idx.read_json("entries", "000001", "claim.json")["run_id"] == "run-7"
    assert curation.add_entry(index, scored, emb, SETTINGS, "run-7") == "000001"
    assert idx.ids("entries") == [1]
    (entry,) = idx.manifests("entries")
    assert entry["id"] == "000001" and entry["run_id"] == "run-7" and entry["records"] == 5
    # Another run never takes over this run's entry.
    assert curation.add_entry(index, scored, emb, SETTINGS, "run-8") == "000002"
