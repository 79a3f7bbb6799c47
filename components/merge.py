"""merge: the scored shards, gathered from the fan-out, back into one file in pool order."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("merge"), install_kfp_package=False)
def merge(pool: Input[Dataset], shards: Input[list[Dataset]], merged: Output[Dataset]) -> int:
    """Concatenate the shards in pool order; fails unless every pool id is there exactly once."""
    from adg.stages.shard import merge_files

    n = merge_files(pool.path, [s.path for s in shards], merged.path)
    print(f"merge: {n} records from {len(shards)} shards")
    merged.metadata["records"] = n
    return n
