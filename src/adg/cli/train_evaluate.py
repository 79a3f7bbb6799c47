"""`adg train` (supervised fine-tuning on a subset, adg.stages.train) and `adg evaluate`
(lm-evaluation-harness benchmarks, adg.stages.evaluate), each with its parser.
"""

from __future__ import annotations

import argparse

from adg.cli.flags import add_flags, from_flags, model_arg
from adg.config import (
    EvaluateConfig,
    TrainConfig,
)


def _optional_flag(text: str) -> bool | None:
    return {"auto": None, "on": True, "off": False}[text]


def cmd_train(a: argparse.Namespace) -> None:
    from adg.stages.train import launch

    cfg = from_flags(
        TrainConfig,
        a,
        bf16=_optional_flag(a.bf16_mode),
        gradient_checkpointing=_optional_flag(a.gradient_checkpointing_mode),
    )
    m = launch(cfg)
    print(
        f"train: {m['examples']} examples ({m['skipped']} skipped), {m['steps']} steps, "
        f"loss {m['first_loss']:.4f} -> {m['final_loss']:.4f} -> {a.output_dir}"
    )


def add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune on a subset (Alpaca prompt, loss on responses)")
    model_arg(p)
    add_flags(p, TrainConfig, skip=("model",))
    for name in ("bf16", "gradient-checkpointing"):
        p.add_argument(
            f"--{name}",
            dest=name.replace("-", "_") + "_mode",
            choices=("auto", "on", "off"),
            default="auto",
            help="auto: on when training on a GPU that supports it",
        )
    p.set_defaults(func=cmd_train)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from adg.stages.evaluate import EvalConfig, evaluate_to_files, parse_fewshot, parse_tasks

    cfg = EvalConfig(
        model=a.model,
        tasks=parse_tasks(a.tasks),
        num_fewshot=parse_fewshot(a.num_fewshot),
        limit=a.limit or None,
        include_path=a.include_path or [],
        backend=a.backend,
        batch_size=int(a.batch_size) if a.batch_size.isdigit() else a.batch_size,
        device=a.device,
        max_length=a.max_length,
        log_samples=a.log_samples,
    )
    out = evaluate_to_files(cfg, a.output, table=a.table, baseline=a.baseline)
    print(out.table, end="")
    print(f"evaluate: {len(out.metrics)} metrics -> {a.output}")


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="lm-evaluation-harness benchmarks -> results + table")
    p.add_argument("--output", required=True, help="results JSON to write")
    model_arg(p)
    add_flags(p, EvaluateConfig)
    p.add_argument("--include-path", action="append", help="folder of lm-eval task YAMLs")
    p.add_argument("--baseline", default=None, help="results JSON to compare with")
    p.add_argument("--table", default=None, help="Markdown table (default: OUTPUT with .md)")
    p.add_argument("--device", default="", help="default: cuda when present, else cpu")
    p.add_argument("--max-length", type=int, default=0, help="context length (default: model's)")
    p.add_argument("--log-samples", action="store_true", help="keep per-example outputs")
    p.set_defaults(func=cmd_evaluate)
