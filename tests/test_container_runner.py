"""`adg run --runner docker`: what each task container gets (mounts, model path, no network).

The containers themselves run in `make container-test` (images/container-test.sh), which needs
an engine; these checks need none: they build the runner and look at what it would mount.
"""

from __future__ import annotations

import json
import stat

import pytest
from helpers import sample_records, write_jsonl
from kfp.local import docker_task_handler

from adg.cli import main
from adg_kfp.pipelines.local import (
    IMAGE_ADG_HOME,
    LocalRunOptions,
    _docker_runner,
    resolve_image,
)


def test_docker_runner_mounts_the_model_cache_and_pool_read_only(tmp_path, monkeypatch):
    monkeypatch.setattr(docker_task_handler, "run_docker_container", lambda *a, **k: 0)
    home = tmp_path / "adg-home"
    model = home / "models" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    model.chmod(0o700)  # as a converted model folder is
    (model / "config.json").chmod(0o600)
    monkeypatch.setenv("ADG_HOME", str(home))
    (tmp_path / "data").mkdir()
    pool = write_jsonl(tmp_path / "data" / "pool.jsonl", sample_records(2))
    root = tmp_path / "out" / "kfp-local"

    runner, pool_in, model_in = _docker_runner(
        LocalRunOptions(input=str(pool)), root, str(pool), str(model)
    )

    assert model_in == f"{IMAGE_ADG_HOME}/models/m" and pool_in == "/mnt/adg-input/pool.jsonl"
    args = runner.container_run_args
    assert args["network_mode"] == "none"
    mounts = {m["Target"]: m for m in args["mounts"]}
    assert mounts[IMAGE_ADG_HOME]["Source"] == str(home) and mounts[IMAGE_ADG_HOME]["ReadOnly"]
    assert mounts["/mnt/adg-input"]["Source"] == str(pool.parent)
    assert mounts["/mnt/adg-input"]["ReadOnly"]
    # The image's user (not the caller) reads the model and writes the pipeline root.
    assert stat.S_IMODE(model.stat().st_mode) & 0o005 == 0o005
    assert stat.S_IMODE((model / "config.json").stat().st_mode) & 0o004
    assert stat.S_IMODE(root.stat().st_mode) == 0o777
    # Task containers are run by the replacement that waits for the exit status.
    assert docker_task_handler.run_docker_container.__name__ == "_run_container"


def test_docker_runner_mounts_a_model_outside_the_cache_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr(docker_task_handler, "run_docker_container", lambda *a, **k: 0)
    monkeypatch.setenv("ADG_HOME", str(tmp_path / "home"))
    gguf = tmp_path / "weights" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(2))
    runner, _, model_in = _docker_runner(
        LocalRunOptions(input=str(pool)), tmp_path / "root", str(pool), str(gguf)
    )
    assert model_in == "/mnt/adg-model/tiny.gguf"
    mount = next(m for m in runner.container_run_args["mounts"] if m["Target"] == model_in)
    assert mount["Source"] == str(gguf) and mount["ReadOnly"]


def test_docker_runner_refuses_an_s3_pool(tmp_path, capsys):
    code = main(
        [
            "run",
            "--runner",
            "docker",
            "--input",
            "s3://bucket/pool.jsonl",
            "--output-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--runner docker reads a local pool" in err


def test_an_image_given_at_run_time_is_resolved_from_the_executor_input():
    """An image given by a task output at run time: kfp.local passes the placeholder on as
    written, so the runner resolves it from the executor input as the KFP driver does."""
    placeholder = "{{$.inputs.parameters['pipelinechannel--baseline-placement-2-image']}}"
    executor_input = {
        "inputs": {
            "parameterValues": {
                "method": "random",
                "pipelinechannel--baseline-placement-2-image": "registry.test/adg-cpu:abc",
            }
        }
    }
    command = ["sh", "-c", "...", "--executor_input", json.dumps(executor_input), "--x", "y"]
    assert resolve_image(placeholder, command) == "registry.test/adg-cpu:abc"
    assert resolve_image("registry.test/adg-generate:abc", command) == (
        "registry.test/adg-generate:abc"
    )
    missing = "{{$.inputs.parameters['pipelinechannel--other-image']}}"
    with pytest.raises(RuntimeError, match="names an input it was not given"):
        resolve_image(missing, command)
