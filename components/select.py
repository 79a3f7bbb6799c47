"""select: bin-wise top / middle / bottom subsets within the budget."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

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
):
    """Write the three JSON arrays and the report; log the headline numbers as Metrics."""
    import json

    from adg.records import write_json_array
    from adg.subsets import select_records, summary_lines

    groups, numbers = select_records(scored.path, clusters.path, budget, strategy=strategy)
    with open(report.path, "w", encoding="utf-8") as fh:
        json.dump(numbers, fh, indent=2)
    for name, artifact in (("top", top), ("middle", middle), ("bottom", bottom)):
        write_json_array(artifact.path, groups[name])
        artifact.metadata["records"] = numbers[name]["count"]
    for key in ("records", "budget", "bins", "bins_in_top", "budget_fill"):
        summary.log_metric(key, numbers[key])
    print("\n".join(summary_lines(numbers, "")))
