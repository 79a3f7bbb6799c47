"""Building the pipelines' graphs with and without the cheap caller names of kfp's task setters
(adg_kfp.pipelines.setter_caller), side by side in fresh processes.

Each run is a new interpreter that imports kfp (and torch, with `--with-torch`, as every test
process and `adg run` have it loaded), then imports the select pipeline, which builds both
graphs. `real` puts kfp's own `inspect` back before the graphs are built; `cheap` keeps the
stand-in that placement installs. The two are alternated, and each's median, fastest and slowest
are printed with the ratio. `--compile` also times `adg compile --pipeline full` end to end (the
command a user runs).

    python -m bench.compile --repeat 5 --with-torch
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("bench.compile")

BUILD = """
import inspect, time
{torch}
import kfp.dsl
from kfp.dsl import pipeline_task
import adg_kfp.pipelines.placement
if {real}:
    pipeline_task.inspect = inspect
start = time.perf_counter()
import adg_kfp.pipelines.select_pipeline
print(time.perf_counter() - start)
"""


def build_seconds(real: bool, with_torch: bool) -> float:
    code = BUILD.format(real=real, torch="import torch" if with_torch else "")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def compile_seconds() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "adg.cli",
                "compile",
                "--pipeline",
                "full",
                "--output",
                str(Path(tmp) / "p.yaml"),
            ],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start


def line(name: str, times: list[float]) -> str:
    return (
        f"{name:<6} median {statistics.median(times):6.2f} s  "
        f"fastest {min(times):6.2f} s  slowest {max(times):6.2f} s"
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per variant")
    parser.add_argument("--with-torch", action="store_true", help="torch loaded first")
    parser.add_argument("--compile", action="store_true", help="also time `adg compile`")
    a = parser.parse_args()
    build_seconds(False, a.with_torch)  # warm the file cache; not counted
    times: dict[str, list[float]] = {"real": [], "cheap": []}
    for _ in range(a.repeat):
        for name in times:
            times[name].append(build_seconds(name == "real", a.with_torch))
    for name, t in times.items():
        log.info(line(name, t))
    ratio = statistics.median(times["real"]) / statistics.median(times["cheap"])
    log.info("building both graphs%s: %.1fx faster", " (torch loaded)" * a.with_torch, ratio)
    if a.compile:
        log.info(line("adg compile", [compile_seconds() for _ in range(a.repeat)]))


if __name__ == "__main__":
    main()
