"""Building the pipelines' graphs with and without the cheap caller names of kfp's task setters
(adg_kfp.pipelines.setter_caller), side by side in fresh processes.

Each run is a new interpreter that imports kfp (and torch, with `--with-torch`, as every test
process and `adg run` have it loaded), then imports the select pipeline, which builds both
graphs. `real` puts kfp's own `inspect` back before the graphs are built; `cheap` keeps the
stand-in that placement installs. The two are alternated, and each's median, fastest and slowest
are printed with the ratio. `--compile` also times `adg compile --pipeline full` end to end (the
command a user runs). `--load` times reading the committed package in one process (torch loaded,
as in a test process or `adg run`): PyYAML's pure-Python loader, libyaml's with the collector
running, and `remote.yaml_documents` (libyaml, collector paused), alternated.

    python -m bench.compile --repeat 5 --with-torch
    python -m bench.compile --repeat 5 --load
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


def load_times(repeat: int) -> dict[str, list[float]]:
    import torch  # noqa: F401  (a process as large as a test process)
    import yaml

    from adg_kfp.pipelines.remote import yaml_documents

    text = (Path(__file__).resolve().parents[1] / "pipelines" / "adg_pipeline.yaml").read_text()
    readers = {
        "pure-Python": lambda: list(yaml.safe_load_all(text)),
        "libyaml": lambda: list(yaml.load_all(text, Loader=yaml.CSafeLoader)),
        "paused-gc": lambda: yaml_documents(text),
    }
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(repeat):
        for name, read in readers.items():
            start = time.perf_counter()
            read()
            times[name].append(time.perf_counter() - start)
    return times


def line(name: str, times: list[float]) -> str:
    return (
        f"{name:<11} median {statistics.median(times):6.2f} s  "
        f"fastest {min(times):6.2f} s  slowest {max(times):6.2f} s"
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per variant")
    parser.add_argument("--with-torch", action="store_true", help="torch loaded first")
    parser.add_argument("--compile", action="store_true", help="also time `adg compile`")
    parser.add_argument("--load", action="store_true", help="time reading the package instead")
    a = parser.parse_args()
    if a.load:
        for name, t in load_times(a.repeat).items():
            log.info(line(name, t))
        return
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
