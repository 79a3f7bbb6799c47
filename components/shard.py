"""shard: the shard indices the pipeline fans generation and scoring out over."""

from kfp import dsl

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("shard"), install_kfp_package=False)
def shard(records: int, shard_count: int) -> list[int]:
    """[0, 1, ..., S-1] with S = min(shard_count, records): no shard is ever empty. Typed
    list[int], so the loop item is an integer: an untyped list's item is declared a string, which
    the driver converts each index to before generate and score, whose int input then refuses it
    (backend/src/v2/driver/resolve.go, resolveInputs)."""
    from adg.stages.shard import shard_indices

    indices = shard_indices(records, shard_count)
    print(f"shard: {records} records in {len(indices)} shards")
    return indices
