"""Benchmark evaluation with lm-evaluation-harness: raw results, flat metrics, a Markdown table.

`evaluate` runs `lm_eval.simple_evaluate` on a model folder with the published benchmark set by
default (BBH 3-shot CoT, GSM8K 8-shot, MMLU 4-shot, TruthfulQA-MC2 0-shot, MBPP 1-shot, HumanEval
0-shot), grouped into Reasoning / Knowledge / Coding and their Average as in the paper. The model is
loaded once (vLLM on a GPU when installed, else transformers; fp32 on CPU) and the tasks run in
groups of equal shot count, because lm-eval takes one `num_fewshot` per call. Code execution is
allowed (HF_ALLOW_CODE_EVAL, `confirm_run_unsafe_code`) only in the group of code tasks. Extra
task folders (lm-eval YAML tasks, `include_path`) let users evaluate on their own tasks offline.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adg.config import EvaluateConfig
from adg.errors import InputError


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the published set: its shots, headline metric and category."""

    label: str
    shots: int
    metric: str  # key in lm-eval's results: "metric,filter"
    category: str


# The published evaluation, keyed by lm-eval task name (`bbh` is the 3-shot chain-of-thought group).
BENCHMARKS: dict[str, Benchmark] = {
    "bbh": Benchmark("BBH", 3, "exact_match,get-answer", "Reasoning"),
    "gsm8k": Benchmark("GSM8K", 8, "exact_match,strict-match", "Reasoning"),
    "mmlu": Benchmark("MMLU", 4, "acc,none", "Knowledge"),
    "truthfulqa_mc2": Benchmark("TruthfulQA", 0, "acc,none", "Knowledge"),
    "mbpp": Benchmark("MBPP", 1, "pass_at_1,none", "Coding"),
    "humaneval": Benchmark("HumanEval", 0, "pass@1,create_test", "Coding"),
}
DEFAULT_TASKS = tuple(BENCHMARKS)
CATEGORIES = ("Reasoning", "Knowledge", "Coding")
# Tasks whose scoring executes generated code; only these get code execution switched on.
CODE_TASK_PREFIXES = ("mbpp", "humaneval")
BACKENDS = ("auto", "hf", "vllm")
# `batch_size="auto"` on a CPU (see build_lm).
CPU_BATCH_SIZE = 8
_NOT_METRICS = {"alias", "name", "sample_len", "sample_count", " "}


@dataclass
class EvalConfig:
    """What to evaluate and how; `num_fewshot` is None (the defaults), an int or {task: shots}."""

    model: str = ""
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    num_fewshot: int | dict[str, int] | None = None
    limit: float | None = None
    include_path: list[str] = field(default_factory=list)
    backend: str = EvaluateConfig.backend
    batch_size: int | str = EvaluateConfig.batch_size
    device: str = ""
    max_length: int = 0
    seed: int = 1234
    log_samples: bool = False
    gpu_memory_utilization: float = 0.85


