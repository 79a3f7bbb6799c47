"""The `evaluate` part (135M shape): one lm-eval run through `adg.stages.evaluate.evaluate` of
the two local tasks the repository ships (tests/lm_eval_tasks), on the trained model, where
lm-eval is importable.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from bench.gpu.models import save_model
from bench.gpu.run import Run
from bench.gpu.settings import EVAL_TASKS, EVAL_TASKS_DIR
from bench.gpu.timing import peak_memory, timed
from bench.gpu.wheels import CARRY_HINT


def evaluate(run: Run, shape: str) -> str | None:
    """lm-eval's local tasks on the trained model (the built one when train did not run)."""
    from adg.stages import evaluate as evaluation

    if importlib.util.find_spec("lm_eval") is None:
        return f"lm-eval is not installed: {CARRY_HINT}"
    model = run.objects.get(shape, {}).get("trained") or save_model(run, shape)
    cfg = evaluation.EvalConfig(
        model=str(model),
        tasks=list(EVAL_TASKS),
        num_fewshot=2,
        limit=run.sizes.eval_limit,
        include_path=[str(EVAL_TASKS_DIR)],
        backend="hf",
        batch_size=run.sizes.eval_batch_size,
    )
    entry: dict[str, Any] = {"model": str(model), "tasks": EVAL_TASKS, "limit": cfg.limit}
    with peak_memory(entry):
        results, seconds = timed(lambda: evaluation.evaluate(cfg))
    entry["seconds"] = round(seconds, 2)
    entry["metrics"] = evaluation.flatten(results)
    entry["samples"] = {t: (results.get("n-samples") or {}).get(t) for t in EVAL_TASKS}
    run.shape_results(shape)["evaluate"] = entry
    return None
