"""Carrying wheels to the lent GPU: the packages it lacks (pinned by the eval and train image
locks), downloaded as binary wheels for its Python and platform or built here into pure-Python
wheels (`python -m bench.gpu --fetch-wheels DIR`; the package docstring has the device call).
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

from bench.gpu.settings import REPO

log = logging.getLogger(__name__)

CARRY_HINT = "carry its wheels (python -m bench.gpu --fetch-wheels .whl; see the docstring)"


# What the lent GPU lacks (its package list: the device guide's KINDS.md), by lock file.
CARRIED_BINARY = {
    "images/eval/requirements.txt": [
        "pydantic",
        "pydantic-core",
        "annotated-types",
        "typing-inspection",
        "lm-eval",
        "datasets",
        "evaluate",
        "dill",
        "multiprocess",
        "pytablewriter",
        "dataproperty",
        "mbstrdecoder",
        "pathvalidate",
        "tabledata",
        "tcolorpy",
        "typepy",
        "chardet",
        "nltk",
        "more-itertools",
    ],
    "images/train/requirements.txt": ["hjson"],
}
CARRIED_SOURCE = {  # published as sources only: built here into pure-Python wheels
    "images/eval/requirements.txt": ["rouge-score", "sqlitedict", "word2number"],
    "images/train/requirements.txt": ["deepspeed"],
}
DEVICE_PLATFORM = [
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux_2_27_x86_64",
    "--platform",
    "manylinux_2_17_x86_64",
    "--platform",
    "manylinux2014_x86_64",
    "--platform",
    "manylinux1_x86_64",
]


def locked(lock: str, names: list[str]) -> list[str]:
    pins = {}
    for line in (REPO / lock).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"{lock}: no pin for {', '.join(missing)}")
    return [f"{n}=={pins[n]}" for n in names]


def fetch_wheels(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    binary = [spec for lock, names in CARRIED_BINARY.items() for spec in locked(lock, names)]
    source = [spec for lock, names in CARRIED_SOURCE.items() for spec in locked(lock, names)]
    pip = [sys.executable, "-m", "pip"]
    download = [
        *pip,
        "download",
        "--no-deps",
        "--only-binary=:all:",
        *DEVICE_PLATFORM,
        "-d",
        str(folder),
    ]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(folder)]
    for cmd in ([*download, *binary], [*build, *source]):
        log.info("%s", " ".join(cmd))
        subprocess.run(cmd, check=True)
    size = sum(f.stat().st_size for f in folder.glob("*.whl"))
    log.info("%d wheels, %.1f MiB in %s", len(list(folder.glob("*.whl"))), size / 2**20, folder)
