"""ingest: a pool (path or s3:// URI: JSON, JSONL, Parquet, a folder of shards or a datasets
folder, in any shape of adg.io.shapes), or the new files under a pool prefix → validated
`pool.jsonl` + `rejects.jsonl`, and the accepted records as the pool has them (`originals`)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("ingest"), install_kfp_package=False)
def ingest(
    pool_uri: str,
    pool_prefix: str,
    ledger_uri: str,
    limit: int,
    pool: Output[Dataset],
    rejects: Output[Dataset],
    originals: Output[Dataset],
    pool_format: str = "auto",
    columns: str = "",
) -> NamedTuple("IngestOutputs", [("records", int), ("new_files", int), ("sources", list)]):
    """Validate the pool; bad records go to `rejects` with file, line (row) and reason.

    Each file's shape is detected (or `pool_format`; `columns` renames fields). With `pool_prefix`,
    only the pool files not yet in the ledger are read; `new_files` counts those that gave
    records (0, and the outputs empty, when there is nothing new). `sources`, each with its
    status (curated, rejected, deferred), is what `record_ledger` records.
    """
    from collections import namedtuple

    from adg.io.reading import PoolFormat
    from adg.stages.ledger import files_with_records, ingest_pending

    IngestOutputs = namedtuple("IngestOutputs", ["records", "new_files", "sources"])

    how = PoolFormat.parse(pool_format, columns)
    summary, sources = ingest_pending(
        pool_uri, pool_prefix, ledger_uri, pool.path, rejects.path, limit, how, originals.path
    )
    if summary is None:
        print(f"ingest: nothing to do, no new pool files under {pool_prefix}")
        return IngestOutputs(0, 0, [])
    print("\n".join(summary.lines()))
    pool.metadata.update(records=summary.accepted, ids_assigned=summary.ids_assigned)
    rejects.metadata["records"] = summary.rejected
    originals.metadata["format"] = summary.originals
    return IngestOutputs(summary.accepted, files_with_records(sources), sources)
