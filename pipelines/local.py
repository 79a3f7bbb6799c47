"""Running the pipeline without a cluster (kfp.local) and compiling the pipelines for one.

`run_local` executes the real compiled graph with `kfp.local.SubprocessRunner(use_venv=False)`:
every component runs as a subprocess of this Python, artifacts land under
`<output_dir>/kfp-local/<run>/<task>/`, and the selected subsets are copied to `<output_dir>`,
with the selected records in the pool's own shape (the export task's `selected.parquet` or
`selected.jsonl`).
The pipeline's stages sit inside a `dsl.If` (recurring curation may find nothing new), and
kfp.local cannot return artifacts chosen by `dsl.OneOf`, so the pipeline declares no outputs and
the subsets are read from the `select` (or `nothing_to_do`) task's folder of this run, with the
report (report.html, report.md); with `analyse`, the task-type labels and composition are copied
too and the composition is added to the report. With several `selectors`, the compare task's
table is copied too (comparison.md, .html, .json), with each subset's task mix when analysed.

The terminal shows one line per task as it starts and ends, the long stages' progress bars and
the summary (`pipelines/run_log.py`); kfp.local's own output goes to `<output_dir>/logs/`.

With `runner="docker"`, every task runs instead in its stage's image (`ADG_IMAGE_*`, read when the
pipeline is imported) through `kfp.local.DockerRunner`, against whatever engine `DOCKER_HOST`
names (Docker, or podman's Docker-compatible service), as the image's own user and with no
network: the model cache is mounted read-only at the images' `ADG_HOME` as the model-cache PVC is
in a cluster, the pool read-only at `/mnt/adg-input`, and the pipeline root at its own path.

With a curation index (a local folder or an s3:// prefix) the subsets are the new version of the
curated set, selected over the whole index, copied with its diff.json and history report; the
index is checked for entries scored otherwise before the run starts.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from kfp import compiler, local
from kfp.dsl.graph_component import GraphComponent

from adg.config import GenerateConfig, IngestConfig, SamplingConfig, ScoreConfig, SelectConfig
from adg_kfp.pipelines.adg_pipeline import PIPELINE_NAME, adg_pipeline
from adg_kfp.pipelines.run_log import RunLog
from adg_kfp.pipelines.select_pipeline import select_pipeline


@dataclass
class LocalRunOptions:
    input: str
    model: str = ""
    budget: int = 0
    output_dir: str = "runs/latest"
    limit: int = 0
    cluster_count: int = 0
    strategy: str = SelectConfig.strategy
    sampling: SamplingConfig | None = None
    backend: str = GenerateConfig.backend
    dispersion_weight: float = ScoreConfig.dispersion_weight
    anisotropy_weight: float = ScoreConfig.anisotropy_weight
    all_metrics: bool = ScoreConfig.all_metrics
    shard_count: int = 1
    export_uri: str = ""
    analyse: bool = False
    ingest_format: str = IngestConfig.format
    ingest_columns: str = IngestConfig.columns
    tensor_parallel_size: int = GenerateConfig.tensor_parallel_size
    gpu_memory_utilization: float = GenerateConfig.gpu_memory_utilization
    selectors: list[str] = field(default_factory=lambda: ["adg"])
    runner: str = "subprocess"  # or "docker": each task in its stage's image
    curation_index: str = ""
    rescore_mismatched: bool = False
    verbose: bool = False  # kfp.local's own output on the terminal too, not only in its log
    # Every other stage setting `adg run` takes, by its pipeline parameter name: the flags
    # adg.cli.kfp generates from adg.config's fields, so a new field needs no edit here.
    pipeline_args: dict = field(default_factory=dict)


# Where the stage images keep models (their ADG_HOME, the model-cache PVC's mount path) and where
# a container run finds the pool.
IMAGE_ADG_HOME = "/var/cache/adg"
CONTAINER_INPUT_DIR = "/mnt/adg-input"


# The pipelines a cluster gets, by the name `adg compile/submit/schedule --pipeline` takes: the
# full one, and the selection-only one with a handful of fields for a first run.
PIPELINES = {"full": adg_pipeline, "select": select_pipeline}


def compile_pipeline(output: str | Path, pipeline: str = "full") -> None:
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(PIPELINES[pipeline], str(output))


def plan_sizes(opts: LocalRunOptions, needing_chat: list | None = None) -> tuple[int, int, int]:
    """(valid records, budget, bin count) for the run, from a read of the pool (counted, not
    kept: a large pool costs one pass, not its size in memory). `needing_chat`, when given,
    receives the first record with a system prompt or earlier turns (adg.method.prompts)."""
    from adg.io.reading import PoolFormat, read_sources
    from adg.io.records import PoolError, ReadResult
    from adg.io.shapes import has_context_turns
    from adg.method.clustering import auto_bin_count
    from adg.stages.ledger import pool_files

    def accept(record, _original) -> None:
        if needing_chat is not None and not needing_chat and has_context_turns(record):
            needing_chat.append(record)

    how = PoolFormat.parse(opts.ingest_format, opts.ingest_columns)
    counted = ReadResult(on_accept=accept, on_reject=lambda _r: None)
    sources = pool_files(opts.input) or [opts.input]
    n = read_sources(sources, opts.limit, how=how, result=counted).accepted
    if n == 0:
        raise PoolError(f"{opts.input}: no valid records")
    budget = opts.budget or max(1, round(0.2 * n))
    if opts.curation_index:  # the budget is over the whole index: curation_select checks it
        return n, budget, opts.cluster_count
    if budget > n:
        raise PoolError(f"budget {budget} is larger than the pool ({n} valid records)")
    bins = opts.cluster_count or auto_bin_count(n)
    return n, budget, bins


def _subsets_dir(root: Path, before: set[Path]) -> Path:
    """The folder of this run's task that wrote top/middle/bottom/report."""
    runs = sorted(set(root.glob(f"{PIPELINE_NAME}-*")) - before, key=lambda p: p.stat().st_mtime)
    if not runs:
        raise RuntimeError(f"no pipeline run folder appeared under {root}")
    for task in ("select", "curation-select", "curation-select-2", "nothing-to-do"):
        if (runs[-1] / task / "top").is_file():
            return runs[-1] / task
    raise RuntimeError(f"{runs[-1]}: neither select nor nothing_to_do wrote the subsets")


