"""analyse (optional): task-type labels of the pool and the task mix of the selected subset,
written into the selection report (select's HTML and Markdown) as this task's own artifacts."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("analyse"), install_kfp_package=False)
def analyse(
    pool: Input[Dataset],
    selected: Input[Dataset],
    report_html: Input[HTML],
    report_markdown: Input[Markdown],
    labels: Output[Dataset],
    composition: Output[Dataset],
    html: Output[HTML],
    markdown: Output[Markdown],
    shares: Output[Metrics],
    model: str,
    endpoint: str,
    endpoint_model: str,
    batch_size: int,
    gpus: str = "1",
):
    """Labels JSONL (id, category), the composition as JSON, the selection report with the task
    mix added (HTML and Markdown), shares as Metrics.

    With `endpoint` set, an OpenAI-compatible server classifies (key: env ADG_ENDPOINT_API_KEY);
    else a logistic regression over the backbone `model`'s instruction vectors does. The report
    states the classifier's measured accuracy (indicative only below the threshold).
    """
    import os

    from adg.io.models import require_gpu
    from adg.parameters import asks_gpus
    from adg.reporting.report import reports_with_analysis
    from adg.stages.analyse import analyse_file, composition_lines

    # A task pod of a cluster run (the KFP backend sets KFP_POD_NAME, kfp.local does not) was
    # placed with a GPU: without usable CUDA, fail now rather than crawl on the CPU (but
    # an endpoint classifier needs no GPU).
    require_gpu("analyse", "KFP_POD_NAME" in os.environ and not endpoint and asks_gpus(gpus))

    comp = analyse_file(
        pool.path,
        labels.path,
        selected_path=selected.path,
        model=model,
        endpoint=endpoint,
        endpoint_model=endpoint_model,
        batch_size=batch_size,
        composition_output=composition.path,
    )
    with (
        open(report_html.path, encoding="utf-8") as fh,
        open(report_markdown.path, encoding="utf-8") as md,
    ):
        page, summary = reports_with_analysis(fh.read(), md.read(), comp)
    for artifact, text in ((html, page), (markdown, summary)):
        with open(artifact.path, "w", encoding="utf-8") as fh:
            fh.write(text)
    for group in ("pool", "selected"):
        for category, share in comp[group]["shares"].items():
            shares.log_metric(f"{group}_{category}", share)
    print("\n".join(composition_lines(comp)))
