"""compare: the selectors side by side (selection, overlap and, when trained, the benchmarks);
plan_selectors: the baseline methods of the `selectors` parameter, for the fan-out."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("compare"), install_kfp_package=False)
def plan_selectors(
    selectors: list,
) -> NamedTuple("Plan", baselines=list, several=bool, model_baselines=list, case=str):
    """Validate `selectors`; the methods other than ADG (in order), whether to compare, those
    that need a model (scored on the GPU placement) and which mix it is (`baseline_case`)."""
    from collections import namedtuple

    from adg.stages.compare import baseline_case
    from adg.stages.compare import plan_selectors as plan

    baselines, several = plan(selectors)
    with_model, case = baseline_case(baselines)
    print(f"selectors: adg plus {baselines or 'no baseline'}")
    fields = ["baselines", "several", "model_baselines", "case"]
    return namedtuple("Plan", fields)(baselines, several, with_model, case)


@dsl.component(base_image=image_for("compare"), install_kfp_package=False)
def compare(
    selectors: list,
    model_baselines: list,
    adg_top: Input[Dataset],
    adg_scored: Input[Dataset],
    comparison: Output[Dataset],
    table: Output[Markdown],
    html: Output[HTML],
    summary: Output[Metrics],
    baseline_tops: Input[list[Dataset]] = None,
    random_top: Input[Dataset] = None,
    adg_results: Input[Artifact] = None,
    baseline_results: Input[list[Artifact]] = None,
    random_results: Input[Artifact] = None,
):
    """One row per selector in `selectors`; the model baselines' files come in the loop's order
    (`model_baselines`), random's from its own task; `adg_scored` (ADG's merged scores) gives
    every subset's dispersion and anisotropy."""
    from adg.stages.compare import SelectorRun, compare_runs, comparison_metrics, write_comparison

    tops = {"adg": adg_top.path}
    if baseline_tops is not None:
        tops.update({m: a.path for m, a in zip(model_baselines, baseline_tops, strict=True)})
    if random_top is not None:
        tops["random"] = random_top.path
    results = {}
    if adg_results is not None:
        results = {"adg": adg_results.path}
        if baseline_results is not None:
            pairs = zip(model_baselines, baseline_results, strict=True)
            results.update({m: a.path for m, a in pairs})
        if random_results is not None:
            results["random"] = random_results.path
    names = list(dict.fromkeys(selectors))
    runs = [SelectorRun(n, tops[n], results.get(n)) for n in names]
    comp = compare_runs(runs, adg_scored.path)
    paths = {"comparison": comparison.path, "table": table.path, "html": html.path}
    write_comparison(comp, paths)
    for key, value in comparison_metrics(comp).items():
        summary.log_metric(key, value)
    with open(table.path, encoding="utf-8") as fh:
        print(fh.read())
