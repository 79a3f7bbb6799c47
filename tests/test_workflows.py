"""GitHub workflows for users: valid YAML (and valid workflows, by the GitHub workflow schema that
check-jsonschema vendors), CI runs lint, tests and the compiled-pipeline check, every image family
is built, and nothing is pushed or released from a pull request.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adg_kfp.components.images import STAGE_FAMILY

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
FAMILIES = sorted(set(STAGE_FAMILY.values()))
NOT_ON_PR = "github.event_name != 'pull_request'"


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def run_text(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in steps(job))


def step_using(job: dict, action: str) -> dict:
    found = [s for s in steps(job) if s.get("uses", "").startswith(action + "@")]
    assert len(found) == 1, f"expected one step using {action}"
    return found[0]


@pytest.fixture(scope="module")
def ci() -> dict:
    return load("ci.yml")


@pytest.fixture(scope="module")
def images() -> dict:
    return load("images.yml")


def test_workflows_are_valid_yaml_and_pin_their_actions():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["ci.yml", "images.yml"]
    for path in files:
        doc = load(path.name)
        assert doc["name"] and doc["on"] and doc["jobs"], path.name
        for job in doc["jobs"].values():
            assert job["runs-on"]
            for step in steps(job):
                assert ("uses" in step) != ("run" in step), step
                if "uses" in step:
                    assert re.fullmatch(r"[\w.\-]+/[\w.\-]+@v\d+", step["uses"]), step["uses"]
        text = path.read_text()
        secrets = set(re.findall(r"secrets\.(\w+)", text))
        assert secrets <= {"GITHUB_TOKEN"}, f"{path.name} needs no secret but the job token"


@pytest.mark.subprocess
def test_workflows_match_the_github_workflow_schema():
    tool = Path(sys.executable).parent / "check-jsonschema"
    path = str(tool) if tool.is_file() else shutil.which("check-jsonschema")
    if path is None:
        pytest.skip("check-jsonschema not installed (dev extra)")
    files = [str(p) for p in sorted(WORKFLOWS.glob("*.yml"))]
    result = subprocess.run(
        [path, "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_lints_tests_and_checks_the_compiled_pipeline(ci):
    assert "pull_request" in ci["on"] and ci["on"]["push"]["branches"] == ["main"]
    commands = "\n".join(run_text(job) for job in ci["jobs"].values())
    for target in (
        "make lint",
        "make test",
        "make check-compiled",
        "make images-test FAMILIES=cpu",
    ):
        assert target in commands
    assert ci["permissions"] == {"contents": "read"}
    # The CPU build of torch, as the Makefile installs it locally.
    assert ci["env"]["TORCH_SPEC"].endswith("+cpu")


def test_ci_caches_the_locked_vllm_wheel_by_its_lock(ci):
    """tests/test_vllm_api.py reads the generate image's locked vLLM from its wheel: cached per
    lock, so a new lock downloads the new version and checks the sampler against it."""
    caches = [
        s["with"]
        for s in steps(ci["jobs"]["test"])
        if s.get("uses", "").startswith("actions/cache@") and "adg-wheels" in s["with"]["path"]
    ]
    assert len(caches) == 1
    assert "hashFiles('images/generate/requirements.txt')" in caches[0]["key"]


def test_every_image_family_is_built(images):
    build = images["jobs"]["build"]
    assert sorted(build["strategy"]["matrix"]["family"]) == FAMILIES
    action = step_using(build, "docker/build-push-action")["with"]
    assert action["context"] == "."
    assert action["file"] == "images/${{ matrix.family }}/Dockerfile"
    assert action["cache-from"].startswith("type=gha") and action["cache-to"].startswith("type=gha")
    step_using(build, "docker/setup-buildx-action")
    # Pull requests touching the package or the images get a build.
    assert {"images/**", "src/**", "pyproject.toml"} <= set(images["on"]["pull_request"]["paths"])
    assert images["on"]["push"]["branches"] == ["main"] and images["on"]["push"]["tags"]


def test_pushes_only_outside_pull_requests(images):
    build = images["jobs"]["build"]
    action = step_using(build, "docker/build-push-action")["with"]
    assert action["push"] == "${{ " + NOT_ON_PR + " }}"
    assert step_using(build, "docker/login-action")["if"] == NOT_ON_PR
    assert images["permissions"] == {"contents": "read"}, "write access only where a job needs it"
    for name, job in images["jobs"].items():
        writes = {k for k, v in job.get("permissions", {}).items() if v == "write"}
        if name == "build":
            assert writes == {"packages"}  # used only by the login and push steps above
        elif writes:  # the job's condition is NOT_ON_PR, or NOT_ON_PR and-ed with others
            condition = job.get("if", "")
            ands = [c.strip() for c in condition.split("&&")]
            assert NOT_ON_PR in ands and "||" not in condition, f"job {name} could write from a PR"


def test_tags_are_ghcr_owner_family_sha_and_the_git_tag(images):
    build = images["jobs"]["build"]
    naming = run_text(build)
    assert "ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/adg-${{ matrix.family }}" in naming
    tags = step_using(build, "docker/metadata-action")["with"]["tags"].split()
    assert "type=sha,format=long,prefix=" in tags and "type=ref,event=tag" in tags
    # Tag v0.1.0 also pushes :0.1.0, the tag images/images.env (the committed YAML) refers to.
    assert "type=semver,pattern={{version}}" in tags


def test_release_compiles_the_pipeline_with_the_pushed_images(images):
    job = images["jobs"]["pipeline"]
    # After the build, and after images-test where it ran (tags): skipped is not failed.
    assert job["needs"] == ["build", "images-test"]
    assert NOT_ON_PR in job["if"] and "needs.images-test.result != 'failure'" in job["if"]
    assert "needs.build.result == 'success'" in job["if"]
    commands = run_text(job)
    compile_line = next(ln for ln in commands.splitlines() if "make compile" in ln)
    # Same registry path and tag as the build job pushed.
    assert 'REGISTRY="ghcr.io/${GITHUB_REPOSITORY_OWNER,,}"' in compile_line
    assert 'TAG="${GITHUB_SHA}"' in compile_line
    # `make compile REGISTRY=...` reads the digests from GHCR with the workflow's token.
    compile_step = next(s for s in steps(job) if "make compile" in s.get("run", ""))
    assert compile_step["env"]["REGISTRY_PASSWORD"] == "${{ secrets.GITHUB_TOKEN }}"
    attach = [s for s in steps(job) if "gh release upload" in s.get("run", "")]
    assert len(attach) == 1 and attach[0]["if"] == "startsWith(github.ref, 'refs/tags/')"
    assert "adg_select-" in attach[0]["run"] and "adg_pipeline-" in attach[0]["run"]
    assert job["permissions"] == {"contents": "write", "packages": "read"}


def test_a_release_runs_images_test_on_every_family(images):
    job = images["jobs"]["images-test"]
    assert sorted(job["strategy"]["matrix"]["family"]) == FAMILIES
    assert "refs/tags/" in job["if"] and "workflow_dispatch" in job["if"]
    assert 'make images-test FAMILIES="${{ matrix.family }}"' in run_text(job)
    assert not job.get("permissions"), "it pushes to its own loopback registry, not GHCR"
