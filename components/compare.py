"""compare: the selectors side by side (selection, overlap and, when trained, the benchmarks);
plan_selectors: the baseline methods of the `selectors` parameter, for the fan-out;
baseline_placement: the GPU placement of one baseline's scoring pod (none for random)."""

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
def baseline_placement(
    method: str,
    gpus: str,
    node_selector: dict,
    tolerations: list,
    gpu_image: str,
    cpu_image: str,
) -> NamedTuple("Placement", gpus=str, node_selector=dict, tolerations=list, image=str):
    """The scoring pod's GPUs, node selector, tolerations and image: the given GPU ones, or none
    and the CPU image for a method that needs no model (a loop item cannot set a pod's resources
    or image, a task output can). `gpus` is a string: the driver reads a pod's GPU count from a
    task output as it does from a run parameter, as a string only."""
    from collections import namedtuple

    from adg.comparison import baseline_placement as place

    placed = place(method, gpus, node_selector, tolerations, gpu_image, cpu_image)
    print(f"{method}: {placed[0]} GPU(s), image {placed[3]}")
    fields = ["gpus", "node_selector", "tolerations", "image"]
    return namedtuple("Placement", fields)(*placed)


@dsl.component(base_image=image_for("compare"), install_kfp_package=False)
def compare(
    selectors: list,
    baselines: list,
    adg_top: Input[Dataset],
    adg_scored: Input[Dataset],
    baseline_tops: Input[list[Dataset]],
    comparison: Output[Dataset],
    table: Output[Markdown],
    html: Output[HTML],
    summary: Output[Metrics],
    adg_results: Input[Artifact] = None,
    baseline_results: Input[list[Artifact]] = None,
):
    """One row per selector in `selectors`; the baselines' files come in the loop's order;
    `adg_scored` (ADG's merged scores) gives every subset's dispersion and anisotropy."""
    from adg.comparison import SelectorRun, compare_runs, comparison_metrics, write_comparison

    tops = {"adg": adg_top.path}
    tops.update({m: a.path for m, a in zip(baselines, baseline_tops, strict=True)})
    results = {}
    if adg_results is not None and baseline_results is not None:
        results = {"adg": adg_results.path}
        results.update({m: a.path for m, a in zip(baselines, baseline_results, strict=True)})
    names = list(dict.fromkeys(selectors))
    runs = [SelectorRun(n, tops[n], results.get(n)) for n in names]
    comp = compare_runs(runs, adg_scored.path)
    paths = {"comparison": comparison.path, "table": table.path, "html": html.path}
    write_comparison(comp, paths)
    for key, value in comparison_metrics(comp).items():
        summary.log_metric(key, value)
    with open(table.path, encoding="utf-8") as fh:
        print(fh.read())