def run_local(opts: LocalRunOptions) -> dict:
    """Run the whole pipeline locally; print and return the selection report."""
    from adg.io.models import has_chat_template, resolve_model
    from adg.io.records import PoolError
    from adg.method.prompts import resolve_prompt_format
    from adg.stages.compare import plan_selectors
    from adg.stages.select import summary_lines

    if opts.runner == "docker" and opts.input.startswith("s3://"):
        raise PoolError(f"{opts.input}: --runner docker reads a local pool (no network in tasks)")
    sampling = opts.sampling or SamplingConfig()
    _baselines, several = plan_selectors(opts.selectors)  # a bad name fails before the run
    out = Path(opts.output_dir).resolve()
    needing_chat: list = []
    n, budget, bins = plan_sizes(opts, needing_chat)
    # Resolve (and on first use, convert) the model once here, not in each component.
    model = str(resolve_model(opts.model).resolve())
    # The pool's one prompt format (adg.method.prompts), decided before any task; the pipeline's
    # curation_route gets it concrete and applies the same rule.
    fmt = resolve_prompt_format(
        sampling.prompt_format, needing_chat, lambda: has_chat_template(model), model
    )
    sampling = dataclasses.replace(sampling, prompt_format=fmt)
    index = opts.curation_index
    if index:
        from adg.stages.curation import check_consistency

        index = index if index.startswith("s3://") else str(Path(index).resolve())
        check_consistency(index, _curation_settings(model, sampling, opts), opts.rescore_mismatched)
    out.mkdir(parents=True, exist_ok=True)
    # Running the stages in this Python environment instead of their images is the point here, and
    # GPU limits, resources and selectors only mean something in a cluster: kfp.local says both
    # once per task.
    warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
    root = out / "kfp-local"
    pool = opts.input if opts.input.startswith("s3://") else str(Path(opts.input).resolve())
    if opts.runner == "docker":
        runner, pool, model = _docker_runner(opts, root, pool, model)
    else:
        runner = local.SubprocessRunner(use_venv=False)
    local.init(runner=runner, pipeline_root=str(root), raise_on_error=True)
    before = set(root.glob(f"{PIPELINE_NAME}-*")) if root.exists() else set()
    started = time.time()
    print(
        f"adg run: {n} records, budget {budget}, {bins} bins, {opts.shard_count} shard(s), "
        f"model {model}" + (f", curation index {index}" if index else "")
    )
    log = RunLog(out / "logs", verbose=opts.verbose)
    print(
        f"adg run: kfp.local's log: {log.path}" + ("" if opts.verbose else " (--verbose shows it)")
    )
    with log:
        try:
            _run_pipeline(opts, pool, model, index, sampling, bins, budget)
        except RuntimeError as err:  # kfp.local's "Pipeline ... finished with status FAILURE"
            raise log.failure(err) from err
    report = _collect(root, before, out, opts.analyse, several)
    print(f"adg run: finished in {time.time() - started:.0f}s; outputs in {out}")
    print("\n".join(summary_lines(report, out)))
    if (out / "report.html").is_file():
        print(f"adg run: report {out / 'report.html'}")
    if several:
        print((out / "comparison.md").read_text(encoding="utf-8"))
        print(f"adg run: selector comparison {out / 'comparison.html'}")
    return report


