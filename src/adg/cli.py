"""`adg`: one sub-command per stage, plus `run` (the whole pipeline locally), `compile`, and
`submit` / `schedule` / `retry` (a run, a recurring run, or a failed run again on Kubeflow
Pipelines).

Every stage command reads and writes files; bad input ends in one line on stderr naming the file,
line and field, and exit status 2 — never a traceback (adg.errors). The flags of every stage
come from its config dataclass in adg.config, the one source of each default. `adg run`,
`compile`, `submit`, `schedule` and `retry` belong to the KFP side (adg_kfp.pipelines) and are
handed over to it by module name, so this library never imports kfp.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from adg import package_data
from adg.config import (
    SCORE_METHODS,
    AnalyseConfig,
    CheckpointConfig,
    ClusterConfig,
    EvaluateConfig,
    GenerateConfig,
    IngestConfig,
    SamplingConfig,
    ScoreConfig,
    SelectConfig,
    TrainConfig,
)
from adg.errors import AdgError, InputError, Terminated
from adg.io import records as rec
from adg.progress import configure_logging

SAMPLE_POOL = "alpaca_gpt4_sample_200.jsonl"
# The compiled pipelines (adg_kfp.pipelines.local.PIPELINES), by their `--pipeline` name: the
# full one, and the selection-only one with a handful of fields for a first run.
PIPELINE_YAML = {"full": "pipelines/adg_pipeline.yaml", "select": "pipelines/adg_select.yaml"}
# `run`, `compile`, `submit` and `schedule` are the KFP side's (adg_kfp.pipelines, shipped in the
# same wheel from pipelines/): the library never imports it (tests/test_layering.py checks), the CLI
# hands these commands over by module name, so `import adg.cli` never loads kfp.
KFP_PIPELINES = "adg_kfp.pipelines"


def kfp_module(name: str):
    """adg_kfp.pipelines.<name>: `local` (run, compile) or `remote` (submit, schedule, retry)."""
    return importlib.import_module(f"{KFP_PIPELINES}.{name}")


def default_pool() -> Path:
    """The in-repository Alpaca-GPT4 sample: package data `adg.data` (data/ in a checkout)."""
    return package_data.path(SAMPLE_POOL)


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="",
        help="HF folder, .gguf file or s3:// prefix (default: the embedded SmolLM2-135M-Instruct)",
    )


def _restart_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--restart",
        action="store_true",
        help="start over: keep an existing output (and its fingerprint) aside as "
        "OUTPUT.before-restart-N instead of resuming it (default: resume, and refuse an output "
        "made with other settings)",
    )


def add_flags(
    p: argparse.ArgumentParser, cls: type, only: tuple[str, ...] = (), skip: tuple[str, ...] = ()
) -> None:
    """One flag per setting of the config dataclass `cls` (adg.config): its default, help text
    and choices come from the dataclass, the one source of every default."""
    for f in fields(cls):
        if f.name in skip or (only and f.name not in only) or f.type not in (int, float, str, bool):
            continue
        flag = "--" + f.metadata.get("flag", f.name.replace("_", "-"))
        kw: dict = {"dest": f.name, "help": f.metadata.get("help")}
        if f.default is MISSING:
            kw["required"] = True
        elif f.type is bool:
            kw.update(action="store_true", default=f.default)
        else:
            kw.update(type=f.type, default=f.default, choices=f.metadata.get("choices"))
            kw["metavar"] = None if kw["choices"] else flag[2:].replace("-", "_").upper()
            kw["help"] = f"{kw['help']} (default: %(default)s)"
        p.add_argument(flag, **kw)


def from_flags(cls: type, a: argparse.Namespace, **overrides):
    """An instance of the config dataclass `cls` from the parsed flags `add_flags` made."""
    values = {f.name: getattr(a, f.name) for f in fields(cls) if hasattr(a, f.name)}
    return cls(**{**values, **overrides})


def cmd_ingest(a: argparse.Namespace) -> None:
    from adg.stages.ingest import ingest
    from adg.stages.ledger import pool_files

    how = rec.PoolFormat.parse(a.format, a.columns)
    # A folder (of Parquet shards, say) or an s3:// prefix ending in "/" is its pool files.
    sources = [f for given in a.input for f in (pool_files(given) or [given])]
    summary = ingest(sources, a.output, a.rejects, limit=a.limit, how=how, originals=a.originals)
    print("\n".join(summary.lines()))
    if summary.rejected:
        print(f"rejects written to {a.rejects}" if a.rejects else "rejects not kept (no --rejects)")
    if a.originals:
        print(f"the pool's own records ({summary.originals}) -> {a.originals}")


def cmd_export(a: argparse.Namespace) -> None:
    from adg.io.handback import selected_name, write_selected

    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / selected_name(a.originals)
    n = write_selected(a.selected, a.pool, a.originals, target)
    print(f"export: {n} selected records in the pool's own shape -> {target}")


def _sampling_config(a: argparse.Namespace) -> SamplingConfig:
    return from_flags(SamplingConfig, a)


def cmd_generate(a: argparse.Namespace) -> None:
    from adg.stages.generate import generate_file

    summary = generate_file(
        a.input,
        a.output,
        model=a.model,
        cfg=_sampling_config(a),
        backend=a.backend,
        limit=a.limit,
        shard_index=a.shard_index,
        shard_count=a.shard_count,
        checkpoint_uri=a.checkpoint_uri,
        checkpoint_every=a.checkpoint_every,
        tensor_parallel_size=a.tensor_parallel_size,
        gpu_memory_utilization=a.gpu_memory_utilization,
        restart=a.restart,
    )
    print(summary.line())


def cmd_embed(a: argparse.Namespace) -> None:
    from adg.stages.score import embed_file

    n, h = embed_file(a.input, a.output, model=a.model, restart=a.restart)
    print(f"embed: {n} x {h} float32 -> {a.output}")


def cmd_cluster(a: argparse.Namespace) -> None:
    from adg.method.clustering import cluster_file

    used = cluster_file(a.embeddings, a.output, count=a.count, seed=a.seed, pca_dims=a.pca_dims)
    print(f"cluster: {used} bins -> {a.output}")


def cmd_score(a: argparse.Namespace) -> None:
    from adg.method.divergence import ScoreWeights
    from adg.stages.score import score_file

    summary = score_file(
        a.input,
        a.output,
        model=a.model,
        weights=ScoreWeights(a.dispersion_weight, a.anisotropy_weight),
        all_metrics=a.all_metrics,
        method=a.method,
        proxy_model=a.proxy_model,
        seed=a.seed,
        checkpoint_uri=a.checkpoint_uri,
        checkpoint_every=a.checkpoint_every,
        prompt_format=a.prompt_format,
        restart=a.restart,
    )
    print(summary.line())


def cmd_select(a: argparse.Namespace) -> None:
    from adg.stages.select import select_file, summary_lines

    try:
        params = json.loads(a.run_parameters)
    except json.JSONDecodeError as err:
        raise InputError(f"--run-parameters: not JSON ({err.msg})") from None
    if not isinstance(params, dict):
        raise InputError("--run-parameters: expected a JSON object")
    report = select_file(
        a.input,
        a.clusters,
        a.budget,
        a.output_dir,
        strategy=a.strategy,
        fail_on_collapse=a.fail_on_collapse,
        run_parameters=params,
        rejects_path=a.rejects,
    )
    print("\n".join(summary_lines(report, a.output_dir)))
    print(f"report: {Path(a.output_dir) / 'report.html'}")


def cmd_compare(a: argparse.Namespace) -> None:
    from adg.stages.compare import (
        COMPARISON_FILES,
        SelectorRun,
        compare_runs,
        comparison_markdown,
        with_task_mix,
        write_comparison,
    )

    if a.comparison:
        try:
            comp = json.loads(Path(a.comparison).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise InputError(f"{a.comparison}:{err.lineno}: malformed JSON: {err.msg}") from None
    else:
        runs = []
        for spec in a.run:
            name, _, rest = spec.partition("=")
            top, _, results = rest.partition(",")
            if not name or not top:
                raise InputError(f"--run {spec!r}: expected NAME=TOP.json[,RESULTS.json]")
            runs.append(SelectorRun(name, top, results or None))
        if not runs:
            raise InputError("give --comparison or at least one --run NAME=TOP.json")
        comp = compare_runs(runs, a.adg_scored or None)
    if a.labels:
        comp = with_task_mix(comp, a.labels)
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_comparison(comp, {name: out / f for name, f in COMPARISON_FILES.items()})
    print(comparison_markdown(comp))
    print(f"adg compare: {out / 'comparison.html'}")


def cmd_analyse(a: argparse.Namespace) -> None:
    from adg.stages.analyse import analyse_file, composition_lines, composition_path

    comp = analyse_file(
        a.input,
        a.output,
        selected_path=a.selected,
        model=a.model,
        endpoint=a.endpoint,
        endpoint_model=a.endpoint_model,
        batch_size=a.batch_size,
        timeout=a.timeout,
        composition_output=composition_path(a.output),
        classifier=a.classifier,
        retries=a.retries,
    )
    print("\n".join(composition_lines(comp)))
    print(f"labels -> {a.output}; composition -> {composition_path(a.output)}")
    if a.report:
        from adg.reporting.report import add_analysis

        page = Path(a.report)
        page.write_text(add_analysis(page.read_text(encoding="utf-8"), comp), encoding="utf-8")
        print(f"task types added to {page}")


def cmd_compile(a: argparse.Namespace) -> None:
    output = a.output or PIPELINE_YAML[a.pipeline]
    kfp_module("local").compile_pipeline(output, a.pipeline)
    print(f"compiled pipeline ({a.pipeline}) -> {output}")


def cmd_run(a: argparse.Namespace) -> None:
    local = kfp_module("local")
    opts = local.LocalRunOptions(
        input=a.input,
        model=a.model,
        budget=a.budget,
        output_dir=a.output_dir,
        limit=a.limit,
        cluster_count=a.cluster_count,
        strategy=a.strategy,
        sampling=_sampling_config(a),
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
    )
    local.run_local(opts)


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
        pod_params=dict(_key_value(p) for p in a.param),
    )
    print("\n".join(format_plan(plan)))


def _key_value(pair: str) -> tuple[str, str]:
    name, sep, value = pair.partition("=")
    if not sep or not name.strip():
        raise InputError(f"--param {pair!r}: expected key=value")
    return name.strip(), value.strip()


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


def _kfp_options(a: argparse.Namespace) -> dict:
    """The keyword arguments `submit` and `schedule` share (`_kfp_args`, `_run_options`)."""
    return {
        "host": a.host,
        "namespace": a.namespace,
        "experiment": a.experiment,
        "package": a.package,
        "service_account": a.service_account,
        "pipeline_root": a.pipeline_root,
        "check_version": not a.skip_version_check,
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


def cmd_retry(a: argparse.Namespace) -> None:
    _remote_call(
        kfp_module("remote").retry,
        a.run_id,
        host=a.host,
        namespace=a.namespace,
        check_version=not a.skip_version_check,
    )
    print(f"retrying run {a.run_id.strip()}: its failed tasks run again, the others are kept")


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
    p.add_argument("--host", default=None, help="KFP API endpoint (default: $KFP_HOST)")
    p.add_argument("--namespace", default=None, help="Kubeflow namespace (default: $KFP_NAMESPACE)")
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
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipeline argument, e.g. select_budget=10000 (repeatable; JSON for dict/list ones)",
    )


def cmd_prepare_model(_a: argparse.Namespace) -> None:
    from adg.io.models import prepare_embedded_model

    print(f"embedded model ready: {prepare_embedded_model()}")


# --- train and evaluate (adg.stages.train, adg.stages.evaluate) ---------------------------------


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


def _add_train_evaluate_parsers(sub) -> None:
    p = sub.add_parser("train", help="fine-tune on a subset (Alpaca prompt, loss on responses)")
    _model_arg(p)
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

    p = sub.add_parser("evaluate", help="lm-evaluation-harness benchmarks -> results + table")
    p.add_argument("--output", required=True, help="results JSON to write")
    _model_arg(p)
    add_flags(p, EvaluateConfig)
    p.add_argument("--include-path", action="append", help="folder of lm-eval task YAMLs")
    p.add_argument("--baseline", default=None, help="results JSON to compare with")
    p.add_argument("--table", default=None, help="Markdown table (default: OUTPUT with .md)")
    p.add_argument("--device", default="", help="default: cuda when present, else cpu")
    p.add_argument("--max-length", type=int, default=0, help="context length (default: model's)")
    p.add_argument("--log-samples", action="store_true", help="keep per-example outputs")
    p.set_defaults(func=cmd_evaluate)


# --- end of train and evaluate --------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adg", description="Answer Divergence-Guided selection of instruction-tuning data"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="validate a pool; bad records go to a rejects file")
    p.add_argument(
        "input",
        nargs="+",
        help="pool: JSON array or JSONL (.gz, .zst), Parquet, a folder of Parquet shards or a "
        "datasets folder; path or s3:// URI (several are read into one pool)",
    )
    p.add_argument("--output", required=True)
    p.add_argument("--rejects", default=None)
    p.add_argument("--limit", type=int, default=0, help="keep the first N valid records")
    add_flags(p, IngestConfig)
    p.add_argument(
        "--originals",
        default=None,
        help="also keep the accepted records as the pool has them (Parquet for a columnar pool, "
        "else JSONL), for `adg export`",
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser(
        "export", help="the selected records in the pool's own shape (selected.parquet/.jsonl)"
    )
    p.add_argument("--selected", required=True, help="top.json")
    p.add_argument("--pool", required=True, help="ingest's pool.jsonl")
    p.add_argument("--originals", required=True, help="ingest's --originals file")
    p.add_argument("--output-dir", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("generate", help="sample K answers per instruction")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    _model_arg(p)
    add_flags(p, GenerateConfig)
    p.add_argument("--limit", type=int, default=0, help="only the first N records")
    p.add_argument("--shard-index", type=int, default=0, help="which shard of the pool to do")
    p.add_argument("--shard-count", type=int, default=1, help="shards the pool is split into")
    add_flags(p, CheckpointConfig)
    _restart_arg(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("embed", help="instruction vectors for binning")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    _model_arg(p)
    _restart_arg(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("cluster", help="k-means bins over instruction vectors")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--output", required=True)
    add_flags(p, ClusterConfig)
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("score", help="score records (ADG divergence or a baseline selector)")
    p.add_argument(
        "--input", required=True, help="generated.jsonl for adg (ours or the original ADG's)"
    )
    p.add_argument("--output", required=True)
    _model_arg(p)
    p.add_argument("--method", choices=SCORE_METHODS, default="adg")
    p.add_argument("--proxy-model", default="", help="superfiltering's model (default: embedded)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random method")
    add_flags(p, SamplingConfig, only=("prompt_format",))
    add_flags(p, ScoreConfig)
    add_flags(p, CheckpointConfig)
    _restart_arg(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("select", help="bin-wise top / middle / bottom within a budget")
    p.add_argument("--input", required=True, help="scored.jsonl")
    p.add_argument("--clusters", required=True, help="clusters.npy")
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--output-dir", required=True)
    add_flags(p, SelectConfig)
    p.add_argument("--rejects", default=None, help="ingest's rejects.jsonl, counted in the report")
    p.add_argument(
        "--run-parameters", default="{}", help="JSON object of run parameters shown in the report"
    )
    p.set_defaults(func=cmd_select)

    _add_train_evaluate_parsers(sub)

    p = sub.add_parser("compare", help="selectors side by side: their subsets and evaluations")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        help="NAME=TOP.json[,RESULTS.json]: one selector's subset (and lm-eval results); repeat",
    )
    p.add_argument("--comparison", default="", help="an existing comparison.json instead of --run")
    p.add_argument(
        "--adg-scored",
        default="",
        help="ADG's scored.jsonl: the dispersion and anisotropy of every subset's records",
    )
    p.add_argument("--labels", default="", help="the analyse stage's labels JSONL: add task mix")
    p.add_argument("--output-dir", default="runs/compare")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("analyse", help="task-type labels of the pool and the selected subset")
    p.add_argument("--input", required=True, help="pool (pool.jsonl or scored.jsonl)")
    p.add_argument("--selected", default=None, help="top.json: compare its task mix to the pool's")
    p.add_argument("--output", required=True, help="labels JSONL (id, category)")
    _model_arg(p)
    add_flags(p, AnalyseConfig)
    p.add_argument("--report", default=None, help="report.html to add the task-type section to")
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser("run", help="run the whole KFP pipeline locally (kfp.local)")
    p.add_argument(
        "--input",
        default=str(default_pool()),
        help="pool file (JSON, JSONL, Parquet), a folder of pool files or Parquet shards, or a "
        "datasets folder (default: in-repo sample)",
    )
    add_flags(p, IngestConfig)
    _model_arg(p)
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
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compile", help="compile the pipeline to YAML for Kubeflow")
    _pipeline_arg(p)
    p.add_argument("--output", default="", help=f"YAML path (default: {PIPELINE_YAML})")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("plan", help="tokens, FLOPs, time, GPU-hours and storage before a run")
    p.add_argument("--input", required=True, help="the pool")
    _model_arg(p)
    p.add_argument("--gpu", choices=("h100", "h200", "a100", "l4", "cpu"), default="h100")
    p.add_argument("--gpus", type=int, default=1)
    add_flags(p, SamplingConfig, only=("num_samples", "max_new_tokens"))
    p.add_argument("--sample", type=int, default=512, help="records tokenized to estimate")
    p.add_argument("--budget", type=int, default=0, help="for the subsets' size (default 20%%)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a GPU pod parameter of the run (e.g. train_memory=48Gi, score_gpu_count=2): the "
        "pods are checked against the --gpu type's nodes with it",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("submit", help="start one run of the pipeline on Kubeflow Pipelines")
    _kfp_args(p)
    p.add_argument("--run-name", default=None)
    _run_options(p, "the compiled settings: pure tasks cached, outside effects never")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("schedule", help="create a recurring run (no catch-up, one at a time)")
    _kfp_args(p)
    p.add_argument("--cron", required=True, help='cron schedule, e.g. "0 3 * * *"')
    p.add_argument("--name", default="adg-recurring-curation", help="recurring run name")
    _run_options(p, "off for every task")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser(
        "retry",
        help="retry a Failed or Error run on Kubeflow Pipelines (KFP's Retry: the failed tasks "
        "run again, the succeeded ones are kept)",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="the run's id (`adg submit` prints it)")
    p.add_argument("--host", default=None, help="KFP API endpoint (default: $KFP_HOST)")
    p.add_argument("--namespace", default=None, help="Kubeflow namespace (default: $KFP_NAMESPACE)")
    p.add_argument(
        "--skip-version-check",
        action="store_true",
        help="send even to a backend older than the minimum (docs/kubernetes.md)",
    )
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("prepare-model", help="convert the embedded model once (make setup)")
    p.set_defaults(func=cmd_prepare_model)
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


if __name__ == "__main__":
    sys.exit(main())
