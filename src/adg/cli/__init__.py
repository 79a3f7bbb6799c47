"""`adg`: one sub-command per stage, plus `run` (the whole pipeline locally), `compile`, and
`submit` / `schedule` / `retry` (a run, a recurring run, or a failed run again on Kubeflow
Pipelines).

Every stage command reads and writes files; bad input ends in one line on stderr naming the file,
line and field, and exit status 2 — never a traceback (adg.errors). The flags of every stage
come from its config dataclass in adg.config, the one source of each default. `adg run`,
`compile`, `submit`, `schedule` and `retry` belong to the KFP side (adg_kfp.pipelines) and are
handed over to it by module name, so this library never imports kfp.

One module per group of commands, each command's parser beside its code (`add_<command>`):
adg.cli.stages, adg.cli.train_evaluate, adg.cli.kfp, adg.cli.tools; adg.cli.flags holds what
they share. `COMMANDS` lists them in the order `adg --help` shows them.
"""

from __future__ import annotations

import argparse
import os
import sys

from adg.cli import kfp, stages, tools, train_evaluate
from adg.errors import AdgError, Terminated
from adg.progress import configure_logging

COMMANDS = (
    stages.add_ingest,
    stages.add_export,
    stages.add_generate,
    stages.add_embed,
    stages.add_cluster,
    stages.add_score,
    stages.add_select,
    train_evaluate.add_train,
    train_evaluate.add_evaluate,
    stages.add_compare,
    stages.add_analyse,
    kfp.add_run,
    kfp.add_compile,
    tools.add_plan,
    kfp.add_submit,
    kfp.add_schedule,
    kfp.add_retry,
    tools.add_prepare_model,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adg", description="Answer Divergence-Guided selection of instruction-tuning data"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        args.func(args)
    # AdgError: the user-facing errors (adg.errors); OSError: a missing, unreadable or unwritable
    # file, or a model folder transformers cannot load. Anything else is a bug: its traceback shows.
    except (AdgError, OSError) as err:
        if os.environ.get("ADG_DEBUG", "") not in ("", "0"):
            raise
        print(f"adg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adg {args.command}: interrupted; re-run to resume", file=sys.stderr)
        return 130
    except Terminated:
        # SIGTERM (a node draining): the output holds whole batches; 128 + 15 as a shell reports.
        print(f"adg {args.command}: terminated (SIGTERM); re-run to resume", file=sys.stderr)
        return 143
    return 0
