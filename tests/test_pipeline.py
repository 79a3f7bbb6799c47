"""The KFP pipeline: it compiles, names the right images, and runs end to end under kfp.local."""

import json

import pytest
from helpers import REPO, sample_records, write_jsonl, yaml_documents

from adg.cli import main
from adg_kfp.components.images import image_for, read_images_env

STAGES = ("ingest", "generate", "embed", "cluster", "score", "select")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    assert main(["compile", "--output", str(out)]) == 0
    return next(yaml_documents(out.read_text()))


def test_every_stage_runs_in_its_image(compiled):
    executors = compiled["deploymentSpec"]["executors"]
    for stage in STAGES:
        container = executors[f"exec-{stage}"]["container"]
        assert container["image"] == image_for(stage)
        # Images ship kfp and adg: nothing is pip-installed when a pod starts.
        assert "pip install" not in " ".join(container.get("command", []))
    assert set(read_images_env()) == {
        "ADG_IMAGE_CPU",
        "ADG_IMAGE_GENERATE",
        "ADG_IMAGE_TRAIN",
        "ADG_IMAGE_EVAL",
    }


def test_parameters_are_stage_prefixed(compiled):
    params = compiled["root"]["inputDefinitions"]["parameters"]
    stages = (
        "ingest",
        "generate",
        "embed",
        "cluster",
        "score",
        "select",
        "train",
        "evaluate",
        "analyse",
        "curation",
    )
    # Settings that apply to the whole run rather than to one stage.
    run_wide = {
        "model",
        "shard_count",
        "gpu_node_selector",
        "gpu_tolerations",
        "gpu_accelerator_type",
        "storage_secret",
        "model_cache_pvc",
        "checkpoint_uri",
        "checkpoint_every",
        "export_uri",
        "selectors",
    }
    unprefixed = {n for n in params if not n.startswith(tuple(f"{s}_" for s in stages))}
    assert unprefixed <= run_wide
    assert params["cluster_count"]["defaultValue"] == 1000
    assert params["select_strategy"]["defaultValue"] == "exact"


def test_committed_yaml_is_current(tmp_path):
    out = tmp_path / "p.yaml"
    main(["compile", "--output", str(out)])
    assert out.read_text() == (REPO / "pipelines" / "adg_pipeline.yaml").read_text()


