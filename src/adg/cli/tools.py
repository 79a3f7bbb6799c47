"""`adg plan` (the cost plan before a run, adg.planning.plan) and `adg prepare-model` (convert
the embedded model once), each with its parser.
"""

from __future__ import annotations

import argparse

from adg.cli.flags import add_flags, key_value, model_arg, param_arg
from adg.config import (
    SamplingConfig,
)


def cmd_plan(a: argparse.Namespace) -> None:
    from adg.io.models import resolve_model
    from adg.planning.plan import format_plan, make_plan

    plan = make_plan(
        a.input,
        str(resolve_model(a.model)),
        gpu=a.gpu,
        gpus=a.gpus,
        num_samples=a.num_samples,
        max_new_tokens=a.max_new_tokens,
        sample=a.sample,
        budget=a.budget,
        pod_params=dict(key_value(p) for p in a.param),
    )
    print("\n".join(format_plan(plan)))


def add_plan(sub) -> None:
    p = sub.add_parser("plan", help="tokens, FLOPs, time, GPU-hours and storage before a run")
    p.add_argument("--input", required=True, help="the pool")
    model_arg(p)
    p.add_argument("--gpu", choices=("h100", "h200", "a100", "l4", "cpu"), default="h100")
    p.add_argument("--gpus", type=int, default=1)
    add_flags(p, SamplingConfig, only=("num_samples", "max_new_tokens"))
    p.add_argument("--sample", type=int, default=512, help="records tokenized to estimate")
    p.add_argument("--budget", type=int, default=0, help="for the subsets' size (default 20%%)")
    param_arg(
        p,
        "a GPU pod parameter of the run (e.g. train_memory=48Gi, score_gpu_count=2): the pods are "
        "checked against the --gpu type's nodes with it",
    )
    p.set_defaults(func=cmd_plan)


def cmd_prepare_model(_a: argparse.Namespace) -> None:
    from adg.io.models import prepare_embedded_model

    print(f"embedded model ready: {prepare_embedded_model()}")


def add_prepare_model(sub) -> None:
    p = sub.add_parser("prepare-model", help="convert the embedded model once (make setup)")
    p.set_defaults(func=cmd_prepare_model)
