"""ingest: a JSON/JSONL pool (path or s3:// URI) → validated `pool.jsonl` + `rejects.jsonl`."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import image_for


@dsl.component(base_image=image_for("ingest"), install_kfp_package=False)
def ingest(pool_uri: str, limit: int, pool: Output[Dataset], rejects: Output[Dataset]) -> int:
    """Validate the pool; bad records go to `rejects` with file, line and reason. Returns N."""
    from adg.records import ingest as run_ingest

    summary = run_ingest(pool_uri, pool.path, rejects.path, limit=limit)
    print(summary.line())
    pool.metadata.update(records=summary.accepted, ids_assigned=summary.ids_assigned)
    rejects.metadata["records"] = summary.rejected
    return summary.accepted
