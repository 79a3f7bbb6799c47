"""evaluate: lm-evaluation-harness benchmarks of a model -> raw results, flat Metrics, a table."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Model, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("evaluate"), install_kfp_package=False)
def evaluate(
    model: Input[Model],
    results: Output[Artifact],
    metrics: Output[Metrics],
    table: Output[Markdown],
    tasks: str,
    num_fewshot: str,
    limit: float,
    include_path: str,
    baseline: str,
    backend: str,
    batch_size: str,
    gpus: str = "1",
):
    """tasks '' = the published six; num_fewshot '' = their shots, 'N' or 'task=N,...'."""
    import os

    from adg.io.models import require_gpu
    from adg.parameters import asks_gpus
    from adg.stages.evaluate import EvalConfig, evaluate_to_files, parse_fewshot, parse_tasks

    # A task pod of a cluster run (the KFP backend sets KFP_POD_NAME, kfp.local does not) was
    # placed with a GPU: without usable CUDA, fail now rather than crawl on the CPU.
    require_gpu("evaluate", "KFP_POD_NAME" in os.environ and asks_gpus(gpus))

    cfg = EvalConfig(
        model=model.path,
        tasks=parse_tasks(tasks),
        num_fewshot=parse_fewshot(num_fewshot),
        limit=limit or None,
        include_path=[p for p in include_path.split(",") if p],
        backend=backend,
        batch_size=int(batch_size) if batch_size.isdigit() else batch_size,
    )
    out = evaluate_to_files(cfg, results.path, table=table.path, baseline=baseline or None)
    for key, value in out.metrics.items():
        metrics.log_metric(key, value)
    print(out.table)
