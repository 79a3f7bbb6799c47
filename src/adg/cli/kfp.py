"""The commands of the KFP side: `adg run` (the whole pipeline locally through kfp.local),
`compile`, and `submit` / `schedule` / `retry` (a run, a recurring run, or a failed run again on
Kubeflow Pipelines). They are handed over to adg_kfp.pipelines by module name
(`kfp_module`), so this library never imports kfp (tests/test_layering.py checks).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from adg import package_data
from adg.cli.flags import add_flags, add_parameter_flags, model_arg, param_arg, sampling_config
from adg.config import (
    GenerateConfig,
    IngestConfig,
    ScoreConfig,
    SelectConfig,
    parameter_fields,
)
from adg.errors import InputError

# `run`, `compile`, `submit` and `schedule` are the KFP side's (adg_kfp.pipelines, shipped in the
# same wheel from pipelines/): the library never imports it (tests/test_layering.py checks), the CLI
# hands these commands over by module name, so `import adg.cli` never loads kfp.
KFP_PIPELINES = "adg_kfp.pipelines"


def kfp_module(name: str):
    """adg_kfp.pipelines.<name>: `local` (run, compile) or `remote` (submit, schedule, retry)."""
    return importlib.import_module(f"{KFP_PIPELINES}.{name}")


SAMPLE_POOL = "alpaca_gpt4_sample_200.jsonl"


# The compiled pipelines (adg_kfp.pipelines.local.PIPELINES), by their `--pipeline` name: the
# full one, and the selection-only one with a handful of fields for a first run.
PIPELINE_YAML = {"full": "pipelines/adg_pipeline.yaml", "select": "pipelines/adg_select.yaml"}


def default_pool() -> Path:
    """The in-repository Alpaca-GPT4 sample: package data `adg.data` (data/ in a checkout)."""
    return package_data.path(SAMPLE_POOL)


def cmd_compile(a: argparse.Namespace) -> None:
    output = a.output or PIPELINE_YAML[a.pipeline]
    kfp_module("local").compile_pipeline(output, a.pipeline)
    print(f"compiled pipeline ({a.pipeline}) -> {output}")


def add_compile(sub) -> None:
    p = sub.add_parser("compile", help="compile the pipeline to YAML for Kubeflow")
    _pipeline_arg(p)
    p.add_argument("--output", default="", help=f"YAML path (default: {PIPELINE_YAML})")
    p.set_defaults(func=cmd_compile)


# The stage settings (adg.config) `adg run`'s own flags reach, by pipeline parameter: through
# LocalRunOptions' named fields, with the flags they had before the rest were generated.
RUN_OWN_PARAMETERS = (
    "ingest_format",
    "ingest_columns",
    "generate_num_samples",
    "generate_temperature",
    "generate_top_p",
    "generate_max_new_tokens",
    "generate_seed",
    "generate_batch_size",
    "generate_prompt_format",
    "generate_backend",
    "generate_tensor_parallel_size",
    "generate_gpu_memory_utilization",
    "score_dispersion_weight",
    "score_anisotropy_weight",
    "score_all_metrics",
    "cluster_count",
    "select_strategy",
)
# Stages `adg run` does not run: it has no train_enabled (the pipeline's train task keeps its
# checkpoints on the cluster's model-cache PVC path), so their settings would do nothing;
# `adg train` and `adg evaluate` take them.
RUN_SKIPPED_STAGES = ("train", "evaluate")


def run_parameters() -> tuple[str, ...]:
    """The stage settings `adg run` takes as generated flags, `--<pipeline parameter>`: every
    field of adg.config with a pipeline parameter, less `RUN_OWN_PARAMETERS` and the skipped
    stages'."""
    return tuple(
        name
        for name, (stage, _field, _type) in parameter_fields().items()
        if name not in RUN_OWN_PARAMETERS and stage not in RUN_SKIPPED_STAGES
    )


def cmd_run(a: argparse.Namespace) -> None:
    local = kfp_module("local")
    local.run_local(run_options(a, local.LocalRunOptions))


