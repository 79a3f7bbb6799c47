"""Splitting a pool into contiguous shards for fan-out, and merging the shards' outputs back.

A pool of N records and a requested shard count S give min(S, N) shards (at least 1): shard i
holds records [⌊i·N/S⌋, ⌊(i+1)·N/S⌋), so sizes differ by at most one and no shard is empty. The
pipeline fans generation and scoring out over the shard indices; `merge_files` concatenates the
shard outputs back into pool order (whatever order the shards arrive in) and checks that every
pool id is there exactly once.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

from adg.errors import InputError
from adg.io.jsonl import write_jsonl
from adg.io.reading import iter_records, read_records
from adg.io.records import PoolError, id_key


def effective_count(n_records: int, shard_count: int) -> int:
    """Shards actually used: at least 1, at most one per record."""
    if shard_count < 1:
        raise InputError(f"shard count must be at least 1, got {shard_count}")
    return max(1, min(shard_count, n_records))


def shard_indices(n_records: int, shard_count: int) -> list[int]:
    """The list the pipeline's ParallelFor iterates over: [0, 1, ..., shards - 1]."""
    return list(range(effective_count(n_records, shard_count)))


def shard_bounds(n_records: int, shard_count: int, index: int) -> tuple[int, int]:
    """[start, end) of shard `index` among `effective_count(n_records, shard_count)` shards."""
    count = effective_count(n_records, shard_count)
    if not 0 <= index < count:
        raise InputError(f"shard index {index} out of range for {count} shards")
    return index * n_records // count, (index + 1) * n_records // count


def take_shard(records: list[Any], shard_count: int, index: int) -> list[Any]:
    start, end = shard_bounds(len(records), shard_count, index)
    return records[start:end]


def iter_shard(
    path: str | os.PathLike, shard_count: int = 1, index: int = 0, limit: int = 0
) -> Iterator[dict[str, Any]]:
    """Stream shard `index` of the first `limit` (0 = all) records of a file.

    With several shards the file is read twice (a count, then the slice), so memory stays flat.
    """
    records: Iterator[dict[str, Any]] = iter_records(path)
    if limit:
        records = itertools.islice(records, limit)
    if shard_count == 1 and index == 0:
        return records
    n = sum(1 for _ in records)
    start, end = shard_bounds(n, shard_count, index)
    return itertools.islice(iter_records(path), start, end)


def merge_files(
    pool_path: str | os.PathLike, shard_paths: list[str | os.PathLike], output: str | os.PathLike
) -> int:
    """Concatenate shard outputs in pool order; every pool id must appear exactly once."""
    order = {id_key(r["id"]): i for i, r in enumerate(read_records(pool_path))}
    merged: list[tuple[int, dict[str, Any]]] = []
    seen: set = set()
    for path in shard_paths:
        for rec in read_records(path):
            key = id_key(rec["id"])
            if key not in order:
                raise PoolError(f"{path}: id {rec['id']!r} is not in the pool {pool_path}")
            if key in seen:
                raise PoolError(f"{path}: id {rec['id']!r} appears in more than one shard")
            seen.add(key)
            merged.append((order[key], rec))
    if len(seen) != len(order):
        missing = [k[1] for k in order if k not in seen][:5]
        raise PoolError(
            f"merge: {len(order) - len(seen)} pool records missing from the shards "
            f"(first ids: {missing})"
        )
    merged.sort(key=lambda pair: pair[0])
    return write_jsonl(output, (rec for _, rec in merged))
