"""Continuous curation against a curation index (adg.stages.curation): route, plan, add, select.

`curation_plan` reads the index, `curation_add` and `curation_select` write to it: the pipeline
never caches these three (their outputs depend on the index, not only on their inputs).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("curation"), install_kfp_package=False)
def curation_route(
    pool: Input[Dataset],
    new_files: int,
    records: int,
    budget: int,
    index_uri: str,
    prompt_format: str,
    model: str,
) -> NamedTuple("Route", [("route", str), ("prompt_format", str)]):
    """ "batch" (select within this run's pool), "curate" (over the index) or "none", and the
    pool's one prompt format (`auto` resolved here, once, for every later task); a batch whose
    budget exceeds the records ingest kept, or a pool the prompt format or the model cannot
    render, fails here, before any GPU pod."""
    from collections import namedtuple

    from adg.stages.preflight import PreflightError, resolve_pool_prompt_format, route_after_ingest

    try:
        route = route_after_ingest(new_files, records, budget, index_uri)
        resolved = resolve_pool_prompt_format(pool.path, prompt_format, model, route)
    except PreflightError as err:
        print(err)
        raise SystemExit(2) from None
    print(f"route: {route}; prompt format: {resolved}")
    return namedtuple("Route", ["route", "prompt_format"])(route, resolved)


@dsl.component(base_image=image_for("curation"), install_kfp_package=False)
def curation_plan(
    pool: Input[Dataset],
    index_uri: str,
    model: str,
    settings: dict,
    rescore_mismatched: bool,
    budget: int,
    todo: Output[Dataset],
) -> NamedTuple("PlanOutputs", [("records", int), ("supersedes", list)]):
    """The pool records not yet in the index (plus, when asked, those of entries scored with
    other settings); refuses mismatched entries otherwise, and a budget larger than the index
    will be."""
    from collections import namedtuple

    from adg.stages.curation import plan_batch, scoring_settings

    wanted = scoring_settings(model, **settings)
    plan = plan_batch(index_uri, pool.path, todo.path, wanted, rescore_mismatched, budget)
    print(plan.line())
    todo.metadata["records"] = plan.records
    return namedtuple("PlanOutputs", ["records", "supersedes"])(plan.records, plan.supersedes)


@dsl.component(base_image=image_for("curation"), install_kfp_package=False)
def curation_add(
    scored: Input[Dataset],
    embeddings: Input[Dataset],
    index_uri: str,
    model: str,
    settings: dict,
    run_id: str,
    supersedes: list,
    sources: list,
) -> str:
    """Write this run's scored batch and its embeddings as a new index entry; its id."""
    from adg.stages.curation import add_entry, scoring_settings

    wanted = scoring_settings(model, **settings)
    entry = add_entry(index_uri, scored.path, embeddings.path, wanted, run_id, supersedes, sources)
    print(f"curation_add: entry {entry} -> {index_uri}")
    return entry


@dsl.component(base_image=image_for("curation"), install_kfp_package=False)
def curation_select(
    index_uri: str,
    budget: int,
    cluster_count: int,
    cluster_seed: int,
    cluster_pca_dims: int,
    strategy: str,
    run_id: str,
    top: Output[Dataset],
    middle: Output[Dataset],
    bottom: Output[Dataset],
    report: Output[Dataset],
    diff: Output[Dataset],
    html: Output[HTML],
    markdown: Output[Markdown],
) -> str:
    """Re-cluster and select the budget over the whole index; write a new version (its id)."""
    import shutil
    import tempfile

    from adg.stages.curation import select_version

    outputs = {"top.json": top, "middle.json": middle, "bottom.json": bottom}
    outputs.update({"selection_report.json": report, "diff.json": diff})
    outputs.update({"report.html": html, "report.md": markdown})
    with tempfile.TemporaryDirectory() as work:
        version = select_version(
            index_uri, budget, work, cluster_count, cluster_seed, cluster_pca_dims, strategy, run_id
        )
        for name, artifact in outputs.items():
            shutil.copyfile(f"{work}/{name}", artifact.path)
    print(f"curation_select: version {version['id']}, {version['counts']} {version['diff']}")
    return version["id"]
