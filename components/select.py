"""select: bin-wise top / middle / bottom subsets within the budget, and the selection report."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from components.images import image_for


@dsl.component(base_image=image_for("select"), install_kfp_package=False)
def select(
    scored: Input[Dataset],
    clusters: Input[Dataset],
    budget: int,
    strategy: str,
    top: Output[Dataset],
    middle: Output[Dataset],
    bottom: Output[Dataset],
    report: Output[Dataset],
    summary: Output[Metrics],
    html: Output[HTML],
    markdown: Output[Markdown],
    rejects: Input[Dataset] = None,
    run_parameters: dict = {},  # noqa: B006 - KFP parameter defaults are literals
):
    """Write the three JSON arrays, the report (JSON, HTML, Markdown) and the headline Metrics.

    `rejects` (ingest's rejects) and `run_parameters` (shown as given) only feed the report.
    """
    import json

    from adg.records import write_json_array
    from adg.report import report_for_run
    from adg.subsets import select_records, summary_lines

    groups, numbers = select_records(scored.path, clusters.path, budget, strategy=strategy)
    params = {**run_parameters, "select_budget": budget, "select_strategy": strategy}
    rendered = report_for_run(
        scored.path, groups, numbers, params, rejects.path if rejects else None
    )
    with open(report.path, "w", encoding="utf-8") as fh:
        json.dump(numbers, fh, indent=2)
    for name, artifact in (("top", top), ("middle", middle), ("bottom", bottom)):
        write_json_array(artifact.path, groups[name])
        artifact.metadata["records"] = numbers[name]["count"]
    for artifact, text in ((html, rendered.html), (markdown, rendered.markdown)):
        with open(artifact.path, "w", encoding="utf-8") as fh:
            fh.write(text)
    for key, value in rendered.metrics.items():
        summary.log_metric(key, value)
    print("\n".join(summary_lines(numbers, "")))
