"""analyse (optional): task-type labels of the pool and the task mix of the selected subset."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.images import image_for


@dsl.component(base_image=image_for("analyse"), install_kfp_package=False)
def analyse(
    pool: Input[Dataset],
    selected: Input[Dataset],
    labels: Output[Dataset],
    composition: Output[Dataset],
    html: Output[HTML],
    shares: Output[Metrics],
    model: str,
    endpoint: str,
    endpoint_model: str,
    batch_size: int,
):
    """Labels JSONL (id, category), the composition as JSON and as an HTML page, shares as Metrics.

    With `endpoint` set, an OpenAI-compatible server classifies (key: env ADG_ENDPOINT_API_KEY);
    else the backbone `model` does, by calibrated label likelihood.
    """
    from adg.analysis import analyse_file, composition_lines
    from adg.report import analysis_page

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
    with open(html.path, "w", encoding="utf-8") as fh:
        fh.write(analysis_page(comp))
    for group in ("pool", "selected"):
        for category, share in comp[group]["shares"].items():
            shares.log_metric(f"{group}_{category}", share)
    print("\n".join(composition_lines(comp)))
