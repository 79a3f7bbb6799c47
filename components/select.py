"""select: bin-wise top / middle / bottom subsets within the budget, and the selection report."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from adg_kfp.components.images import image_for


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
    fail_on_collapse: bool = False,
):
    """Write the three JSON arrays, the report (JSON, HTML, Markdown) and the headline Metrics.

    `rejects` (ingest's rejects) and `run_parameters` (shown as given) only feed the report.
    """
    from adg.config import typed_parameters
    from adg.stages.select import summary_lines, write_selection

    outputs = {"top": top, "middle": middle, "bottom": bottom, "report": report}
    outputs.update(html=html, markdown=markdown)
    numbers, metrics = write_selection(
        scored.path,
        clusters.path,
        budget,
        {name: artifact.path for name, artifact in outputs.items()},
        strategy=strategy,
        fail_on_collapse=fail_on_collapse,
        # The dict came as text substituted into placeholders ("2.0"): settings typed again.
        run_parameters=typed_parameters(
            {**run_parameters, "select_budget": budget, "select_strategy": strategy}
        ),
        rejects_path=rejects.path if rejects else None,
    )
    for name in ("top", "middle", "bottom"):
        outputs[name].metadata["records"] = numbers[name]["count"]
    for key, value in metrics.items():
        summary.log_metric(key, value)
    print("\n".join(summary_lines(numbers, "")))
