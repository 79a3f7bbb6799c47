"""record_ledger and nothing_to_do: the two ends of a recurring-curation run."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("ledger"), install_kfp_package=False)
def record_ledger(ledger_uri: str, sources: list, run_id: str) -> int:
    """Add the pool files this run curated to the ledger (runs only after select succeeded)."""
    from adg.stages.ledger import record

    n = record(ledger_uri, sources, run_id=run_id)
    print(f"record_ledger: {n} pool files recorded in {ledger_uri}")
    return n


@dsl.component(base_image=image_for("ledger"), install_kfp_package=False)
def nothing_to_do(
    pool_prefix: str,
    ledger_uri: str,
    sources: list,
    run_id: str,
    top: Output[Dataset],
    middle: Output[Dataset],
    bottom: Output[Dataset],
    report: Output[Dataset],
):
    """No new pool files: end the run cleanly with empty subsets and a report that says so.
    New files without a valid record are recorded in the ledger as rejected, so later runs skip
    them until they change."""
    import json

    from adg.io.jsonl import write_json_array
    from adg.stages.ledger import record

    rejected = record(ledger_uri, sources, run_id=run_id)

    for artifact in (top, middle, bottom):
        write_json_array(artifact.path, [])
        artifact.metadata["records"] = 0
    with open(report.path, "w", encoding="utf-8") as fh:
        json.dump(
            {"records": 0, "nothing_to_do": True, "pool_prefix": pool_prefix, "rejected": rejected},
            fh,
        )
    print(f"nothing to do: no new pool records under {pool_prefix} ({rejected} files rejected)")