def parse_tasks(text: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c']; empty -> the published benchmark set."""
    tasks = [t.strip() for t in (text or "").split(",") if t.strip()]
    return tasks or list(DEFAULT_TASKS)


def parse_fewshot(text: str) -> int | dict[str, int] | None:
    """'' -> None (defaults), '5' -> 5 for every task, 'gsm8k=8,bbh=3' -> per task."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if "=" not in text:
            return int(text)
        shots = {}
        for part in text.split(","):
            task, _, n = part.partition("=")
            shots[task.strip()] = int(n)
        return shots
    except ValueError:
        raise InputError(
            f"--num-fewshot {text!r}: expected N or task=N,task=N (N an integer)"
        ) from None


def parse_limit(value: float | str | None) -> float | None:
    """lm-eval's limit: None or 0 = all; >= 1 a count per task; < 1 a fraction."""
    if value in (None, ""):
        return None
    number = float(value)
    if number < 0:
        raise InputError(f"--limit must be >= 0, got {value}")
    if number == 0:
        return None
    return int(number) if number >= 1 and number.is_integer() else number


def shots_for(task: str, spec: int | dict[str, int] | None) -> int | None:
    """Shots for a task: the spec, else the published value, else None (the task's own)."""
    if isinstance(spec, int):
        return spec
    if isinstance(spec, dict) and task in spec:
        return spec[task]
    bench = BENCHMARKS.get(task)
    return bench.shots if bench else None


def is_code_task(task: str) -> bool:
    return task.startswith(CODE_TASK_PREFIXES)


def plan_runs(tasks: list[str], spec: int | dict[str, int] | None) -> list[tuple]:
    """Group tasks into lm-eval calls: [(shots, runs_code, [task, ...]), ...], first-seen order."""
    groups: dict[tuple, list[str]] = {}
    for task in tasks:
        groups.setdefault((shots_for(task, spec), is_code_task(task)), []).append(task)
    return [(shots, code, names) for (shots, code), names in groups.items()]


@contextlib.contextmanager
def code_execution(allowed: bool):
    """Set HF_ALLOW_CODE_EVAL=1 for the duration (only when allowed), then restore it."""
    if not allowed:
        yield
        return
    before = os.environ.get("HF_ALLOW_CODE_EVAL")
    os.environ["HF_ALLOW_CODE_EVAL"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_ALLOW_CODE_EVAL", None)
        else:
            os.environ["HF_ALLOW_CODE_EVAL"] = before


def resolve_backend(backend: str, device: str) -> str:
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    import importlib.util

    if device.startswith("cuda") and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "hf"


def build_lm(cfg: EvalConfig):
    """Load the model once as an lm-eval LM: HFLM (fp32 on CPU, bf16 on GPU) or vLLM."""
    from adg.io.models import default_device, hf_source, resolve_model

    path, extra = hf_source(resolve_model(cfg.model))
    device = cfg.device or default_device()
    backend = resolve_backend(cfg.backend, device)
    if cfg.max_length:
        extra["max_length" if backend == "hf" else "max_model_len"] = cfg.max_length
    if backend == "vllm":
        import torch
        from lm_eval.models.vllm_causallms import VLLM

        return VLLM(
            pretrained=str(path),
            dtype="auto",
            batch_size="auto",
            tensor_parallel_size=max(1, torch.cuda.device_count()),
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            seed=cfg.seed,
            **extra,
        )
    from lm_eval.models.huggingface import HFLM

    return HFLM(
        pretrained=str(path),
        device=device,
        dtype="bfloat16" if device.startswith("cuda") else "float32",
        # lm-eval's batch-size detection starts at 64 full-length sequences: on a GPU it backs off
        # on out-of-memory, on a CPU it would only be slow, so a CPU takes a fixed batch.
        batch_size=CPU_BATCH_SIZE
        if cfg.batch_size == "auto" and not device.startswith("cuda")
        else cfg.batch_size,
        **extra,
    )


def _merge(into: dict, part: dict) -> None:
    for key in ("results", "groups", "group_subtasks", "configs", "versions", "n-shot"):
        into.setdefault(key, {}).update(part.get(key) or {})
    for key in ("higher_is_better", "n-samples", "samples"):
        if key in part:
            into.setdefault(key, {}).update(part[key])
    for key, value in part.items():
        into.setdefault(key, value)


def evaluate(cfg: EvalConfig, lm=None) -> dict[str, Any]:
    """Run the tasks and return lm-eval's results dict (merged over the shot groups)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    for path in cfg.include_path:
        if not Path(path).is_dir():
            raise FileNotFoundError(f"--include-path {path}: not a folder of lm-eval task YAMLs")
    manager = TaskManager(include_path=list(cfg.include_path) or None)
    known = set(manager.all_tasks)
    unknown = [t for t in cfg.tasks if t not in known]
    if unknown:
        raise InputError(
            f"unknown lm-eval task(s): {', '.join(unknown)} (add their folder with --include-path)"
        )
    lm = lm if lm is not None else build_lm(cfg)
    merged: dict[str, Any] = {}
    for shots, runs_code, names in plan_runs(cfg.tasks, cfg.num_fewshot):
        with code_execution(runs_code):
            part = lm_eval.simple_evaluate(
                model=lm,
                tasks=names,
                num_fewshot=shots,
                limit=parse_limit(cfg.limit),
                task_manager=manager,
                log_samples=cfg.log_samples,
                confirm_run_unsafe_code=runs_code,
                random_seed=cfg.seed,
                numpy_random_seed=cfg.seed,
                torch_random_seed=cfg.seed,
                fewshot_random_seed=cfg.seed,
            )
        if part is not None:  # None on non-zero ranks of a multi-process run
            _merge(merged, part)
    merged["adg"] = {
        "model": str(cfg.model) or "embedded",
        "tasks": list(cfg.tasks),
        "limit": cfg.limit,
        "include_path": [str(p) for p in cfg.include_path],
    }
    return merged


def flatten(results: dict[str, Any]) -> dict[str, float]:
    """{task/metric: value} over every numeric, finite metric; stderrs and ',none' dropped."""
    flat: dict[str, float] = {}
    for task, metrics in (results.get("results") or {}).items():
        for key, value in metrics.items():
            if key in _NOT_METRICS or "_stderr" in key or isinstance(value, bool):
                continue
            if isinstance(value, int | float) and math.isfinite(value):
                name = key.removesuffix(",none")
                flat[f"{task}/{name}"] = float(value)
    return flat


def headline(task: str, metrics: dict[str, Any]) -> tuple[str, float] | None:
    """(metric key, value) that represents a task: the published one, else its first metric."""
    bench = BENCHMARKS.get(task)
    if bench and isinstance(metrics.get(bench.metric), int | float):
        return bench.metric, float(metrics[bench.metric])
    for key, value in metrics.items():
        if key in _NOT_METRICS or "_stderr" in key or isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            return key, float(value)
    return None


def _top_level_tasks(results: dict[str, Any]) -> list[str]:
    """Requested tasks and groups, without the subtasks of a group."""
    scores = results.get("results") or {}
    requested = (results.get("adg") or {}).get("tasks")
    if requested:
        return [t for t in requested if t in scores]
    children = {c for subs in (results.get("group_subtasks") or {}).values() for c in subs}
    return [t for t in scores if t not in children]


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per-task headline scores (percent) and the category / Average means as in the paper."""
    rows = []
    for task in _top_level_tasks(results):
        found = headline(task, results["results"][task])
        if found is None:
            continue
        bench = BENCHMARKS.get(task)
        rows.append(
            {
                "task": task,
                "label": bench.label if bench else task,
                "category": bench.category if bench else "Other",
                "metric": found[0].removesuffix(",none"),
                "score": 100.0 * found[1],
            }
        )
    categories = {}
    for category in (*CATEGORIES, "Other"):
        scores = [r["score"] for r in rows if r["category"] == category]
        if scores:
            categories[category] = sum(scores) / len(scores)
    average = sum(r["score"] for r in rows) / len(rows) if rows else None
    return {"tasks": rows, "categories": categories, "average": average}


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _delta(value: float | None, base: float | None) -> str:
    return "–" if value is None or base is None else f"{value - base:+.2f}"


def markdown_table(results: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    """The scores (percent) per benchmark, category and Average; with a baseline: side by side."""
    ours = summarise(results)
    base = summarise(baseline) if baseline else None
    base_tasks = {r["task"]: r["score"] for r in base["tasks"]} if base else {}
    if base:
        lines = [
            "| Group | Benchmark | Metric | Model | Baseline | Δ |",
            "|---|---|---|--:|--:|--:|",
        ]
    else:
        lines = ["| Group | Benchmark | Metric | Model |", "|---|---|---|--:|"]

    def row(group: str, name: str, metric: str, value, base_value) -> None:
        cells = [group, name, metric, _fmt(value)]
        if base:
            cells += [_fmt(base_value), _delta(value, base_value)]
        lines.append("| " + " | ".join(cells) + " |")

    for r in ours["tasks"]:
        row(r["category"], r["label"], r["metric"], r["score"], base_tasks.get(r["task"]))
    for category, value in ours["categories"].items():
        row(
            f"**{category}**", "", "mean", value, base["categories"].get(category) if base else None
        )
    row("**Average**", "", "mean", ours["average"], base["average"] if base else None)
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    """JSON fallback for what lm-eval leaves in its results (numpy scalars, sets, callables)."""
    if hasattr(value, "item") and callable(value.item):
        with contextlib.suppress(Exception):
            return value.item()
    if isinstance(value, set | tuple):
        return list(value)
    return str(value)


def dump_results(results: dict[str, Any], path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=2, default=_jsonable, ensure_ascii=False)
        fh.write("\n")


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """A results JSON of `adg evaluate` or of lm-eval itself (it needs a `results` object)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: malformed JSON: {err.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise InputError(f"{path}: field 'results': missing; not an lm-eval results file")
    return data


@dataclass
class EvalOutputs:
    results: dict[str, Any]
    metrics: dict[str, float]
    table: str


def evaluate_to_files(
    cfg: EvalConfig,
    output: str | os.PathLike,
    table: str | os.PathLike | None = None,
    baseline: str | os.PathLike | None = None,
) -> EvalOutputs:
    """Evaluate; write the raw results JSON and the Markdown table (default: output with .md)."""
    base = load_results(baseline) if baseline else None  # fail before the long run
    results = evaluate(cfg)
    dump_results(results, output)
    text = markdown_table(results, base)
    table_path = Path(table) if table else Path(output).with_suffix(".md")
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table_path.write_text(text, encoding="utf-8")
    return EvalOutputs(results=results, metrics=flatten(results), table=text)
