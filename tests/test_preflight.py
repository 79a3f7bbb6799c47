"""Preflight: parameter checks, the object-store checks against a real S3 API (moto's server on
loopback), the default checkpoint prefix under the pipeline root, and the component through
kfp.local failing with one line."""

from __future__ import annotations

import json

import pytest
from helpers import failed_local_run, sample_records, write_jsonl

from adg.io import storage
from adg.stages.preflight import (
    PreflightError,
    check_parameters,
    default_checkpoint_uri,
    route_after_ingest,
    run_preflight,
)

GOOD = {
    "ingest_input": "",
    "ingest_pool_prefix": "",
    "shard_count": 2,
    "select_budget": 10,
    "generate_num_samples": 5,
    "generate_gpu_memory_utilization": 0.9,
    "generate_top_p": 0.9,
    "score_dispersion_weight": 0.6,
    "score_anisotropy_weight": 0.4,
    "select_strategy": "exact",
    "selectors": ["adg", "random"],
    "embed_gpu_count": 1,
    "gpu_accelerator_type": "nvidia.com/gpu",
    "checkpoint_uri": "",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"embed_gpu_count": "1.5"}, "embed_gpu_count='1.5': a whole number of GPUs"),
        ({"select_budget": -5}, "select_budget=-5"),
        ({"generate_num_samples": 1}, "at least 2 answers"),
        ({"generate_gpu_memory_utilization": 1.5}, "must be in (0, 1]"),
        ({"score_dispersion_weight": 0, "score_anisotropy_weight": 0}, "not both 0"),
        ({"select_strategy": "best"}, "select_strategy='best'"),
        ({"selectors": ["adg", "magic"]}, "unknown ['magic']"),
        ({"gpu_accelerator_type": " "}, "gpu_accelerator_type"),
        ({"checkpoint_uri": "/tmp/ckpt"}, "checkpoint_uri"),
        ({"ingest_pool_prefix": "pools/"}, "must be an s3:// URI"),
    ],
)
def test_inconsistent_parameters_are_named(change, message):
    problems = check_parameters({**GOOD, "ingest_input": "pool.jsonl", **change})
    assert any(message in p for p in problems), problems


def test_consistent_parameters_pass_and_a_pool_is_required():
    assert check_parameters({**GOOD, "ingest_input": "pool.jsonl"}) == []
    assert check_parameters(GOOD) == [
        "ingest_input or ingest_pool_prefix: give a pool or a pool prefix"
    ]


def test_every_problem_on_one_line(tmp_path):
    params = {**GOOD, "ingest_input": str(tmp_path / "none.jsonl"), "shard_count": 0}
    with pytest.raises(PreflightError) as err:
        run_preflight({**params, "score_gpu_count": "-1"})
    text = str(err.value)
    assert "\n" not in text and "shard_count=0" in text and "score_gpu_count='-1'" in text
    with pytest.raises(PreflightError, match="no such file"):
        run_preflight({**GOOD, "ingest_input": str(tmp_path / "none.jsonl")})


def test_object_store_checks(bucket, tmp_path):
    pool = f"s3://{bucket}/pools/a.jsonl"
    storage.upload(write_jsonl(tmp_path / "a.jsonl", sample_records(3)), pool)
    storage.write_bytes(f"s3://{bucket}/models/m/config.json", b"{}")
    ok = {
        **GOOD,
        "ingest_input": pool,
        "model": f"s3://{bucket}/models/m",
        "export_uri": f"s3://{bucket}/exports/x",
        "checkpoint_uri": f"s3://{bucket}/ckpt",
    }
    report = run_preflight(ok, run_id="run-1")
    assert report["ok"] and report["checkpoint_uri"] == f"s3://{bucket}/ckpt"
    # A folder of pool files (an s3:// URI ending in "/") is an input too.
    assert run_preflight({**ok, "ingest_input": f"s3://{bucket}/pools/"}, run_id="run-1")["ok"]
    # The write probes cleaned up after themselves.
    assert [o.key for o in storage.list_objects(f"s3://{bucket}/")] == [
        "models/m/config.json",
        "pools/a.jsonl",
    ]

    cases = [
        ({"ingest_input": f"s3://{bucket}/pools/missing.jsonl"}, "no such object"),
        ({"ingest_input": f"s3://{bucket}/empty/"}, "nothing under this prefix"),
        ({"model": f"s3://{bucket}/models/none"}, "model: model not found"),
        ({"export_uri": "s3://adg-no-such-bucket-x/exports"}, "bucket adg-no-such-bucket-x"),
        ({"ingest_pool_prefix": "s3://adg-no-such-bucket-y/p/"}, "no such bucket"),
    ]
    for change, message in cases:
        with pytest.raises(PreflightError, match=message.replace("(", r"\(")):
            run_preflight({**ok, **change}, run_id="run-1")

    storage.write_bytes(f"s3://{bucket}/adg/ledger.json", b"[1, 2]")
    with pytest.raises(PreflightError, match="not an ADG ledger"):
        run_preflight({**ok, "ingest_ledger_uri": f"s3://{bucket}/adg/ledger.json"})


