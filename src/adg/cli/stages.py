"""The stage commands: `adg ingest`, `export`, `generate`, `embed`, `cluster`, `score`,
`select`, `compare` and `analyse`, each a few lines over its stage module (adg.stages),
its parser beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adg.cli.flags import add_flags, flag_values, model_arg, restart_arg, sampling_config
from adg.config import (
    SCORE_METHODS,
    AnalyseConfig,
    CheckpointConfig,
    ClusterConfig,
    GenerateConfig,
    IngestConfig,
    SamplingConfig,
    ScoreConfig,
    SelectConfig,
)
from adg.errors import InputError


def cmd_ingest(a: argparse.Namespace) -> None:
    from adg.io.reading import PoolFormat
    from adg.stages.ingest import ingest
    from adg.stages.ledger import pool_files

    how = PoolFormat.parse(a.format, a.columns)
    # A folder (of Parquet shards, say) or an s3:// prefix ending in "/" is its pool files.
    sources = [f for given in a.input for f in (pool_files(given) or [given])]
    summary = ingest(sources, a.output, a.rejects, limit=a.limit, how=how, originals=a.originals)
    print("\n".join(summary.lines()))
    if summary.rejected:
        print(f"rejects written to {a.rejects}" if a.rejects else "rejects not kept (no --rejects)")
    if a.originals:
        print(f"the pool's own records ({summary.originals}) -> {a.originals}")


def add_ingest(sub) -> None:
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


def cmd_export(a: argparse.Namespace) -> None:
    from adg.stages.export import selected_name, write_selected

    out = Path(a.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / selected_name(a.originals)
    n = write_selected(a.selected, a.pool, a.originals, target)
    print(f"export: {n} selected records in the pool's own shape -> {target}")


def add_export(sub) -> None:
    p = sub.add_parser(
        "export", help="the selected records in the pool's own shape (selected.parquet/.jsonl)"
    )
    p.add_argument("--selected", required=True, help="top.json")
    p.add_argument("--pool", required=True, help="ingest's pool.jsonl")
    p.add_argument("--originals", required=True, help="ingest's --originals file")
    p.add_argument("--output-dir", required=True)
    p.set_defaults(func=cmd_export)


def cmd_generate(a: argparse.Namespace) -> None:
    from adg.stages.generate import generate_file

    summary = generate_file(
        a.input,
        a.output,
        model=a.model,
        cfg=sampling_config(a),
        backend=a.backend,
        limit=a.limit,
        shard_index=a.shard_index,
        shard_count=a.shard_count,
        tensor_parallel_size=a.tensor_parallel_size,
        gpu_memory_utilization=a.gpu_memory_utilization,
        restart=a.restart,
        **flag_values(CheckpointConfig, a),
    )
    print(summary.line())


def add_generate(sub) -> None:
    p = sub.add_parser("generate", help="sample K answers per instruction")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    model_arg(p)
    add_flags(p, GenerateConfig)
    p.add_argument("--limit", type=int, default=0, help="only the first N records")
    p.add_argument("--shard-index", type=int, default=0, help="which shard of the pool to do")
    p.add_argument("--shard-count", type=int, default=1, help="shards the pool is split into")
    add_flags(p, CheckpointConfig)
    restart_arg(p)
    p.set_defaults(func=cmd_generate)


def cmd_embed(a: argparse.Namespace) -> None:
    from adg.stages.embed import embed_file

    n, h = embed_file(a.input, a.output, model=a.model, restart=a.restart)
    print(f"embed: {n} x {h} float32 -> {a.output}")


def add_embed(sub) -> None:
    p = sub.add_parser("embed", help="instruction vectors for binning")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    model_arg(p)
    restart_arg(p)
    p.set_defaults(func=cmd_embed)


def cmd_cluster(a: argparse.Namespace) -> None:
    from adg.stages.cluster import cluster_file

    used = cluster_file(a.embeddings, a.output, **flag_values(ClusterConfig, a))
    print(f"cluster: {used} bins -> {a.output}")


def add_cluster(sub) -> None:
    p = sub.add_parser("cluster", help="k-means bins over instruction vectors")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--output", required=True)
    add_flags(p, ClusterConfig)
    p.set_defaults(func=cmd_cluster)


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
        prompt_format=a.prompt_format,
        restart=a.restart,
        **flag_values(CheckpointConfig, a),
    )
    print(summary.line())


def add_score(sub) -> None:
    p = sub.add_parser("score", help="score records (ADG divergence or a baseline selector)")
    p.add_argument(
        "--input", required=True, help="generated.jsonl for adg (ours or the original ADG's)"
    )
    p.add_argument("--output", required=True)
    model_arg(p)
    p.add_argument("--method", choices=SCORE_METHODS, default="adg")
    p.add_argument("--proxy-model", default="", help="superfiltering's model (default: embedded)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random method")
    add_flags(p, SamplingConfig, only=("prompt_format",))
    add_flags(p, ScoreConfig)
    add_flags(p, CheckpointConfig)
    restart_arg(p)
    p.set_defaults(func=cmd_score)


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
        run_parameters=params,
        rejects_path=a.rejects,
        **flag_values(SelectConfig, a),
    )
    print("\n".join(summary_lines(report, a.output_dir)))
    print(f"report: {Path(a.output_dir) / 'report.html'}")


def add_select(sub) -> None:
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


def add_compare(sub) -> None:
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


def cmd_analyse(a: argparse.Namespace) -> None:
    from adg.stages.analyse import analyse_file, composition_lines, composition_path

    comp = analyse_file(
        a.input,
        a.output,
        selected_path=a.selected,
        model=a.model,
        composition_output=composition_path(a.output),
        **flag_values(AnalyseConfig, a),
    )
    print("\n".join(composition_lines(comp)))
    print(f"labels -> {a.output}; composition -> {composition_path(a.output)}")
    if a.report:
        from adg.reporting.report import add_analysis

        page = Path(a.report)
        page.write_text(add_analysis(page.read_text(encoding="utf-8"), comp), encoding="utf-8")
        print(f"task types added to {page}")


def add_analyse(sub) -> None:
    p = sub.add_parser("analyse", help="task-type labels of the pool and the selected subset")
    p.add_argument("--input", required=True, help="pool (pool.jsonl or scored.jsonl)")
    p.add_argument("--selected", default=None, help="top.json: compare its task mix to the pool's")
    p.add_argument("--output", required=True, help="labels JSONL (id, category)")
    model_arg(p)
    add_flags(p, AnalyseConfig)
    p.add_argument("--report", default=None, help="report.html to add the task-type section to")
    p.set_defaults(func=cmd_analyse)
