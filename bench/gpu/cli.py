"""The command line (`python -m bench.gpu`): its flags, the run's plan carried out part by part
under the time guard (`PARTS`: each part's name and the function that measures it), the summary and
the table at the end; `--fetch-wheels` and `--write-factors` hand off to their modules.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import gpu as package
from bench.gpu import device, diagnose, embed_score, evaluate, generate, models, train
from bench.gpu.factors import write_factors
from bench.gpu.report import summary, table
from bench.gpu.run import Run
from bench.gpu.settings import REPO, SHAPES
from bench.gpu.wheels import fetch_wheels

log = logging.getLogger(__name__)

# Each part of a shape's plan (settings.SHAPE_PARTS, LATE_PARTS) and what runs it, given the run
# and the shape; a part returns a string to say why it was skipped.
PARTS: dict[str, Callable[[Run, str], Any]] = {
    "build": models.build,
    "generate": generate.generate,
    "embed_score": embed_score.embed_score,
    "diagnose": diagnose.diagnose,
    "static_cache": generate.static_cache,
    "free": models.free,
    "train": train.train,
    "evaluate": evaluate.evaluate,
    "train_zero2": train.train_zero2,
    "compiled": lambda run, shape: generate.static_cache(run, shape, compiled=True),
    "vllm": generate.vllm,
}


def execute(run: Run) -> None:
    """The env part, then the plan's parts in order; the summary, the JSON and the table."""
    run.part("env", 0, lambda: device.env(run))  # always: the ceilings every other part divides by
    if "device" not in run.results:
        raise SystemExit("bench/gpu: the env part failed; see the log")
    for name in run.plan:
        shape, part = name.split(".")
        run.part(name, run.estimate(name), lambda fn=PARTS[part], s=shape: fn(run, s))
    run.results["summary"] = summary(run.results)
    run.save()
    for line in table(run.results):
        log.info("%s", line)
    log.info("results: %s", run.output)


def default_output() -> str:
    out = os.environ.get("OUT")
    if out:
        return str(Path(out) / "gpu.json")
    return str(REPO / "runs" / f"gpu-{time.strftime('%Y%m%d-%H%M%S')}.json")


def main(argv: list[str] | None = None) -> int:
    # The usage line keeps the name it had when the benchmark was one file (bench/gpu.py).
    ap = argparse.ArgumentParser(prog="gpu.py", description=package.__doc__.splitlines()[0])
    ap.add_argument("--output", default="", help="results JSON (default $OUT/gpu.json or runs/)")
    ap.add_argument("--workdir", default="", help="scratch files (default: a temporary folder)")
    ap.add_argument("--budget-s", type=float, default=0, help="seconds (default 450; dry run 300)")
    ap.add_argument("--shapes", default="llama3-8b,smollm2-135m")
    ap.add_argument("--skip", default="", help="parts to leave out, e.g. compiled,train_zero2")
    ap.add_argument("--dry-run", action="store_true", help="same code on CPU, tiny models")
    ap.add_argument("--quick", action="store_true", help="with --dry-run: smaller still (tests)")
    ap.add_argument("--fetch-wheels", metavar="DIR", help="download/build the carried wheels")
    ap.add_argument("--write-factors", metavar="RESULTS", help="adg plan's factors from a result")
    ap.add_argument("--factors-file", default=str(REPO / "data" / "gpu_factors.json"))
    args = ap.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
        )
    logging.getLogger("bench.gpu").setLevel(logging.INFO)
    if args.fetch_wheels:
        fetch_wheels(Path(args.fetch_wheels))
        return 0
    if args.write_factors:
        write_factors(Path(args.write_factors), Path(args.factors_file))
        return 0
    if args.quick and not args.dry_run:
        ap.error("--quick only shrinks a --dry-run")
    args.output = args.output or default_output()
    # A dry run takes 1-2 minutes; its budget only keeps a loaded CI machine from skipping parts.
    args.budget_s = args.budget_s or (300 if args.dry_run else 450)
    args.shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shape(s) {unknown}; choose from {list(SHAPES)}")
    args.skip = {s: "--skip" for s in args.skip.split(",") if s}
    if args.quick:  # lm-eval's task index alone takes ~20 s of CPU; the plain --dry-run runs it
        args.skip.setdefault("evaluate", "--quick leaves lm-eval out (--dry-run runs it)")
    os.environ.setdefault("ADG_PROGRESS", "0")
    # The trainer's torchrun workers import adg too: from src/ when it is not installed.
    src = str(REPO / "src")
    if src in sys.path:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [src, os.environ.get("PYTHONPATH")])
        )
    command = "python -m bench.gpu" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    import torch

    threads = torch.get_num_threads()
    if args.dry_run:  # tiny matrices: one thread, which a busy machine does not stall
        torch.set_num_threads(1)
    try:
        execute(Run(args, command))
    finally:
        torch.set_num_threads(threads)
    return 0