def test_checkpoints_default_under_the_pipeline_root(bucket):
    root = f"s3://{bucket}/v2/artifacts/adg-selection"
    artifact = f"{root}/run-42/preflight/1234/report"
    assert default_checkpoint_uri(artifact, "run-42") == f"{root}/checkpoints"
    assert default_checkpoint_uri("/tmp/local/run/preflight/report", "run-42") == ""
    minio = "minio://mlpipeline/v2/artifacts/p/run-1/preflight/1/report"
    assert default_checkpoint_uri(minio, "run-1") == "s3://mlpipeline/v2/artifacts/p/checkpoints"

    params = {**GOOD, "ingest_input": f"s3://{bucket}/p.jsonl"}
    storage.write_bytes(params["ingest_input"], b"{}\n")
    report = run_preflight(params, artifact_uri=artifact, run_id="run-42")
    assert report["checkpoint_uri"] == f"{root}/checkpoints"
    off = run_preflight({**params, "checkpoint_uri": "none"}, artifact_uri=artifact)
    assert off["checkpoint_uri"] == ""
    # A root these credentials cannot write (here: no such bucket) means no checkpoints, not
    # a failed run: checkpoints are a default, not a requirement.
    elsewhere = "s3://adg-no-such-root/v2/artifacts/p/run-42/preflight/1/report"
    assert run_preflight(params, elsewhere, "run-42")["checkpoint_uri"] == ""


def component_inputs(**given) -> dict:
    """The preflight component's inputs: numbers and flags in `parameters`, every string (and
    the selector, tolerations) as its own input, at the pipeline's defaults unless given."""
    import inspect

    from adg.planning.pods import pod_parameters
    from adg_kfp.components.preflight import preflight

    names = set(inspect.signature(preflight.python_func).parameters) - {"report", "parameters"}
    defaults = {**pod_parameters(), "gpu_accelerator_type": "nvidia.com/gpu"}
    defaults |= {"storage_secret": "adg-object-store", "model_cache_pvc": "adg-model-cache"}
    defaults |= {"generate_backend": "auto", "generate_prompt_format": "auto"}
    defaults |= {"select_strategy": "exact", "evaluate_backend": "auto", "run_id": "r"}
    defaults |= {"selectors": ["adg"], "gpu_node_selector": {}, "gpu_tolerations": []}
    inputs = {name: defaults.get(name, "") for name in names} | {
        k: v for k, v in given.items() if k in names
    }
    numbers = {k: v for k, v in {**GOOD, **given}.items() if k not in names}
    return {"parameters": numbers, **inputs}


@pytest.mark.kfp_local
def test_component_fails_with_one_line(tmp_path, capfd):
    from kfp import local

    from adg_kfp.components.preflight import preflight

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=False,
    )
    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(2))
    good = preflight(**component_inputs(ingest_input=str(pool), embed_gpu_count="0"))
    assert good.outputs["checkpoint_uri"] == ""  # a local pipeline root: no remote checkpoints
    # GPU count "0": the stage on CPU, no accelerator count, selector or tolerations.
    assert good.outputs["embed_gpus"] == "" and good.outputs["score_gpus"] == "1"
    report = json.loads(open(good.outputs["report"].path).read())
    assert report["ok"] is True
    capfd.readouterr()
    bad = preflight(**component_inputs(ingest_input=str(pool), shard_count=0, model='m"x'))
    out = capfd.readouterr()
    line = next(x for x in (out.out + out.err).splitlines() if "preflight:" in x)
    assert "shard_count=0: must be at least 1" in line and "model='m\"x': contains a quote" in line
    assert bad.outputs.get("checkpoint_uri") is None


def test_route_after_ingest_refuses_a_budget_larger_than_the_pool():
    assert route_after_ingest(0, 0, 10, "") == "none"
    assert route_after_ingest(2, 10, 10, "") == "batch"
    # Over a curation index the budget counts the whole index: the curation plan checks it.
    assert route_after_ingest(1, 3, 10, "s3://index/adg") == "curate"
    with pytest.raises(
        PreflightError, match="select_budget 11 is larger than the pool: ingest kept 10"
    ):
        route_after_ingest(1, 10, 11, "")


@pytest.mark.kfp_local
def test_budget_over_the_valid_records_fails_before_any_gpu_task(tmp_path, tiny_model_dir, capfd):
    """6 records, 2 of them invalid, budget 5: the run stops right after ingest, on CPU; no
    generate, embed or score task starts."""
    records = sample_records(6)
    records[1]["instruction"] = ""
    records[4]["output"] = 7  # not a string
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    ran = failed_local_run(
        tmp_path / "root",
        ingest_input=str(pool),
        model=str(tiny_model_dir),
        select_budget=5,
        cluster_count=2,
    )
    out = capfd.readouterr()
    assert "select_budget 5 is larger than the pool: ingest kept 4 valid record(s)" in (
        out.out + out.err
    )
    assert {"preflight", "ingest"} <= ran
    assert not ran & {"shard", "generate", "embed", "score", "cluster", "select"}