def run_options(a: argparse.Namespace, options: type):
    """`adg run`'s parsed flags as `options` (adg_kfp.pipelines.local.LocalRunOptions)."""
    return options(
        input=a.input,
        model=a.model,
        budget=a.budget,
        output_dir=a.output_dir,
        limit=a.limit,
        cluster_count=a.cluster_count,
        strategy=a.strategy,
        sampling=sampling_config(a),
        backend=a.backend,
        dispersion_weight=a.dispersion_weight,
        anisotropy_weight=a.anisotropy_weight,
        all_metrics=a.all_metrics,
        shard_count=a.shard_count,
        export_uri=a.export_uri,
        tensor_parallel_size=a.tensor_parallel_size,
        gpu_memory_utilization=a.gpu_memory_utilization,
        analyse=a.analyse,
        ingest_format=a.format,
        ingest_columns=a.columns,
        selectors=[m.strip() for m in a.selectors.split(",") if m.strip()],
        runner=a.runner,
        curation_index=a.curation_index,
        rescore_mismatched=a.rescore_mismatched,
        verbose=a.verbose,
        pipeline_args={name: getattr(a, name) for name in run_parameters()},
    )


def add_run(sub) -> None:
    p = sub.add_parser("run", help="run the whole KFP pipeline locally (kfp.local)")
    p.add_argument(
        "--input",
        default=str(default_pool()),
        help="pool file (JSON, JSONL, Parquet), a folder of pool files or Parquet shards, or a "
        "datasets folder (default: in-repo sample)",
    )
    add_flags(p, IngestConfig)
    model_arg(p)
    p.add_argument("--budget", type=int, default=0, help="records to select (default: 20%%)")
    p.add_argument("--output-dir", default="runs/latest")
    p.add_argument("--limit", type=int, default=0, help="only the first N valid records")
    p.add_argument(
        "--cluster-count", type=int, default=0, help="bins (default: one per ~52 records)"
    )
    add_flags(p, SelectConfig, only=("strategy",))
    add_flags(p, GenerateConfig)
    add_flags(p, ScoreConfig)
    p.add_argument(
        "--shard-count", type=int, default=1, help="fan generate/score out over N shards"
    )
    p.add_argument("--export-uri", default="", help="s3:// prefix to export the subsets to")
    p.add_argument("--analyse", action="store_true", help="also run the task-type analysis")
    p.add_argument(
        "--selectors",
        default="adg",
        help="comma-separated selectors to compare side by side, e.g. adg,random,ifd "
        "(writes comparison.md/.html/.json)",
    )
    p.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="subprocess: every task in this Python; docker: in its stage's image (ADG_IMAGE_*), "
        "through the Docker API at DOCKER_HOST, without network (docs/deploy.md)",
    )
    p.add_argument(
        "--curation-index",
        default="",
        help="folder or s3:// prefix of a curation index: score only records not in it, then "
        "select the budget over everything indexed (a new version of the curated set)",
    )
    p.add_argument(
        "--rescore-mismatched",
        action="store_true",
        help="re-score index entries scored with another model or settings (default: refuse)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show kfp.local's own output (every task's inputs, outputs and log) as it runs; "
        "without it, one line per task, and all of it in <output-dir>/logs/kfp-local.log",
    )
    add_parameter_flags(p, run_parameters())
    p.set_defaults(func=cmd_run)


def _remote_call(fn, *args, **kwargs):
    """Call into pipelines.remote; a server that cannot be reached is one line, not a traceback."""
    try:
        return fn(*args, **kwargs)
    except kfp_module("remote").RemoteError as err:
        raise InputError(str(err)) from None
    except Exception as err:  # kfp.Client raises urllib3 / kfp_server_api errors of many kinds
        raise InputError(
            f"Kubeflow Pipelines request failed: {type(err).__name__}: {err}"
        ) from None


def _server_options(a: argparse.Namespace) -> dict:
    """The KFP server to talk to and whether to check its version: every remote command's."""
    return {"host": a.host, "namespace": a.namespace, "check_version": not a.skip_version_check}


def _kfp_options(a: argparse.Namespace) -> dict:
    """The keyword arguments `submit` and `schedule` share (`_kfp_args`, `_run_options`)."""
    return {
        **_server_options(a),
        "experiment": a.experiment,
        "package": a.package,
        "service_account": a.service_account,
        "pipeline_root": a.pipeline_root,
        "pipeline": a.pipeline,
    }