@pytest.mark.kfp_local
def test_local_run_end_to_end(tmp_path, tiny_model_dir, capsys):
    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(10))
    out = tmp_path / "run"
    args = ["run", "--input", str(pool), "--model", str(tiny_model_dir), "--output-dir", str(out)]
    args += ["--budget", "3", "--cluster-count", "2", "--num-samples", "3", "--max-new-tokens", "8"]
    # Flags generated from adg.config's fields (no LocalRunOptions field of their own).
    args += ["--cluster-pca-dims", "2", "--cluster-seed", "7"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "selected 3 of 10 records" in printed and str(out / "top.json") in printed
    # One line as each task starts and ends, with its numbers; kfp.local's executor dicts and the
    # tasks' own output only in the run's log files.
    lines = printed.splitlines()
    for line in ("ingest done in", "cluster done in", "select done in"):
        assert sum(line in x for x in lines) == 1, line
    assert any(x.endswith(": 10 records read, 0 rejected") for x in lines)
    assert any(x.endswith(": 2 bins") for x in lines) and any(
        x.endswith(": 3 selected") for x in lines
    )
    assert any(": 30 answers (3 for each of 10 records)" in x for x in lines)
    assert "executor_input" not in printed and "Streamed logs" not in printed
    log = (out / "logs" / "kfp-local.log").read_text()
    assert "Got executor_input" in log and "Streamed logs" in log
    assert "cluster: 2 bins" in (out / "logs" / "cluster.log").read_text()
    # The cluster task got the generated flags' values (its executor input, in kfp.local's log).
    assert '"pca_dims": 2,' in log and '"seed": 7' in log
    # Integer settings stay integers through kfp.local (its protobuf Struct), grouped by stage.
    md = (out / "report.md").read_text()
    assert "| generate | num\\_samples | 3 |" in md and "| cluster | count | 2 |" in md
    top = json.loads((out / "top.json").read_text())
    assert len(top) == 3
    assert all({"dispersion", "anisotropy", "score", "generated_answers"} <= set(r) for r in top)
    report = json.loads((out / "selection_report.json").read_text())
    assert report["records"] == 10 and report["bins"] == 2 and report["budget_fill"] == 1.0
    middle = json.loads((out / "middle.json").read_text())
    bottom = json.loads((out / "bottom.json").read_text())
    ids = [r["id"] for r in top + middle + bottom]
    assert len(ids) == len(set(ids))


def test_run_rejects_budget_larger_than_pool(tmp_path, capsys):
    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(4))
    code = main(["run", "--input", str(pool), "--budget", "9", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "budget 9 is larger than the pool (4 valid records)" in err


@pytest.mark.kfp_local
def test_curation_index_two_runs(tmp_path, tiny_model_dir, tiny_qwen_dir, capsys):
    """Run 1 curates one file; run 2 sees it plus a new file and scores only the new records,
    selecting over both; a run with another model is refused before it starts."""
    pools, index = tmp_path / "pools", tmp_path / "index"
    pools.mkdir()
    records = sample_records(14)
    write_jsonl(pools / "a.jsonl", records[:8])
    base = ["run", "--input", str(pools), "--curation-index", str(index), "--budget", "4"]
    base += ["--num-samples", "3", "--max-new-tokens", "6", "--cluster-count", "2"]

    def run(n, model=tiny_model_dir):
        out = tmp_path / f"run{n}"
        code = main([*base, "--model", str(model), "--output-dir", str(out)])
        return code, out

    assert run(1)[0] == 0
    write_jsonl(pools / "b.jsonl", records[8:])
    capsys.readouterr()
    code, out = run(2)
    assert code == 0
    capsys.readouterr()
    plan = (out / "logs" / "curation-plan.log").read_text()
    assert "curation plan: 6 records to score (14 in the pool, 8 already indexed" in plan
    entries = sorted(p.name for p in (index / "entries").iterdir())
    assert entries == ["000001", "000002"]
    second = json.loads((index / "entries" / "000002" / "manifest.json").read_text())
    assert second["records"] == 6 and {s.rsplit("/", 1)[-1] for s in second["sources"]} == {
        "a.jsonl",
        "b.jsonl",
    }
    version = json.loads((index / "versions" / "000002" / "manifest.json").read_text())
    assert version["entries"] == ["000001", "000002"] and version["records"] == 14
    top = json.loads((out / "top.json").read_text())
    assert len(top) == 4 and all("generated_answers" in r for r in top)
    report = json.loads((out / "selection_report.json").read_text())
    assert report["records"] == 14 and report["diff"]["previous"] == "000001"
    diff = json.loads((out / "diff.json").read_text())
    assert len(diff["added"]) == report["diff"]["added"]
    assert "| 000002 |" in (out / "report.md").read_text()
    code, _ = run(3, model=tiny_qwen_dir)
    err = capsys.readouterr().err
    assert code == 2 and "was scored with model=" in err and "--rescore-mismatched" in err
    assert sorted(p.name for p in (index / "entries").iterdir()) == entries


@pytest.mark.kfp_local
def test_curation_index_in_object_storage(tmp_path, tiny_model_dir, bucket, capsys):
    """`adg run` with the pool files and the curation index in S3 (a real S3 API, moto's server):
    the second run scores only the new file's records and selects over both entries."""
    from adg.io import storage

    records = sample_records(10)
    prefix, index = f"s3://{bucket}/pools/", f"s3://{bucket}/curation"
    for name, part in (("a.jsonl", records[:6]), ("b.jsonl", records[6:])):
        write_jsonl(tmp_path / name, part)
    base = ["run", "--curation-index", index, "--budget", "3", "--model", str(tiny_model_dir)]
    base += ["--num-samples", "2", "--max-new-tokens", "4", "--cluster-count", "2"]
    storage.upload(tmp_path / "a.jsonl", prefix + "a.jsonl")
    assert main([*base, "--input", prefix + "a.jsonl", "--output-dir", str(tmp_path / "r1")]) == 0
    storage.upload(tmp_path / "b.jsonl", prefix + "b.jsonl")
    capsys.readouterr()
    out = tmp_path / "r2"
    assert main([*base, "--input", prefix, "--output-dir", str(out)]) == 0
    assert "curation plan: 4 records to score (10 in the pool, 6 already indexed" in (
        (out / "logs" / "curation-plan.log").read_text()
    )
    keys = [o.key for o in storage.list_objects(index + "/")]
    assert sorted(k.removeprefix("curation/") for k in keys if k.endswith("manifest.json")) == [
        "entries/000001/manifest.json",
        "entries/000002/manifest.json",
        "versions/000001/manifest.json",
        "versions/000002/manifest.json",
    ]
    version = storage.read_json(index + "/versions/000002/manifest.json")
    assert version["entries"] == ["000001", "000002"] and version["records"] == 10
    assert len(json.loads((out / "top.json").read_text())) == 3
