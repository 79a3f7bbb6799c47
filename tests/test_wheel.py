"""The package works outside a checkout: `pip install .` into a fresh virtual environment, then
`adg compile` and `adg run --help` from another folder. The dependencies are not reinstalled
(this environment's site-packages are visible to the new one through a .pth file), but `adg` and
`adg_kfp` come from the built wheel alone."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "pipelines" / "adg_pipeline.yaml"

pytestmark = pytest.mark.subprocess


def run(*cmd, cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel of this checkout installed; returns its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    env = root / "venv"
    venv.create(env, with_pip=False)
    bin_dir = env / "bin"
    py = bin_dir / "python"
    site = Path(
        run(
            str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=root
        ).strip()
    )
    # Dependencies (torch, kfp, ...) from this environment; the editable `adg` here is not seen,
    # since a path in a .pth file does not run that folder's own .pth hooks.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(py),
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        str(REPO),
        cwd=root,
    )
    return bin_dir


def test_the_wheel_has_what_the_cli_needs(installed, tmp_path):
    code = (
        "import adg.cli, adg_kfp.pipelines.adg_pipeline as p, adg_kfp.components.images as i; "
        "print(adg.cli.__file__); print(p.__file__); print(i.IMAGES_ENV); "
        "print(adg.cli.kfp.default_pool())"
    )
    lines = run(str(installed / "python"), "-c", code, cwd=tmp_path).split()
    assert all("site-packages" in line and str(REPO) not in line for line in lines), lines
    assert Path(lines[2]).is_file() and Path(lines[3]).is_file()
    # the report's templates are package data: the installed adg renders a page from them
    page = "from adg.reporting import render; print(render.page('t <x>', '<p>b</p>'))"
    out = run(str(installed / "python"), "-c", page, cwd=tmp_path)
    assert "<title>t &lt;x&gt;</title>" in out and "<p>b</p>" in out


def test_compile_and_run_help_from_another_folder(installed, tmp_path):
    out = tmp_path / "pipeline.yaml"
    run(str(installed / "adg"), "compile", "--output", str(out), cwd=tmp_path)
    # The same pipeline as the checkout compiles (images from the shipped images.env).
    assert out.read_text() == COMMITTED.read_text()
    usage = run(str(installed / "adg"), "run", "--help", cwd=tmp_path)
    assert "--input" in usage and "--temperature" in usage
