"""Instruction records: the pydantic model, reading pools with reject accounting, JSONL I/O.

A pool is a JSON array or a JSONL file (optionally gzip-compressed). Every record needs a non-empty
string `instruction`; `input` and `output` are optional strings; `id` is an int or a string and
unique; any other field is carried through untouched. Reading never stops at a bad record: it is
reported as a `Reject` naming the file, line and field, and reading goes on. `ingest` also reads
`s3://` URIs (downloaded to a temp file first) and several pool files into one pool.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError, field_validator

from adg.errors import AdgError


class Record(BaseModel):
    """One instruction record; unknown fields are kept as extras."""

    model_config = ConfigDict(extra="allow")

    id: StrictInt | StrictStr | None = None
    instruction: StrictStr
    input: StrictStr = ""
    output: StrictStr = ""

    @field_validator("instruction")
    @classmethod
    def _instruction_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty string")
        return value


@dataclass
class Reject:
    """A record that was not accepted, with where it was and why."""

    file: str
    line: int
    reason: str
    raw: str

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason, "raw": self.raw}


@dataclass
class ReadResult:
    """Accepted records (as plain dicts, field order kept) and the rejects."""

    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    ids_assigned: int = 0
    # Accepted records per source file, in reading order (several files read into one pool).
    per_source: dict[str, int] = field(default_factory=dict)
    # Source files that could not be read at all → why (only when read tolerantly).
    unreadable: dict[str, str] = field(default_factory=dict)


class PoolError(AdgError, ValueError):
    """A pool that cannot be read at all (missing, empty, not JSON): one clear line for the user."""


def open_text(path: str | os.PathLike, mode: str = "r") -> io.TextIOBase:
    """Open a local text file as UTF-8, transparently gunzipping `.gz`."""
    path = str(path)
    if path.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


def _format_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "record"
        msg = e["msg"]
        if e["type"] == "missing":
            msg = "missing"
        parts.append(f"field '{loc}': {msg}")
    return "; ".join(parts)


def validate_record(obj: Any) -> dict[str, Any]:
    """Validate one parsed JSON value; return it (as given, extras kept) or raise ValueError."""
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object (got {type(obj).__name__})")
    try:
        Record.model_validate(obj)
    except ValidationError as err:
        raise ValueError(_format_validation_error(err)) from None
    return obj


def _iter_jsonl(lines: Iterable[str]) -> Iterator[tuple[int, str, Any | Exception]]:
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            yield lineno, line, json.loads(line)
        except json.JSONDecodeError as err:
            yield lineno, line, ValueError(f"malformed JSON: {err.msg} at column {err.colno}")


def _iter_json_array(text: str, path: str) -> Iterator[tuple[int, str, Any | Exception]]:
    """Decode a JSON array element by element so each element keeps its line number."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    n = len(text)

    def skip_ws(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip_ws(pos)
    if pos < n and text[pos] == "]":
        return
    while True:
        pos = skip_ws(pos)
        lineno = text.count("\n", 0, pos) + 1
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise PoolError(
                f"{path}:{err.lineno}: malformed JSON array: {err.msg} at column {err.colno}"
            ) from None
        yield lineno, text[pos:end], obj
        pos = skip_ws(end)
        if pos < n and text[pos] == ",":
            pos += 1
            continue
        if pos < n and text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        raise PoolError(f"{path}:{line}: malformed JSON array: expected ',' or ']'")


def iter_raw(path: str | os.PathLike) -> Iterator[tuple[int, str, Any | Exception]]:
    """Yield (line number, raw text, parsed value or the parse error) for each element of a pool.

    JSONL is streamed line by line, so memory does not grow with the pool; a JSON array (the
    original ADG repository's format) is parsed whole.
    """
    p = str(path)
    if not Path(p).exists():
        raise PoolError(f"{p}: no such file")
    if Path(p).is_dir():
        raise PoolError(f"{p}: is a directory, expected a JSON or JSONL file")
    try:
        with open_text(p) as fh:
            first = ""
            while not first:
                chunk = fh.read(4096)
                if not chunk:
                    raise PoolError(f"{p}: the pool is empty")
                first = chunk.lstrip()[:1]
            fh.seek(0)
            if first == "[":
                yield from _iter_json_array(fh.read(), p)
            else:
                yield from _iter_jsonl(fh)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as err:
        raise PoolError(f"{p}: cannot read as UTF-8 text ({err})") from None


def read_pool(path: str | os.PathLike, id_prefix: str = "") -> ReadResult:
    """Read and validate a pool; bad records become rejects, a missing `id` becomes the position.

    Ids are unique: a second record with an id already seen is rejected. Assigned ids are the
    record's 0-based position among the file's elements, so they are stable across re-runs; an
    assigned id that collides with an explicit one is rejected like any other duplicate. With
    `id_prefix` (several files read into one pool) an assigned id is the string prefix + position.
    """
    result = ReadResult()
    seen: set[Any] = set()
    name = str(path)
    for position, (lineno, raw, value) in enumerate(iter_raw(path)):
        if isinstance(value, Exception):
            result.rejects.append(Reject(name, lineno, str(value), raw))
            continue
        try:
            record = validate_record(value)
        except ValueError as err:
            result.rejects.append(Reject(name, lineno, str(err), raw))
            continue
        if record.get("id") is None:
            new_id = f"{id_prefix}{position}" if id_prefix else position
            record = {"id": new_id, **{k: v for k, v in record.items() if k != "id"}}
            result.ids_assigned += 1
        key = id_key(record["id"])
        if key in seen:
            result.rejects.append(
                Reject(name, lineno, f"field 'id': duplicate id {record['id']!r}", raw)
            )
            continue
        seen.add(key)
        result.records.append(record)
    return result


def id_key(value: Any) -> tuple[str, Any]:
    """Hashable identity of a record id for uniqueness checks and resume."""
    # 1 and "1" are different ids; True is not an int id here (StrictInt rejects it).
    return (type(value).__name__, value)


def iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Stream the records of a file produced by a stage; any bad record is fatal.

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
        yield value


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
                raise PoolError(f"{path}:{lineno}: malformed JSON: {err.msg}") from None


def truncate_partial_line(path: str | os.PathLike) -> None:
    """Cut an interrupted last line off a JSONL file so appending continues cleanly."""
    if not Path(path).exists():
        return
    with open(path, "rb+") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSONL atomically (temp file + rename); return the count."""
    tmp = f"{path}.tmp"
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(dumps(r) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def write_json_array(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Write records as one indented JSON array (the format of top/middle/bottom.json)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(records, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


@dataclass
class IngestSummary:
    accepted: int
    rejected: int
    ids_assigned: int
    # Per source file: {"valid": records accepted, "kept": of those, within `limit`}.
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"ingest: {self.accepted} accepted, {self.rejected} rejected, "
            f"{self.ids_assigned} ids assigned"
        )


def _read_source(
    source: str | os.PathLike, id_prefix: str = "", if_match: str | None = None
) -> ReadResult:
    """`read_pool` on a local path or an s3:// URI; rejects name the URI, not the temp copy.
    `if_match`: the ETag the s3:// object must still have (see `storage.download`)."""
    if not str(source).startswith("s3://"):
        result = read_pool(source, id_prefix)
    else:
        from adg.storage import local_copy

        with local_copy(str(source), if_match=if_match) as path:
            result = read_pool(path, id_prefix)
        for r in result.rejects:
            r.file = str(source)
    result.per_source = {str(source): len(result.records)}
    return result


def _read_tolerant(source: str, id_prefix: str, if_match: str | None) -> ReadResult:
    try:
        return _read_source(source, id_prefix, if_match)
    except PoolError as err:
        out = ReadResult(per_source={source: 0}, unreadable={source: str(err)})
        out.rejects.append(Reject(source, 0, str(err), ""))
        return out


def read_sources(
    sources: list[str], etags: dict[str, str] | None = None, tolerant: bool = False
) -> ReadResult:
    """Read several pool files into one pool; ids must be unique across all of them.

    Assigned ids become "<file name>#<position>", so records without ids in different files do
    not collide. `etags`: {source: ETag} an s3:// source must still have when read. `tolerant`:
    a file that cannot be read at all (not JSON, empty) is a reject and listed in `unreadable`
    instead of an error (recurring curation must not fail on one bad upload forever).
    """
    etags = etags or {}
    if len(sources) == 1 and not tolerant:
        return _read_source(sources[0], if_match=etags.get(sources[0]))
    out = ReadResult()
    seen: set[Any] = set()
    for source in sources:
        prefix = f"{Path(str(source)).name}#" if len(sources) > 1 else ""
        part = (
            _read_tolerant(source, prefix, etags.get(source))
            if tolerant
            else _read_source(source, prefix, etags.get(source))
        )
        out.rejects.extend(part.rejects)
        out.ids_assigned += part.ids_assigned
        out.unreadable.update(part.unreadable)
        out.per_source[str(source)] = 0
        for record in part.records:
            key = id_key(record["id"])
            if key in seen:
                reason = f"field 'id': duplicate id {record['id']!r} (seen in an earlier file)"
                out.rejects.append(Reject(str(source), 0, reason, dumps(record)))
                continue
            seen.add(key)
            out.records.append(record)
            out.per_source[str(source)] += 1
    return out


def ingest(
    source: str | os.PathLike | list[str],
    output: str | os.PathLike,
    rejects: str | os.PathLike | None,
    limit: int = 0,
    etags: dict[str, str] | None = None,
    tolerant: bool = False,
) -> IngestSummary:
    """The ingest stage: validate a pool into `pool.jsonl`, rejected records into `rejects.jsonl`.

    `source` is a local path, an s3:// URI or a list of them (read into one pool). `limit` > 0
    keeps only the first `limit` accepted records (for quick runs on a large pool). `etags` and
    `tolerant` as in `read_sources`; tolerant, a pool with no valid record is not an error (the
    summary says 0 accepted and `per_source` which files gave nothing).
    """
    sources = [str(s) for s in source] if isinstance(source, list) else [str(source)]
    if not sources:
        raise PoolError("ingest: no pool files given")
    result = read_sources(sources, etags=etags, tolerant=tolerant)
    if limit > 0:
        result.records = result.records[:limit]
    per_source, budget = {}, len(result.records)
    for name, valid in result.per_source.items():
        per_source[name] = {"valid": valid, "kept": min(valid, budget)}
        budget -= per_source[name]["kept"]
    if rejects is not None:
        write_jsonl(rejects, (r.to_json() for r in result.rejects))
    if not result.records and tolerant:
        write_jsonl(output, [])
        return IngestSummary(0, len(result.rejects), 0, per_source, result.unreadable)
    if not result.records:
        raise PoolError(
            f"{', '.join(sources)}: no valid records ({len(result.rejects)} rejected"
            + (f", see {rejects})" if rejects else ")")
        )
    write_jsonl(output, result.records)
    return IngestSummary(
        len(result.records),
        len(result.rejects),
        result.ids_assigned,
        per_source,
        result.unreadable,
    )
