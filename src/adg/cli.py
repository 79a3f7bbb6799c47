"""`adg`: one sub-command per stage, plus `run` (the whole pipeline locally), `compile`, and
`submit` / `schedule` (a run or a recurring run on Kubeflow Pipelines).

Every stage command reads and writes files; bad input ends in one line on stderr naming the file,
line and field, and exit status 2 — never a traceback. `adg run`, `compile`, `submit` and
`schedule` import the KFP pipeline lazily, so the stage commands work without the pipeline
packages on the path.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adg import records as rec

DEFAULT_POOL = Path(__file__).resolve().parents[2] / "data" / "alpaca_gpt4_sample_200.jsonl"
DEFAULT_PIPELINE_YAML = "pipelines/adg_pipeline.yaml"


class UsageError(Exception):
    """A problem with the user's input that deserves one line, not a traceback."""


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="",
        help="HF folder, .gguf file or s3:// prefix (default: the embedded SmolLM2-135M-Instruct)",
    )


def _sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-samples", type=int, default=5, help="answers per instruction (K)")
    p.add_argument("--temperature", type=float, default=1.4)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="instructions per batch")
    p.add_argument("--backend", choices=("auto", "hf", "vllm"), default="auto")
    p.add_argument("--prompt-format", choices=("alpaca", "chat"), default="alpaca")


def _vllm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tensor-parallel-size", type=int, default=1, help="vLLM: GPUs one model copy spans"
    )
    p.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=0.9,
        help="vLLM: share of each GPU's memory for weights and KV cache (0-1)",
    )


def _checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint-uri",
        default="",
        help="s3:// object mirroring the output: restored at start, updated every N records",
    )
    p.add_argument("--checkpoint-every", type=int, default=64, help="records between uploads")


def _weight_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dispersion-weight", type=float, default=0.6)
    p.add_argument("--anisotropy-weight", type=float, default=0.4)


def cmd_ingest(a: argparse.Namespace) -> None:
    summary = rec.ingest(a.input, a.output, a.rejects, limit=a.limit)
    print(summary.line())
    if summary.rejected:
        print(f"rejects written to {a.rejects}" if a.rejects else "rejects not kept (no --rejects)")


def _sampling_config(a: argparse.Namespace):
    from adg.generation import SamplingConfig

    return SamplingConfig(
        num_samples=a.num_samples,
        temperature=a.temperature,
        top_p=a.top_p,
        max_new_tokens=a.max_new_tokens,
        seed=a.seed,
        batch_size=a.batch_size,
        prompt_format=a.prompt_format,
    )


def cmd_generate(a: argparse.Namespace) -> None:
    from adg.generation import generate_file

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
    )
    print(summary.line())


def cmd_embed(a: argparse.Namespace) -> None:
    from adg.scoring import embed_file

    n, h = embed_file(a.input, a.output, model=a.model)
    print(f"embed: {n} x {h} float32 -> {a.output}")


def cmd_cluster(a: argparse.Namespace) -> None:
    from adg.clustering import cluster_file

    used = cluster_file(a.embeddings, a.output, count=a.count, seed=a.seed, pca_dims=a.pca_dims)
    print(f"cluster: {used} bins -> {a.output}")


def cmd_score(a: argparse.Namespace) -> None:
    from adg.divergence import ScoreWeights
    from adg.scoring import score_file

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
    )
    print(summary.line())