def without_retries(pipeline: GraphComponent) -> GraphComponent:
    """A copy of `pipeline` whose tasks never retry. The GPU stages retry for a cluster's spot
    nodes (1, 2, 4 minutes of backoff: `placement.gpu_task`), and kfp.local honours the policy;
    on one machine nothing preempts a task, so a failure would only come back after 7 minutes
    per GPU task, its tail printed four times."""
    local_copy = copy.deepcopy(pipeline)
    spec = local_copy.pipeline_spec
    dags = [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]
    for dag in dags:
        for task in dag.tasks.values():
            task.ClearField("retry_policy")
    return local_copy


LOCAL_ADG_PIPELINE = without_retries(adg_pipeline)


def _run_pipeline(opts, pool, model, index, sampling, bins, budget) -> None:
    LOCAL_ADG_PIPELINE(**pipeline_arguments(opts, pool, model, index, sampling, bins, budget))


def pipeline_arguments(opts, pool, model, index, sampling, bins, budget) -> dict:
    """The full pipeline's arguments of a local run: `adg run`'s own settings, then every
    generated one (`opts.pipeline_args`)."""
    return dict(
        ingest_input=pool,
        model=model,
        ingest_limit=opts.limit,
        ingest_format=opts.ingest_format,
        ingest_columns=opts.ingest_columns,
        shard_count=opts.shard_count,
        generate_num_samples=sampling.num_samples,
        generate_temperature=sampling.temperature,
        generate_top_p=sampling.top_p,
        generate_max_new_tokens=sampling.max_new_tokens,
        generate_seed=sampling.seed,
        generate_batch_size=sampling.batch_size,
        generate_backend=opts.backend,
        generate_prompt_format=sampling.prompt_format,
        generate_tensor_parallel_size=str(opts.tensor_parallel_size),  # a pod's GPU count
        generate_gpu_memory_utilization=opts.gpu_memory_utilization,
        cluster_count=bins,
        score_dispersion_weight=opts.dispersion_weight,
        score_anisotropy_weight=opts.anisotropy_weight,
        score_all_metrics=opts.all_metrics,
        select_budget=budget,
        select_strategy=opts.strategy,
        export_uri=opts.export_uri,
        analyse_enabled=opts.analyse,
        selectors=opts.selectors,
        curation_index_uri=index,
        curation_rescore_mismatched=opts.rescore_mismatched,
        **opts.pipeline_args,
    )


def _collect(root: Path, before: set[Path], out: Path, analyse: bool, several: bool) -> dict:
    """Copy this run's subsets, report and the rest to `out`; return the selection report."""
    task_dir = _subsets_dir(root, before)
    for name in ("top", "middle", "bottom", "report"):
        target = out / ("selection_report.json" if name == "report" else f"{name}.json")
        shutil.copyfile(task_dir / name, target)
    _copy_report(task_dir, out, analyse)
    _copy_selected(task_dir.parent, out)
    if (task_dir / "diff").is_file():
        shutil.copyfile(task_dir / "diff", out / "diff.json")
    if several:
        _copy_comparison(task_dir.parent, out, analyse)
    return json.loads((out / "selection_report.json").read_text())


def _docker_runner(opts: LocalRunOptions, root: Path, pool: str, model: str):
    """(DockerRunner, pool and model as the containers see them) for `runner="docker"`."""
    from docker.types import Mount
    from kfp.local import docker_task_handler

    from adg.config import adg_home

    # The tasks run as the image's user, not the caller's: it must be able to write the root.
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)
    home = adg_home().resolve()
    mounts = [
        Mount(IMAGE_ADG_HOME, str(home), type="bind", read_only=True),
        Mount(CONTAINER_INPUT_DIR, str(Path(pool).parent), type="bind", read_only=True),
    ]
    _readable_by_all(Path(model))
    if Path(model).is_relative_to(home):
        model = str(IMAGE_ADG_HOME / Path(model).relative_to(home))
    else:
        target = f"/mnt/adg-model/{Path(model).name}"
        mounts.append(Mount(target, model, type="bind", read_only=True))
        model = target
    # kfp.local's own container loop removes each container as it exits and then counts a
    # container it can no longer find as a success (podman removes them at once): a failed task
    # would pass. Ours waits for the exit status before removing the container.
    docker_task_handler.run_docker_container = _run_container
    runner = local.DockerRunner(mounts=mounts, network_mode="none")
    return runner, f"{CONTAINER_INPUT_DIR}/{Path(pool).name}", model