def cmd_submit(a: argparse.Namespace) -> None:
    run_id = _remote_call(
        kfp_module("remote").submit,
        a.param,
        run_name=a.run_name,
        cache=a.cache is not False,
        **_kfp_options(a),
    )
    print(f"submitted run {run_id}")


def add_submit(sub) -> None:
    p = sub.add_parser("submit", help="start one run of the pipeline on Kubeflow Pipelines")
    _kfp_args(p)
    p.add_argument("--run-name", default=None)
    _run_options(p, "the compiled settings: pure tasks cached, outside effects never")
    p.set_defaults(func=cmd_submit)


def cmd_schedule(a: argparse.Namespace) -> None:
    job_id = _remote_call(
        kfp_module("remote").schedule,
        a.cron,
        a.param,
        a.name,
        cache=bool(a.cache),
        **_kfp_options(a),
    )
    print(f"scheduled recurring run {job_id} ({a.cron}, no catch-up, max concurrency 1)")


def add_schedule(sub) -> None:
    p = sub.add_parser("schedule", help="create a recurring run (no catch-up, one at a time)")
    _kfp_args(p)
    p.add_argument("--cron", required=True, help='cron schedule, e.g. "0 3 * * *"')
    p.add_argument("--name", default="adg-recurring-curation", help="recurring run name")
    _run_options(p, "off for every task")
    p.set_defaults(func=cmd_schedule)


def cmd_retry(a: argparse.Namespace) -> None:
    _remote_call(kfp_module("remote").retry, a.run_id, **_server_options(a))
    print(f"retrying run {a.run_id.strip()}: its failed tasks run again, the others are kept")


def add_retry(sub) -> None:
    p = sub.add_parser(
        "retry",
        help="retry a Failed or Error run on Kubeflow Pipelines (KFP's Retry: the failed tasks "
        "run again, the succeeded ones are kept)",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="the run's id (`adg submit` prints it)")
    _server_args(p)
    _version_check_arg(p)
    p.set_defaults(func=cmd_retry)


def _run_options(p: argparse.ArgumentParser, cache_default: str) -> None:
    """Caching, pipeline root and the backend version check of `submit` / `schedule`."""
    p.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="KFP caching: --cache keeps the compiled settings (tasks that read or write the "
        "outside world are never cached), --no-cache turns it off everywhere "
        f"(default: {cache_default})",
    )
    p.add_argument(
        "--pipeline-root",
        default=None,
        help="s3:// prefix for this run's artifacts (default: the namespace's kfp-launcher "
        "ConfigMap, else the server's default)",
    )
    _version_check_arg(p)


def _server_args(p: argparse.ArgumentParser) -> None:
    """The KFP server: `--host` and `--namespace` (`_server_options` reads them)."""
    p.add_argument("--host", default=None, help="KFP API endpoint (default: $KFP_HOST)")
    p.add_argument("--namespace", default=None, help="Kubeflow namespace (default: $KFP_NAMESPACE)")


def _version_check_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--skip-version-check",
        action="store_true",
        help="send even to a backend older than the minimum (docs/kubernetes.md)",
    )


def _pipeline_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pipeline",
        choices=sorted(PIPELINE_YAML),
        default="full",
        help="full: selection, baselines, train, evaluate, recurring and continuous curation "
        "(60+ parameters); select: selection only, a handful of parameters for a first run",
    )


def _kfp_args(p: argparse.ArgumentParser) -> None:
    _server_args(p)
    p.add_argument("--experiment", default="adg")
    p.add_argument(
        "--service-account",
        default=None,
        help="service account of the run's pods, e.g. adg-pipeline-runner from manifests/ "
        "(default: $KFP_SERVICE_ACCOUNT, else the namespace's default)",
    )
    _pipeline_arg(p)
    p.add_argument(
        "--package",
        default=None,
        help="compiled pipeline YAML (default: compile --pipeline now)",
    )
    param_arg(
        p, "pipeline argument, e.g. select_budget=10000 (repeatable; JSON for dict/list ones)"
    )
