"""One benchmark run's shared state and its time guard: the settings it was started with, the plan
of parts, the objects the parts hand each other (tokenizer, model, generated file) and the results
JSON, rewritten after every part; `Run.part` runs one part, records its status and never lets one
part's failure lose the others.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.gpu.settings import (
    CPU_ESTIMATES,
    DRY_SHAPES,
    DRY_SIZES,
    GPU_ESTIMATES,
    GPU_SIZES,
    LATE_PARTS,
    OPTIONAL,
    PAPER_EXAMPLES_PER_S,
    PAPER_GPUS,
    QUICK_SIZES,
    SHAPE_PARTS,
    SHAPES,
)
from bench.gpu.timing import Budget, TimeUp, free_memory

log = logging.getLogger(__name__)


class Run:
    """Shared state of one benchmark run: settings, ceilings, per-shape objects and the results."""

    def __init__(self, args: argparse.Namespace, command: str):
        import torch

        self.args = args
        self.dry = args.dry_run
        self.device = "cuda" if torch.cuda.is_available() and not self.dry else "cpu"
        if not self.dry and self.device != "cuda":
            raise SystemExit("bench/gpu: no CUDA GPU; use --dry-run to run the same code on CPU")
        self.sizes = QUICK_SIZES if args.quick else DRY_SIZES if self.dry else GPU_SIZES
        self.shapes = DRY_SHAPES if self.dry else SHAPES
        self.budget = Budget(args.budget_s)
        self.output = Path(args.output)
        # Scratch (pools, answers, model folders: hundreds of MB) never beside the output: on the
        # lent machine everything under $OUT is sent back.
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="adg-bench-gpu-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.objects: dict[str, dict[str, Any]] = {}
        self.plan = [f"{shape}.{part}" for shape in args.shapes for part in SHAPE_PARTS[shape]]
        self.plan += [n for n in LATE_PARTS if n.split(".")[0] in args.shapes]
        self.results: dict[str, Any] = {
            "schema": 1,
            "script": "bench/gpu",
            "command": command,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "dry_run": self.dry,
            "quick": bool(args.quick),
            "budget_s": args.budget_s,
            "workdir": str(self.work),
            "paper": {
                "examples_per_s": PAPER_EXAMPLES_PER_S,
                "gpus": PAPER_GPUS,
                "examples_per_s_per_gpu": PAPER_EXAMPLES_PER_S / PAPER_GPUS,
                "note": "ADG's selection cost in the paper: 8B backbones, vLLM generation",
            },
            "notes": [
                "HF transformers generate was measured; the cluster's vLLM path was not (its "
                "wheels cannot travel to the lent machine): these generate numbers are a floor.",
                "Random weights: answers are forced to max_new_tokens (min_new_tokens); scores "
                "are meaningless, costs are those of the shape.",
                "Model loading and pod start are not counted in any stage time.",
            ],
            "parts": [],
            "shapes": {},
        }

    def save(self) -> None:
        self.results["elapsed_s"] = round(self.budget.used(), 1)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.output.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.output)

    def estimate(self, name: str) -> float:
        if self.dry:
            return CPU_ESTIMATES.get(name.split(".")[-1], 3)
        return GPU_ESTIMATES[name]

    def part(self, name: str, estimate: float, fn: Callable[[], Any]) -> bool:
        """Run one part under the time guard; record its status; rewrite the JSON."""
        entry: dict[str, Any] = {"name": name, "estimate_s": estimate}
        self.results["parts"].append(entry)
        skip = self.args.skip.get(name) or self.args.skip.get(name.split(".")[-1])
        if skip:
            entry.update(status="skipped", reason=skip)
        elif self.budget.left() < estimate:
            entry.update(
                status="skipped",
                reason=f"time: {self.budget.left():.0f} s left, needs ~{estimate:.0f} s",
            )
        else:
            log.info("== %s (budget left %.0f s)", name, self.budget.left())
            t = time.monotonic()
            try:
                with self.budget.alarm():
                    reason = fn()
                entry["status"] = "skipped" if isinstance(reason, str) else "ok"
                if isinstance(reason, str):
                    entry["reason"] = reason
            except TimeUp as err:
                entry.update(status="interrupted", reason=str(err))
            except Exception as err:  # one part failing must not lose the others
                entry.update(status="failed", error=f"{type(err).__name__}: {err}"[:2000])
                log.error("%s failed:\n%s", name, traceback.format_exc())
            free_memory()  # after the handler, whose traceback held the part's tensors
            entry["seconds"] = round(time.monotonic() - t, 2)
        if entry["status"] != "ok":
            log.info(
                "   %s: %s %s", name, entry["status"], entry.get("reason") or entry.get("error")
            )
        self.save()
        return entry["status"] == "ok"

    def shape_results(self, shape: str) -> dict[str, Any]:
        return self.results["shapes"].setdefault(shape, {})

    def need(self, shape: str, key: str, part: str) -> Any:
        obj = self.objects.get(shape, {}).get(key)
        if obj is None:
            raise RuntimeError(f"{shape}: needs {part}, which did not run")
        return obj

    def reserve_after(self, name: str) -> float:
        """Estimated seconds of the parts after `name` that are not optional: what a sweep must
        leave them."""
        later = self.plan[self.plan.index(name) + 1 :]
        return sum(self.estimate(n) for n in later if n not in OPTIONAL)