def _readable_by_all(path: Path) -> None:
    """The tasks read the model as the image's user: the model (a public one, or the caller's
    choice to mount) must be readable by others; a converted model folder is private by default."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        mode = p.stat().st_mode
        wanted = mode | 0o444 | (0o111 if p.is_dir() else 0)
        if wanted != mode:
            p.chmod(wanted)


def _run_container(client, image: str, command: list[str], volumes: dict, **run_args) -> int:
    """Run one task's container (pulling its image if it is not there), stream its log, return
    its exit status; replaces kfp.local.docker_task_handler.run_docker_container."""
    from docker.errors import ImageNotFound

    image = resolve_image(image, command)
    image = image if ":" in image.rsplit("/", 1)[-1] or "@" in image else f"{image}:latest"
    try:
        client.images.get(image)
    except ImageNotFound:
        print(f"adg run: pulling {image}")
        client.images.pull(image)
    run_args.pop("auto_remove", None)
    container = client.containers.run(
        image=image, command=command, detach=True, volumes=volumes, **run_args
    )
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        code = container.wait()["StatusCode"]
        # What the engine ran, in its own words (make container-test checks these lines).
        container.reload()
        user = container.attrs["Config"].get("User") or "root"
        network = container.attrs["HostConfig"].get("NetworkMode")
        print(f"adg run: container {container.short_id} of {image}: user {user}, network {network}")
        return code
    finally:
        container.remove(force=True)


# An image given at run time (`task.set_container_image(<task output>)`, the baselines' scoring
# pods): the KFP driver resolves it from the task's inputs; kfp.local passes it on as written.
_IMAGE_PLACEHOLDER = re.compile(r"^\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}$")


def resolve_image(image: str, command: list[str]) -> str:
    """`image`, or, when it is an input placeholder, that input's value from the executor input
    that kfp.local put in the task's command (`--executor_input <JSON>`), as the driver does."""
    match = _IMAGE_PLACEHOLDER.match(image)
    if not match:
        return image
    for flag, value in itertools.pairwise(command):
        if flag == "--executor_input":
            params = json.loads(value)["inputs"].get("parameterValues", {})
            if match[1] in params:
                return params[match[1]]
    raise RuntimeError(f"the task's image {image} names an input it was not given")


def _curation_settings(model: str, sampling, opts: LocalRunOptions) -> dict:
    """The index's scoring settings, as the pipeline's curation tasks build them."""
    from adg.stages.curation import scoring_settings

    return scoring_settings(
        model,
        generate_num_samples=sampling.num_samples,
        generate_temperature=sampling.temperature,
        generate_top_p=sampling.top_p,
        generate_max_new_tokens=sampling.max_new_tokens,
        generate_seed=sampling.seed,
        generate_prompt_format=sampling.prompt_format,
        score_dispersion_weight=opts.dispersion_weight,
        score_anisotropy_weight=opts.anisotropy_weight,
    )


def _copy_selected(run_dir: Path, out: Path) -> None:
    """The export task's selected records in the pool's own shape, under their file name."""
    from adg.io.tables import is_parquet_file
    from adg.stages.export import SELECTED

    selected = run_dir / "export" / "selected"
    for name in SELECTED.values():
        (out / name).unlink(missing_ok=True)  # a previous run's, of another shape
    if selected.is_file():
        kind = "parquet" if is_parquet_file(selected) else "jsonl"
        shutil.copyfile(selected, out / SELECTED[kind])


def _copy_comparison(run_dir: Path, out: Path, analysed: bool) -> None:
    """The compare task's table (Markdown, HTML, JSON); with analysis, each subset's task mix."""
    from adg.stages.compare import COMPARISON_FILES, with_task_mix, write_comparison

    found = [d for d in sorted(run_dir.glob("compare*")) if (d / "comparison").is_file()]
    if not found:
        raise RuntimeError(f"{run_dir}: the compare task wrote no comparison")
    for name, target in COMPARISON_FILES.items():
        shutil.copyfile(found[0] / name, out / target)
    labels = run_dir / "analyse" / "labels"
    if analysed and labels.is_file():
        comp = json.loads((out / "comparison.json").read_text(encoding="utf-8"))
        comp = with_task_mix(comp, labels)
        write_comparison(comp, {name: out / f for name, f in COMPARISON_FILES.items()})


def _copy_report(task_dir: Path, out: Path, analysed: bool) -> None:
    """report.html / report.md: the analyse task's (the report with the task mix) when it ran,
    else the select task's; with analysis also the labels and the composition."""
    analyse_dir = task_dir.parent / "analyse"
    if analysed and (analyse_dir / "composition").is_file():
        task_dir = analyse_dir
        shutil.copyfile(analyse_dir / "labels", out / "task_labels.jsonl")
        shutil.copyfile(analyse_dir / "composition", out / "task_composition.json")
    for name, target in (("html", "report.html"), ("markdown", "report.md")):
        if (task_dir / name).is_file():
            shutil.copyfile(task_dir / name, out / target)