def cmd_select(a: argparse.Namespace) -> None:
    from adg.subsets import select_file, summary_lines

    try:
        params = json.loads(a.run_parameters)
    except json.JSONDecodeError as err:
        raise UsageError(f"--run-parameters: not JSON ({err.msg})") from None
    if not isinstance(params, dict):
        raise UsageError("--run-parameters: expected a JSON object")
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
    from adg.comparison import (
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
            raise UsageError(f"{a.comparison}:{err.lineno}: malformed JSON: {err.msg}") from None
    else:
        runs = []
        for spec in a.run:
            name, _, rest = spec.partition("=")
            top, _, results = rest.partition(",")
            if not name or not top:
                raise UsageError(f"--run {spec!r}: expected NAME=TOP.json[,RESULTS.json]")
            runs.append(SelectorRun(name, top, results or None))
        if not runs:
            raise UsageError("give --comparison or at least one --run NAME=TOP.json")
        comp = compare_runs(runs)
    if a.labels:
        comp = with_task_mix(comp, a.labels)
    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_comparison(comp, {name: out / f for name, f in COMPARISON_FILES.items()})
    print(comparison_markdown(comp))
    print(f"adg compare: {out / 'comparison.html'}")


def cmd_analyse(a: argparse.Namespace) -> None:
    from adg.analysis import AnalysisError, analyse_file, composition_lines, composition_path

    try:
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
    except AnalysisError as err:
        raise UsageError(str(err)) from None
    print("\n".join(composition_lines(comp)))
    print(f"labels -> {a.output}; composition -> {composition_path(a.output)}")
    if a.report:
        from adg.report import add_analysis

        page = Path(a.report)
        page.write_text(add_analysis(page.read_text(encoding="utf-8"), comp), encoding="utf-8")
        print(f"task types added to {page}")


def cmd_compile(a: argparse.Namespace) -> None:
    from pipelines.local import compile_pipeline

    compile_pipeline(a.output)
    print(f"compiled pipeline -> {a.output}")


def cmd_run(a: argparse.Namespace) -> None:
    from pipelines.local import LocalRunOptions, run_local

    opts = LocalRunOptions(
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
        selectors=[m.strip() for m in a.selectors.split(",") if m.strip()],
    )
    run_local(opts)


def cmd_plan(a: argparse.Namespace) -> None:
    from adg.models import resolve_model
    from adg.plan import format_plan, make_plan

    plan = make_plan(
        a.input,
        str(resolve_model(a.model)),
        gpu=a.gpu,
        gpus=a.gpus,
        num_samples=a.num_samples,
        max_new_tokens=a.max_new_tokens,
        sample=a.sample,
        budget=a.budget,
    )
    print("\n".join(format_plan(plan)))


def _remote_call(fn, *args, **kwargs):
    """Call into pipelines.remote; a server that cannot be reached is one line, not a traceback."""
    from pipelines.remote import RemoteError

    try:
        return fn(*args, **kwargs)
    except RemoteError:
        raise
    except Exception as err:  # kfp.Client raises urllib3 / kfp_server_api errors of many kinds
        raise UsageError(
            f"Kubeflow Pipelines request failed: {type(err).__name__}: {err}"
        ) from None


def cmd_submit(a: argparse.Namespace) -> None:
    from pipelines.remote import submit

    run_id = _remote_call(
        submit,
        a.param,
        host=a.host,
        namespace=a.namespace,
        experiment=a.experiment,
        run_name=a.run_name,
        package=a.package,
        service_account=a.service_account,
    )
    print(f"submitted run {run_id}")


def cmd_schedule(a: argparse.Namespace) -> None:
    from pipelines.remote import schedule

    job_id = _remote_call(
        schedule,
        a.cron,
        a.param,
        a.name,
        host=a.host,
        namespace=a.namespace,
        experiment=a.experiment,
        package=a.package,
        service_account=a.service_account,
    )
    print(f"scheduled recurring run {job_id} ({a.cron}, no catch-up, max concurrency 1)")


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
    p.add_argument(
        "--package", default=None, help="compiled pipeline YAML (default: compile the pipeline now)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipeline argument, e.g. select_budget=10000 (repeatable; JSON for dict/list ones)",
    )


def cmd_prepare_model(_a: argparse.Namespace) -> None:
    from adg.models import prepare_embedded_model

    print(f"embedded model ready: {prepare_embedded_model()}")


# --- train and evaluate (adg.training, adg.evaluation) -------------------------------------


def _optional_flag(text: str) -> bool | None:
    return {"auto": None, "on": True, "off": False}[text]


def cmd_train(a: argparse.Namespace) -> None:
    from adg.training import TrainConfig, launch

    cfg = TrainConfig(
        data=a.data,
        output_dir=a.output_dir,
        model=a.model,
        epochs=a.epochs,
        max_steps=a.max_steps,
        per_device_batch_size=a.batch_size,
        gradient_accumulation_steps=a.gradient_accumulation_steps,
        learning_rate=a.learning_rate,
        lr_scheduler=a.lr_scheduler,
        warmup_ratio=a.warmup_ratio,
        weight_decay=a.weight_decay,
        model_max_length=a.model_max_length,
        seed=a.seed,
        deepspeed=a.deepspeed,
        bf16=_optional_flag(a.bf16),
        gradient_checkpointing=_optional_flag(a.gradient_checkpointing),
        logging_steps=a.logging_steps,
        save_steps=a.save_steps,
        checkpoint_dir=a.checkpoint_dir,
        keep_checkpoints=a.keep_checkpoints,
    )
    m = launch(cfg, num_gpus=a.num_gpus)
    print(
        f"train: {m['examples']} examples ({m['skipped']} skipped), {m['steps']} steps, "
        f"loss {m['first_loss']:.4f} -> {m['final_loss']:.4f} -> {a.output_dir}"
    )


def cmd_evaluate(a: argparse.Namespace) -> None:
    from adg.evaluation import EvalConfig, evaluate_to_files, parse_fewshot, parse_tasks

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
    p.add_argument("--data", required=True, help="top.json or any subset (JSON array or JSONL)")
    p.add_argument("--output-dir", required=True, help="HF model folder to write")
    _model_arg(p)
    p.add_argument("--epochs", type=float, default=5.0)
    p.add_argument("--max-steps", type=int, default=0, help="stop after S steps (overrides epochs)")
    p.add_argument("--batch-size", type=int, default=2, help="per-device batch size")
    p.add_argument("--gradient-accumulation-steps", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-5)
    p.add_argument("--lr-scheduler", default="cosine")
    p.add_argument("--warmup-ratio", type=float, default=0.03)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--model-max-length", type=int, default=2048)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--deepspeed", default="", help="zero3, zero3_offload, auto or a DeepSpeed JSON (GPU)"
    )
    p.add_argument("--num-gpus", type=int, default=1, help="> 1: one torchrun worker per GPU")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--gradient-checkpointing", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--logging-steps", type=int, default=1)
    p.add_argument("--save-steps", type=int, default=500)
    p.add_argument("--checkpoint-dir", default="", help="default: OUTPUT_DIR/checkpoints")
    p.add_argument("--keep-checkpoints", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="lm-evaluation-harness benchmarks -> results + table")
    p.add_argument("--output", required=True, help="results JSON to write")
    _model_arg(p)
    p.add_argument("--tasks", default="", help="comma-separated lm-eval tasks (default: the six)")
    p.add_argument("--num-fewshot", default="", help="N for all, or task=N,task=N")
    p.add_argument("--include-path", action="append", help="folder of lm-eval task YAMLs")
    p.add_argument("--limit", type=float, default=0, help="examples per task (< 1: a fraction)")
    p.add_argument("--baseline", default=None, help="results JSON to compare with")
    p.add_argument("--table", default=None, help="Markdown table (default: OUTPUT with .md)")
    p.add_argument("--backend", choices=("auto", "hf", "vllm"), default="auto")
    p.add_argument("--batch-size", default="8", help="an integer or auto")
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
    p.add_argument("input", help="JSON array or JSONL pool (.gz accepted), path or s3:// URI")
    p.add_argument("--output", required=True)
    p.add_argument("--rejects", default=None)
    p.add_argument("--limit", type=int, default=0, help="keep the first N valid records")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("generate", help="sample K answers per instruction")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    _model_arg(p)
    _sampling_args(p)
    p.add_argument("--limit", type=int, default=0, help="only the first N records")
    p.add_argument("--shard-index", type=int, default=0, help="which shard of the pool to do")
    p.add_argument("--shard-count", type=int, default=1, help="shards the pool is split into")
    _vllm_args(p)
    _checkpoint_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("embed", help="instruction vectors for binning")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    _model_arg(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("cluster", help="k-means bins over instruction vectors")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--pca-dims", type=int, default=0, help="k-means on this many principal components (0: off)"
    )
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("score", help="score records (ADG divergence or a baseline selector)")
    p.add_argument(
        "--input", required=True, help="generated.jsonl for adg (ours or the original ADG's)"
    )
    p.add_argument("--output", required=True)
    _model_arg(p)
    p.add_argument("--method", choices=("adg", "ifd", "superfiltering", "random"), default="adg")
    p.add_argument("--proxy-model", default="", help="superfiltering's model (default: embedded)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random method")
    _weight_args(p)
    p.add_argument("--all-metrics", action="store_true", help="also write diagnostic metrics")
    _checkpoint_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("select", help="bin-wise top / middle / bottom within a budget")
    p.add_argument("--input", required=True, help="scored.jsonl")
    p.add_argument("--clusters", required=True, help="clusters.npy")
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--strategy", choices=("exact", "reference"), default="exact")
    p.add_argument(
        "--fail-on-collapse",
        action="store_true",
        help="exit non-zero when the scores cannot rank the pool (for recurring runs)",
    )
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
    p.add_argument("--labels", default="", help="the analyse stage's labels JSONL: add task mix")
    p.add_argument("--output-dir", default="runs/compare")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("analyse", help="task-type labels of the pool and the selected subset")
    p.add_argument("--input", required=True, help="pool (pool.jsonl or scored.jsonl)")
    p.add_argument("--selected", default=None, help="top.json: compare its task mix to the pool's")
    p.add_argument("--output", required=True, help="labels JSONL (id, category)")
    _model_arg(p)
    p.add_argument("--endpoint", default="", help="OpenAI-compatible URL, e.g. http://vllm:8000/v1")
    p.add_argument("--endpoint-model", default="", help="model name sent to the endpoint")
    p.add_argument(
        "--classifier",
        choices=["vectors", "likelihood"],
        default="vectors",
        help="local classifier: backbone vectors + seed-set regression, or label likelihood",
    )
    p.add_argument(
        "--batch-size", type=int, default=8, help="per forward pass / endpoint requests in flight"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per endpoint request")
    p.add_argument("--retries", type=int, default=2, help="endpoint retries per request")
    p.add_argument("--report", default=None, help="report.html to add the task-type section to")
    p.set_defaults(func=cmd_analyse)

    p = sub.add_parser("run", help="run the whole KFP pipeline locally (kfp.local)")
    p.add_argument("--input", default=str(DEFAULT_POOL), help="pool (default: in-repo sample)")
    _model_arg(p)
    p.add_argument("--budget", type=int, default=0, help="records to select (default: 20%%)")
    p.add_argument("--output-dir", default="runs/latest")
    p.add_argument("--limit", type=int, default=0, help="only the first N valid records")
    p.add_argument(
        "--cluster-count", type=int, default=0, help="bins (default: one per ~52 records)"
    )
    p.add_argument("--strategy", choices=("exact", "reference"), default="exact")
    _sampling_args(p)
    _weight_args(p)
    p.add_argument("--all-metrics", action="store_true")
    p.add_argument(
        "--shard-count", type=int, default=1, help="fan generate/score out over N shards"
    )
    _vllm_args(p)
    p.add_argument("--export-uri", default="", help="s3:// prefix to export the subsets to")
    p.add_argument("--analyse", action="store_true", help="also run the task-type analysis")
    p.add_argument(
        "--selectors",
        default="adg",
        help="comma-separated selectors to compare side by side, e.g. adg,random,ifd "
        "(writes comparison.md/.html/.json)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compile", help="compile the pipeline to YAML for Kubeflow")
    p.add_argument("--output", default=DEFAULT_PIPELINE_YAML)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("plan", help="tokens, FLOPs, time, GPU-hours and storage before a run")
    p.add_argument("--input", required=True, help="the pool")
    _model_arg(p)
    p.add_argument("--gpu", choices=("h100", "a100", "l4", "cpu"), default="h100")
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--num-samples", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--sample", type=int, default=512, help="records tokenized to estimate")
    p.add_argument("--budget", type=int, default=0, help="for the subsets' size (default 20%%)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("submit", help="start one run of the pipeline on Kubeflow Pipelines")
    _kfp_args(p)
    p.add_argument("--run-name", default=None)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("schedule", help="create a recurring run (no catch-up, one at a time)")
    _kfp_args(p)
    p.add_argument("--cron", required=True, help='cron schedule, e.g. "0 3 * * *"')
    p.add_argument("--name", default="adg-recurring-curation", help="recurring run name")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("prepare-model", help="convert the embedded model once (make setup)")
    p.set_defaults(func=cmd_prepare_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    # OSError: a missing, unreadable or unwritable file, or a model folder transformers cannot load.
    except (rec.PoolError, UsageError, OSError, ValueError) as err:
        print(f"adg {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adg {args.command}: interrupted; re-run to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
