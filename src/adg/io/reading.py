"""Reading pools with reject accounting: a pool's files (any shape of `adg.io.shapes`, JSON, JSONL,
Parquet or a `datasets` folder) into canonical records, every bad record a `Reject` naming file,
line and field; and reading ADG's own stage files back (`iter_records`, `check_records`).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adg.io import shapes
from adg.io.jsonscan import Item, iter_raw, json_error
from adg.io.records import PoolError, ReadResult, Reject, id_key, validate_record


@dataclass(frozen=True)
class PoolFormat:
    """How to read a pool's files: `format` ("auto" or a shape of `adg.io.shapes.SHAPES`) and
    `columns` (the parsed `--columns`: ADG field → the pool's field)."""

    format: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, fmt: str = "auto", columns: str = "") -> PoolFormat:
        """From the flags, checked (one line on a bad value) before any file is read."""
        shapes.check_options(fmt or "auto", columns)
        return cls(fmt or "auto", shapes.parse_columns(columns))


def _text_items(path: str | os.PathLike, name: str, how: PoolFormat):
    """(the file's Reading, its items as (number, raw text, value, origin)); the shape comes
    from the first object in the file."""
    items = iter_raw(path, name)
    head: list[Item] = []
    keys = None
    for item in items:
        head.append(item)
        if isinstance(item[2], dict):
            keys = item[2].keys()
            break
    reading = shapes.reading(how.format, how.columns, keys)
    stream = ((n, raw, value, value) for n, raw, value in itertools.chain(head, items))
    return reading, stream


def _table_items(path: str | os.PathLike, name: str, how: PoolFormat):
    """(the source's Reading, its rows as (row, None, value, (batch, index))); the shape comes
    from the columns. Damage after some rows becomes one item holding the error."""
    from adg.io.tables import TableError, iter_rows, schema

    try:
        columns = schema(path, name).names
    except TableError as err:
        raise PoolError(str(err)) from None
    reading = shapes.reading(how.format, how.columns, columns)

    def rows():
        read = 0
        try:
            for row, batch, index, value in iter_rows(path, name):
                read += 1
                yield row, None, value, (batch, index)
        except TableError as err:
            if not read:
                raise PoolError(str(err)) from None
            yield read, "", ValueError(f"{err}; the rest cannot be read"), None

    return reading, rows()


class SeenIds:
    """The ids read so far and where each was first: one packed int per id (the file's index and
    the line or row) rather than a "file:line" string, about 100 bytes a record (a million
    records: ~100 MiB, the only part of ingest that grows with the pool). Ids are ints or
    strings (validated), and a dict keeps 1 and "1" apart."""

    def __init__(self):
        self.first: dict[int | str, int] = {}
        self.names: list[tuple[str, str]] = []  # (file, "line" or "row")

    def where(self, record_id: int | str) -> str | None:
        packed = self.first.get(record_id)
        if packed is None:
            return None
        name, unit = self.names[packed >> 40]
        number = packed & ((1 << 40) - 1)
        return f"{name}:{number}" if unit == "line" else f"{name} row {number}"

    def add(self, record_id: int | str, source: int, number: int) -> None:
        self.first[record_id] = (source << 40) | number


def read_into(
    result: ReadResult,
    path: str | os.PathLike,
    name: str,
    seen: SeenIds,
    id_prefix: str = "",
    limit: int = 0,
    how: PoolFormat | None = None,
) -> None:
    """Read one file's items into `result`: each one accepted or rejected, until `limit`."""
    from adg.io.tables import is_table

    how = how or PoolFormat()
    table = is_table(path)
    unit = "row" if table else "line"
    reading, items = (_table_items if table else _text_items)(path, name, how)
    counts = result.per_source.setdefault(name, {"records": 0, "rejected": 0})
    counts["shape"] = reading.describe()
    source = len(seen.names)
    seen.names.append((name, unit))
    before = (result.accepted, result.rejected)

    def reject(number: int, raw: Any, reason: str, value: Any = None) -> None:
        if raw is None:  # a row of a columnar file: its values, as the pool has them
            raw = json.dumps(value, ensure_ascii=False, default=str)
        result.reject(Reject(name, number, reason, raw, unit))

    try:
        for position, (number, raw, value, origin) in enumerate(items):
            if limit and result.accepted >= limit:
                result.stopped_at_limit = True
                return
            result.read += 1
            if isinstance(value, Exception):
                reject(number, raw, str(value))
                continue
            try:
                canonical = value
                if isinstance(value, dict):
                    canonical = shapes.to_canonical(value, reading, nulls_absent=table)
                record = validate_record(canonical, reading.names)
            except ValueError as err:
                reject(number, raw, str(err), value)
                continue
            if record.get("id") is None:
                new_id = f"{id_prefix}{position}" if id_prefix else position
                record = {"id": new_id, **{k: v for k, v in record.items() if k != "id"}}
                result.ids_assigned += 1
            first = seen.where(record["id"])
            if first is not None:
                reason = f"field 'id': duplicate id {record['id']!r} (first at {first})"
                reject(number, raw, reason, value)
                continue
            seen.add(record["id"], source, number)
            result.accept(record, origin)
    finally:
        counts["records"] += result.accepted - before[0]
        counts["rejected"] += result.rejected - before[1]


