"""compare: the selectors side by side (selection, overlap and, when trained, the benchmarks);
plan_selectors: the baseline methods of the `selectors` parameter, for the fan-out."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("compare"), install_kfp_package=False)
def plan_selectors(selectors: list) -> NamedTuple("Plan", baselines=list, several=bool):
    """Validate `selectors`; the methods other than ADG (in order) and whether to compare."""
    from collections import namedtuple

    from adg.comparison import plan_selectors as plan

    baselines, several = plan(selectors)
    print(f"selectors: adg plus {baselines or 'no baseline'}")
    return namedtuple("Plan", ["baselines", "several"])(baselines, several)


@dsl.component(base_image=image_for("compare"), install_kfp_package=False)
def compare(
    selectors: list,
    baselines: list,
    adg_top: Input[Dataset],
    baseline_tops: Input[list[Dataset]],
    comparison: Output[Dataset],
    table: Output[Markdown],
    html: Output[HTML],
    summary: Output[Metrics],
    adg_results: Input[Artifact] = None,
    baseline_results: Input[list[Artifact]] = None,
):
    """One row per selector in `selectors`; the baselines' files come in the loop's order."""
    from adg.comparison import SelectorRun, compare_runs, comparison_metrics, write_comparison

    tops = {"adg": adg_top.path}
    tops.update({m: a.path for m, a in zip(baselines, baseline_tops, strict=True)})
    results = {}
    if adg_results is not None and baseline_results is not None:
        results = {"adg": adg_results.path}
        results.update({m: a.path for m, a in zip(baselines, baseline_results, strict=True)})
    names = list(dict.fromkeys(selectors))
    comp = compare_runs([SelectorRun(n, tops[n], results.get(n)) for n in names])
    paths = {"comparison": comparison.path, "table": table.path, "html": html.path}
    write_comparison(comp, paths)
    for key, value in comparison_metrics(comp).items():
        summary.log_metric(key, value)
    with open(table.path, encoding="utf-8") as fh:
        print(fh.read())
