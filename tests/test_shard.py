"""Shards for fan-out (adg.stages.shard): the shard arithmetic and the merge back into pool order.
The pipeline fanned out over two shards under kfp.local is in test_fanout.py."""

from __future__ import annotations

import itertools
import json

import pytest
from helpers import sample_records, write_jsonl

from adg.io.records import PoolError
from adg.stages import shard as shards


@pytest.mark.parametrize(("n", "count"), [(10, 3), (7, 7), (3, 8), (1, 4), (100, 1)])
def test_shards_cover_the_pool_contiguously(n, count):
    used = shards.effective_count(n, count)
    assert shards.shard_indices(n, count) == list(range(used))
    bounds = [shards.shard_bounds(n, count, i) for i in range(used)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [end - start for start, end in bounds]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    assert sum(len(shards.take_shard(list(range(n)), count, i)) for i in range(used)) == n


def test_bad_shard_arguments():
    with pytest.raises(ValueError, match="at least 1"):
        shards.effective_count(5, 0)
    with pytest.raises(ValueError, match="out of range"):
        shards.shard_bounds(5, 2, 2)


def test_merge_restores_pool_order_and_checks_completeness(tmp_path):
    records = sample_records(7)
    pool = write_jsonl(tmp_path / "pool.jsonl", records)
    parts = []
    for i in range(3):
        part = [{**r, "score": 0.5} for r in shards.take_shard(records, 3, i)]
        parts.append(write_jsonl(tmp_path / f"s{i}.jsonl", part))
    out = tmp_path / "merged.jsonl"
    assert shards.merge_files(pool, [parts[2], parts[0], parts[1]], out) == 7
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [r["id"] for r in records]

    with pytest.raises(PoolError, match="1 pool records missing"):
        short = write_jsonl(tmp_path / "short.jsonl", records[:1])
        shards.merge_files(pool, [short, parts[1], parts[2]], out)
    with pytest.raises(PoolError, match="more than one shard"):
        shards.merge_files(pool, [parts[0], parts[0], parts[1], parts[2]], out)
    with pytest.raises(PoolError, match="not in the pool"):
        stray = write_jsonl(tmp_path / "stray.jsonl", [{"id": "nope", "instruction": "x"}])
        shards.merge_files(pool, [*parts, stray], out)