def read_pool(
    path: str | os.PathLike,
    id_prefix: str = "",
    name: str | None = None,
    limit: int = 0,
    how: PoolFormat | None = None,
) -> ReadResult:
    """Read and validate a pool; bad records become rejects, a missing `id` becomes the position.

    Every item (JSONL line or array element) is exactly one of accepted or rejected:
    `len(records) + len(rejects) == read`. Ids are unique: a second record with an id already
    seen is rejected. Assigned ids are the record's 0-based position among the file's elements,
    so they are stable across re-runs; an assigned id that collides with an explicit one is
    rejected like any other duplicate. With `id_prefix` (several files read into one pool) an
    assigned id is the string prefix + position. `limit` > 0 stops reading once that many
    records are accepted. `how`: the shape to read (default: detected, `adg.io.shapes`).
    """
    result = ReadResult()
    read_into(result, path, name or str(path), SeenIds(), id_prefix, limit, how)
    return result


def iter_numbered(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each record of a file produced by a stage; a bad one is fatal.

    Used for stage outputs and files of the original ADG repository, which are trusted. Records
    without `id` get their position, as in `read_pool`.
    """
    for position, (lineno, _raw, value) in enumerate(iter_raw(path)):
        if isinstance(value, Exception):
            raise PoolError(f"{path}:{lineno}: {value}")
        if not isinstance(value, dict):
            raise PoolError(f"{path}:{lineno}: not a JSON object")
        if value.get("id") is None:
            value = {"id": position, **value}
        yield lineno, value


def check_records(
    path: str | os.PathLike, extra: Callable[[dict[str, Any], str], None] | None = None
) -> int:
    """Validate a stage's input file before any work starts; return its record count.

    Every record must pass the rules of ingest (`validate_record`) and ids must be unique; the
    first violation is one `PoolError` naming the file, line and field. Stage inputs come from
    ingest, so a bad record here means a hand-made or wrong file: stopping is safer than
    dropping records the other stages' files (e.g. clusters.npy) still count. `extra(record,
    where)` adds a stage's own checks (raising `PoolError`).
    """
    seen: dict[Any, int] = {}
    n = 0
    for lineno, record in iter_numbered(path):
        try:
            validate_record(record)
        except ValueError as err:
            raise PoolError(f"{path}:{lineno}: {err}") from None
        key = id_key(record["id"])
        if key in seen:
            raise PoolError(
                f"{path}:{lineno}: field 'id': duplicate id {record['id']!r} "
                f"(first at line {seen[key]})"
            )
        seen[key] = lineno
        if extra is not None:
            extra(record, f"{path}:{lineno} (id {record['id']!r})")
        n += 1
    return n


def iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Stream the records of a stage file (see `iter_numbered`)."""
    for _lineno, record in iter_numbered(path):
        yield record


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a stage file (see `iter_records`)."""
    return list(iter_records(path))


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` items (the last may be shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_jsonl_tolerant(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the complete records of a JSONL file that a killed writer may have left half-written.

    A last line without its newline is an interrupted write and is skipped; a bad line elsewhere is
    an error.
    """
    if not Path(path).exists():
        return
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    for lineno, line in enumerate(lines[:-1], start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise PoolError(f"{path}:{lineno}: {json_error(err)}") from None


def read_sources(
    sources: list[str],
    limit: int = 0,
    etags: dict[str, str] | None = None,
    tolerant: bool = False,
    how: PoolFormat | None = None,
    result: ReadResult | None = None,
) -> ReadResult:
    """Read one or several pool files (local paths or s3:// URIs) into one pool.

    Ids must be unique across all of them. With several files, assigned ids become
    "<file name>#<position>", so records without ids in different files do not collide. Rejects
    and messages name the URI, not the downloaded copy. `limit` > 0 stops reading once that many
    records are accepted. `etags`: {source: ETag} an s3:// source must still have when read.
    `tolerant`: a file that cannot be read at all (empty, not a pool) is one reject and listed in
    `unreadable` instead of an error (recurring curation must not fail on one bad upload forever).
    `how`: the shape (detected per file by default); `result`: where to read into (one with
    `on_accept` / `on_reject` set streams the records instead of keeping them).
    """
    from adg.io.storage import local_copy

    etags = etags or {}
    out = result or ReadResult()
    seen = SeenIds()
    for source in sources:
        name = str(source)
        prefix = f"{Path(name).name}#" if len(sources) > 1 else ""
        try:
            with local_copy(name, if_match=etags.get(name)) as path:
                read_into(out, path, name, seen, prefix, limit, how)
        except PoolError as err:
            if not tolerant:
                raise
            out.unreadable[name] = str(err)
            out.reject(Reject(name, 0, str(err), ""))
            out.read += 1
        counts = out.per_source.setdefault(name, {"records": 0, "rejected": 0})
        counts["complete"] = not out.stopped_at_limit
        if out.stopped_at_limit:
            break
    return out
