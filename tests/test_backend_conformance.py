"""Both compiled pipelines parse strictly with the KFP backend's own spec definitions: those of the
oldest backend we claim (`remote.MIN_BACKEND_VERSION`, installed here with pip at test time,
cached under .venv/kfp-specs/) and the newest this environment resolves; the release before the
minimum refuses them, which is why it is the minimum. README.md and docs/kubernetes.md name the
same floor as `adg submit`'s check.

A backend's API server drops a platform spec it cannot parse, whole and without a word: the run
then has no Secrets, no model cache, no node selectors and no tolerations
(tests/kfp_spec_parse.py says where in the backend)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adg_kfp.pipelines import remote

REPO = Path(__file__).resolve().parents[1]
COMPILED = [REPO / "pipelines" / "adg_pipeline.yaml", REPO / "pipelines" / "adg_select.yaml"]
PARSER = Path(__file__).with_name("kfp_spec_parse.py")
CACHE = Path(os.environ.get("ADG_KFP_SPECS", REPO / ".venv" / "kfp-specs"))
MINIMUM = ".".join(map(str, remote.MIN_BACKEND_VERSION))
# The release before the minimum: its PipelineConfig has no active_deadline_seconds.
BEFORE_MINIMUM = "2.16.1"
DISTRIBUTIONS = ("kfp-pipeline-spec", "kfp-kubernetes")

pytestmark = pytest.mark.subprocess


def definitions(version: str) -> Path:
    """A folder with kfp-pipeline-spec and kfp-kubernetes of `version` (pip, cached)."""
    target = CACHE / version
    if not (target / "kfp" / "kubernetes" / "kubernetes_executor_config_pb2.py").is_file():
        partial = CACHE / f".{version}.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        pins = [f"{name}=={version}" for name in DISTRIBUTIONS]
        pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "--no-deps", "--target", str(partial), *pins], check=True)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target


def installed_definitions() -> Path:
    """This environment's own (the newest `pip install kfp` resolves): its site-packages."""
    import kfp.pipeline_spec

    return Path(kfp.pipeline_spec.__file__).resolve().parents[2]


def parse(defs: Path) -> dict:
    out = subprocess.run(
        [sys.executable, str(PARSER), str(defs), *map(str, COMPILED)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def test_the_minimum_backends_definitions_accept_both_pipelines():
    result = parse(definitions(MINIMUM))
    assert {result["versions"][d] for d in DISTRIBUTIONS} == {MINIMUM}
    assert result["errors"] == []


def test_the_newest_definitions_accept_both_pipelines():
    result = parse(installed_definitions())
    versions = {remote.parse_version(result["versions"][d]) for d in DISTRIBUTIONS}
    assert min(versions) >= remote.MIN_BACKEND_VERSION
    assert result["errors"] == []


def test_the_release_before_the_minimum_refuses_the_run_deadline():
    """2.16's definitions have no PipelineConfig.active_deadline_seconds: its API server would
    drop the whole platform spec. Without the deadline the floor could be lowered (to 2.15, for
    SecretAsEnv.optional)."""
    result = parse(definitions(BEFORE_MINIMUM))
    assert result["errors"]
    assert all("activeDeadlineSeconds" in e and "platform spec" in e for e in result["errors"])


def test_readme_docs_and_submit_name_the_same_floor():
    major_minor = ".".join(map(str, remote.MIN_BACKEND_VERSION[:2]))
    claims = re.compile(r"(?:KFP|backend)\W+(?:\*\*)?(2\.\d+)(?:\+| or newer)", re.IGNORECASE)
    for path in (REPO / "README.md", REPO / "docs" / "kubernetes.md"):
        found = set(claims.findall(path.read_text()))
        assert found == {major_minor}, f"{path.name} names {found}, adg submit {major_minor}"
    pins = re.findall(r'"kfp(?:-kubernetes)?>=(2\.\d+)', (REPO / "pyproject.toml").read_text())
    assert pins == [major_minor, major_minor]
