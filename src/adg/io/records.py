"""Instruction records: the pydantic model, reading pools with reject accounting, JSONL I/O.

A pool is a JSON array or a JSONL file (optionally gzip- or zstd-compressed), a Parquet file or a
`datasets` folder (`adg.io.tables`), in any of the shapes of `adg.io.shapes`, which maps each record
onto ADG's canonical one. Every canonical record needs a non-empty string `instruction`; `input`,
`output` and `system` are optional strings, `history` a list of earlier turns; `id` is an int or
a string and unique; any other field is carried through untouched. Reading never stops at a bad
record: it is reported as a `Reject` naming the file, line (Parquet: row) and field, and reading
goes on. `ingest` also reads `s3://` URIs (downloaded to a temp file first) and several pool files
into one pool, streaming: accepted records are written as they are read, and with `originals`
each one is also kept in the pool's own shape (`adg.io.handback`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from adg.errors import AdgError
from adg.io import shapes


class Turn(BaseModel):
    """One earlier turn of a conversation (`history`)."""

    role: Literal["user", "assistant"]
    content: StrictStr


class Record(BaseModel):
    """One instruction record; unknown fields are kept as extras."""

    model_config = ConfigDict(extra="allow")

    id: StrictInt | StrictStr | None = None
    instruction: StrictStr
    input: StrictStr = ""
    output: StrictStr = ""
    # A conversation's system prompt and the turns before the last user turn (adg.io.shapes).
    system: StrictStr = ""
    history: list[Turn] = Field(default_factory=list)

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
    line: int  # the line of a text file, the row (from 0) of a Parquet file or datasets folder
    reason: str
    raw: str
    unit: str = "line"  # or "row"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, self.unit: self.line, "reason": self.reason, "raw": self.raw}


@dataclass
class ReadResult:
    """Accepted records (as plain dicts, field order kept) and the rejects."""

    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    ids_assigned: int = 0
    read: int = 0  # items read: always accepted + rejected
    accepted: int = 0
    rejected: int = 0
    stopped_at_limit: bool = False
    # Per source file, in reading order: {"records": accepted from it, "rejected", "complete":
    # read to its end (a file that `limit` cut short, or never reached, is not), "shape": how
    # it was read (adg.io.shapes.Reading.describe)}.
    per_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Source files that could not be read at all → why (only when read tolerantly).
    unreadable: dict[str, str] = field(default_factory=dict)
    # Where records and rejects go: None keeps them in `records` / `rejects`; ingest streams them
    # to its files instead. `on_accept(record, origin)`: origin is the record as the pool has it
    # (a dict, or (batch, index) of a columnar source).
    on_accept: Callable[[dict[str, Any], Any], None] | None = None
    on_reject: Callable[[Reject], None] | None = None

    def accept(self, record: dict[str, Any], origin: Any) -> None:
        self.accepted += 1
        if self.on_accept is None:
            self.records.append(record)
        else:
            self.on_accept(record, origin)

    def reject(self, reject: Reject) -> None:
        self.rejected += 1
        if self.on_reject is None:
            self.rejects.append(reject)
        else:
            self.on_reject(reject)


class PoolError(AdgError, ValueError):
    """A pool that cannot be read at all (missing, empty, not JSON): one clear line for the user."""


def open_text(path: str | os.PathLike, mode: str = "r") -> io.TextIOBase:
    """Open a local text file as UTF-8, transparently gunzipping `.gz`."""
    path = str(path)
    if path.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


def _format_validation_error(err: ValidationError, names: dict[str, str]) -> str:
    parts = []
    for e in err.errors():
        path = [str(p) for p in e["loc"]]
        if path:
            path[0] = names.get(path[0], path[0])
        loc = ".".join(path) or "record"
        msg = e["msg"]
        if e["type"] == "missing":
            msg = "missing"
        parts.append(f"field '{loc}': {msg}")
    return "; ".join(parts)


def validate_record(obj: Any, names: dict[str, str] | None = None) -> dict[str, Any]:
    """Validate one parsed JSON value; return it (as given, extras kept) or raise ValueError.

    `names` (ADG field → the pool's field) makes messages name the pool's own fields."""
    if not isinstance(obj, dict):
        kind = "a JSON array" if isinstance(obj, list) else type(obj).__name__
        raise ValueError(f"not a JSON object (got {kind})")
    try:
        Record.model_validate(obj)
    except ValidationError as err:
        raise ValueError(_format_validation_error(err, names or {})) from None
    return obj


# --- reading a pool file: every element or line becomes exactly one item ----------------------

# Nesting deeper than this is rejected: real records are a few levels deep, and a value nested
# thousands deep (which json parses up to the interpreter's recursion limit, or fails on with
# RecursionError) would break a later stage that walks it.
MAX_DEPTH = 100
# A \uXXXX escape of a UTF-16 surrogate: json.loads accepts a lone one, which no UTF-8 writer can
# write back (UnicodeEncodeError); a valid pair decodes to one character and is fine.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _Unkeepable(ValueError):
    """A value JSON can express (or json parses) that a pool cannot keep and write back."""


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Unkeepable(f"number out of range: {text[:40]}")
    return value


def _bounded_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # longer than sys.get_int_max_str_digits()
        raise _Unkeepable(f"number out of range: an integer of {len(text)} digits") from None


# Raw control characters (a carriage return, a tab) inside strings are accepted: the record's
# meaning is unambiguous, and what we write is escaped again. Numbers that do not fit a float
# (1e400) or an int are refused while parsing (NaN and Infinity, spelled out as Python's json
# writes them, e.g. a collapsed score, are read as they are).
_DECODER = json.JSONDecoder(strict=False, parse_float=_finite_float, parse_int=_bounded_int)
# Syntax only: where a value ends, when `_DECODER` refused what is in it.
_SCANNER = json.JSONDecoder(strict=False)


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def _keep_problem(raw: str, value: Any) -> str | None:
    """Why a parsed value cannot be kept (too deep, a lone surrogate), or None; `raw` is its text
    (cheap tests on it spare walking the value)."""
    if raw.count("[") + raw.count("{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} levels deep"
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as err:
            return f"a string holds a lone UTF-16 surrogate (\\u{ord(err.object[err.start]):04x})"
    return None


def _decode_value(text: str, pos: int = 0, whole: bool = False) -> tuple[Any, int]:
    """(value, end) of the JSON value at `pos` (`whole`: the text must hold nothing else);
    raises json.JSONDecodeError for bad syntax, `_Unkeepable` for a value a pool cannot keep."""
    try:
        if whole:
            value, end = _DECODER.decode(text), len(text)
        else:
            value, end = _DECODER.raw_decode(text, pos)
    except RecursionError:
        raise _Unkeepable(f"nested more than {MAX_DEPTH} levels deep") from None
    problem = _keep_problem(text[pos:end], value)
    if problem is not None:
        raise _Unkeepable(problem)
    return value, end


def _scan_end(text: str, pos: int) -> int | None:
    """Where the JSON value at `pos` ends, by syntax alone (None: it does not parse)."""
    try:
        return _SCANNER.raw_decode(text, pos)[1]
    except (ValueError, RecursionError):
        return None


_BOM = "\ufeff"
_WS = " \t\r\n"
# Bytes that are not UTF-8, as `surrogateescape` decoding leaves them in the text.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_GZIP_ERRORS = (zlib.error, EOFError, gzip.BadGzipFile)
# pyarrow's zstd stream reports damage as OSError ("Truncated compressed stream") or ArrowInvalid.
_ZSTD_ERRORS = (OSError, ValueError)
_CLOSING_LINE = re.compile(r"^([ \t]*)\][ \t\r]*$", re.MULTILINE)

Item = tuple[int, str, Any]  # (line number, raw text, parsed value or the ValueError why not)


def _json_error(err: json.JSONDecodeError, line_offset: int = 0) -> ValueError:
    # json's own messages sometimes end in " at" ("Invalid control character at").
    msg = err.msg.removesuffix(" at")
    where = f"column {err.colno}"
    if line_offset or err.lineno > 1:  # inside a multi-line array: the file's line too
        where = f"line {err.lineno + line_offset}, {where}"
    return ValueError(f"malformed JSON: {msg} ({where})")


def _printable(raw: str) -> str:
    """Raw text safe to write back as UTF-8 (undecodable bytes become U+FFFD)."""
    if _UNDECODABLE.search(raw):
        return raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return raw


def _utf8_error(raw: str) -> ValueError:
    column = _UNDECODABLE.search(raw).start() + 1  # type: ignore[union-attr]
    return ValueError(f"not valid UTF-8 text (first bad byte at column {column})")


def _parse_line(lineno: int, text: str, bad: bool) -> Item:
    """One JSONL line → an item; `bad`: it is not UTF-8 (decoded with surrogateescape)."""
    if bad:
        return lineno, _printable(text), _utf8_error(text)
    try:
        return lineno, text, _decode_value(text, whole=True)[0]
    except json.JSONDecodeError as err:
        return lineno, text, _json_error(err)
    except _Unkeepable as err:
        return lineno, text, ValueError(str(err))


def _line_text(line: bytes) -> tuple[str, bool]:
    """The decoded line and whether it is not UTF-8 (then decoded with surrogateescape)."""
    line = line.removesuffix(b"\n").removesuffix(b"\r")
    try:
        return line.decode("utf-8"), False
    except UnicodeDecodeError:
        return line.decode("utf-8", "surrogateescape"), True


class _Lines:
    """Numbered lines of a binary file, split on "\n" only (a raw "\r" inside a string does not
    end a line); a decompression error ends the iteration and is kept in `error`, the numbers
    of lines that are not UTF-8 in `bad`."""

    def __init__(self, fh, errors: tuple[type[Exception], ...] = _GZIP_ERRORS):
        self.fh = fh
        self.errors = errors
        self.lineno = 0
        self.error: Exception | None = None
        self.bad: set[int] = set()

    def __iter__(self) -> Iterator[tuple[int, str]]:
        try:
            for line in self.fh:
                self.lineno += 1
                text, bad = _line_text(line)
                if bad:
                    self.bad.add(self.lineno)
                if self.lineno == 1:
                    text = text.removeprefix(_BOM)
                yield self.lineno, text
        except self.errors as err:
            self.error = err


def _iter_jsonl(
    lines: Iterable[tuple[int, str]], bad: Callable[[int, str], bool]
) -> Iterator[Item]:
    for lineno, text in lines:
        if text.strip(_WS):
            yield _parse_line(lineno, text, bad(lineno, text))


class _ArrayText:
    """A JSON array read element by element from the text; a malformed element becomes one
    reject and reading resumes at the next element. Text after the closing bracket is left for
    the caller (`rest`)."""

    def __init__(self, text: str, first_line: int = 1, check_utf8: bool = True):
        self.text = text
        self.check_utf8 = check_utf8  # whether any line was not UTF-8
        self.first_line = first_line
        self.rest = ""
        self.rest_line = first_line
        self._counted = (0, first_line)  # (position, its line number): counting is incremental

    def line_at(self, pos: int) -> int:
        start, line = self._counted
        if pos < start:
            start, line = 0, self.first_line
        line += self.text.count("\n", start, pos)
        self._counted = (pos, line)
        return line

    def _skip_ws(self, pos: int) -> int:
        text, n = self.text, len(self.text)
        while pos < n and text[pos] in _WS:
            pos += 1
        return pos

    def _element_end(self, pos: int, follow: str = ",]") -> bool:
        """Whether a value may end before `pos`: what follows is in `follow` (or nothing)."""
        pos = self._skip_ws(pos)
        return pos >= len(self.text) or self.text[pos] in follow

    def _prev_char(self, pos: int) -> str:
        """The last non-whitespace character before `pos` ("" at the start)."""
        text = self.text
        while pos > 0 and text[pos - 1] in _WS:
            pos -= 1
        return text[pos - 1] if pos else ""

    def _indent(self, pos: int) -> int | None:
        """The column of `pos` when only whitespace precedes it on its line, else None."""
        start = self.text.rfind("\n", 0, pos) + 1
        return pos - start if not self.text[start:pos].strip(_WS) else None

    def _resync(self, pos: int) -> int | None:
        """Where the element after a malformed one starts: an object that parses and is followed
        by ',' or ']'. In a pretty-printed array (elements start lines) it must start a line at
        the broken element's indentation, so an object nested inside the broken element is not
        taken for the next one; on one line it must follow a comma."""
        text = self.text
        indent = self._indent(pos)
        q = pos + 1
        while (q := text.find("{", q)) >= 0:
            if indent is None:
                candidate = self._prev_char(q) == ","
            else:  # a missing comma between elements is tolerated here as elsewhere
                candidate = self._indent(q) == indent and self._prev_char(q) in (",", "}")
            if candidate:
                end = _scan_end(text, q)
                if end is not None and self._element_end(end, ",]" if indent is None else ",]{"):
                    return q
            q += 1
        return None

    def _closing_line(self, pos: int, indent: int | None) -> int | None:
        """The end of a line after `pos` holding only ']' (the end of a broken last element),
        indented no deeper than the elements (`indent`), so a nested list's ']' is not it."""
        for m in _CLOSING_LINE.finditer(self.text, pos):
            if indent is None or len(m.group(1)) <= indent:
                return m.end()
        return None

    def items(self) -> Iterator[Item]:
        text, n = self.text, len(self.text)
        pos = self._skip_ws(text.index("[") + 1)
        while True:
            pos = self._skip_ws(pos)
            if pos >= n:
                yield self.line_at(pos), "", ValueError("malformed JSON array: no closing ']'")
                return
            if text[pos] == "]":
                self._set_rest(pos + 1)
                return
            lineno = self.line_at(pos)
            try:
                value, end = _decode_value(text, pos)
            except (json.JSONDecodeError, _Unkeepable) as err:
                if isinstance(err, json.JSONDecodeError):
                    reason = _json_error(err, line_offset=self.first_line - 1)
                else:
                    reason = ValueError(str(err))
                    # Well-formed but not keepable: the element ends where its syntax does.
                    end = _scan_end(text, pos)
                    if end is not None:
                        yield lineno, _printable(text[pos:end]), reason
                        pos = self._skip_ws(end)
                        if pos < n and text[pos] == ",":
                            pos += 1
                        continue
                nxt = self._resync(pos)
                close = self._closing_line(pos, self._indent(pos))
                if nxt is None or (close is not None and close < nxt):
                    stop = close if close is not None else n
                    raw = text[pos:stop].rstrip(_WS + "]").rstrip(",")
                    yield lineno, _printable(raw), reason
                    if close is not None:
                        self._set_rest(close)
                    return
                yield lineno, _printable(text[pos:nxt].rstrip(_WS).rstrip(",")), reason
                pos = nxt
                continue
            raw = text[pos:end]
            if self.check_utf8 and _UNDECODABLE.search(raw):
                yield lineno, _printable(raw), _utf8_error(raw)
            else:
                yield lineno, raw, value
            pos = self._skip_ws(end)
            # A trailing comma before ']' is tolerated; so is a missing comma between elements
            # (reading goes on at the next element rather than dropping the rest).
            if pos < n and text[pos] == ",":
                pos += 1

    def _set_rest(self, pos: int) -> None:
        self.rest = self.text[pos:]
        self.rest_line = self.line_at(pos)


def _items_after_array(array: _ArrayText) -> Iterator[Item]:
    """Lines after an array's closing bracket are read as JSONL (`cat pool.json more.jsonl`)."""
    if not array.rest.strip(_WS):
        return
    lines = array.rest.split("\n")
    yield from _iter_jsonl(
        ((array.rest_line + i, line.removesuffix("\r")) for i, line in enumerate(lines)),
        lambda _n, text: array.check_utf8 and _UNDECODABLE.search(text) is not None,
    )


def _iter_file(lines: _Lines, name: str) -> Iterator[Item]:
    """A pool's items: JSONL, one JSON array (possibly on one line), or an array then JSONL.

    A first line that is a complete JSON array on its own, followed by more lines, is a JSONL
    line holding an array (rejected as not an object); the same line alone is a one-line array.
    """
    it = iter(lines)
    first: tuple[int, str] | None = None
    for lineno, text in it:
        if text.strip(_WS):
            first = (lineno, text)
            break
    if first is None:
        if lines.error is not None:
            raise PoolError(f"{name}: cannot decompress ({lines.error})")
        raise PoolError(f"{name}: the pool is empty")
    lineno, text = first

    def bad(n: int, _text: str) -> bool:
        return n in lines.bad

    if not text.lstrip(_WS).startswith("["):
        yield _parse_line(lineno, text, bad(lineno, text))
        yield from _iter_jsonl(it, bad)
        return
    whole_line = _scan_end(text, len(text) - len(text.lstrip(_WS))) is not None
    if whole_line:  # the array and only whitespace on the line
        whole_line = not text[_scan_end(text, len(text) - len(text.lstrip(_WS))) :].strip(_WS)
    if whole_line:
        nxt = next(((n, t) for n, t in it if t.strip(_WS)), None)
        if nxt is not None:  # JSONL whose first line happens to be an array
            yield _parse_line(lineno, text, bad(lineno, text))
            yield _parse_line(*nxt, bad(*nxt))
            yield from _iter_jsonl(it, bad)
            return
        array = _ArrayText(text, lineno, bad(lineno, text))
        yield from array.items()
        yield from _items_after_array(array)
        return
    # A multi-line JSON array (the original ADG repository's format) is read whole.
    rest = [text] + [t for _, t in it]
    array = _ArrayText("\n".join(rest), lineno, bool(lines.bad))
    yield from array.items()
    yield from _items_after_array(array)


class _RawStream(io.RawIOBase):
    """A pyarrow input stream as a raw binary file, so `io.BufferedReader` splits its lines."""

    def __init__(self, stream):
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.stream.close()
        super().close()


def _open_zstd(path: str) -> io.BufferedReader:
    """A .zst file, decompressed by pyarrow's zstd codec (no extra package)."""
    import pyarrow as pa

    # Small reads: damage loses at most the 64 KiB being decompressed, not the lines before it.
    return io.BufferedReader(_RawStream(pa.input_stream(path, compression="zstd")), 1 << 16)


def _open_gzip(path: str) -> io.BufferedIOBase:
    return gzip.open(path, "rb")


def _open_plain(path: str) -> io.BufferedIOBase:
    return open(path, "rb")


# Suffix → (open for reading bytes, the errors that mean damaged compressed data).
_OPENERS = {".gz": (_open_gzip, _GZIP_ERRORS), ".zst": (_open_zstd, _ZSTD_ERRORS)}


def iter_raw(path: str | os.PathLike, name: str | None = None) -> Iterator[Item]:
    """Yield (line number, raw text, parsed value or the reason it is not) for each element.

    Every JSONL line that is not blank, and every element of a JSON array, is one item, so a
    reader can account for each: a line that is not UTF-8, not JSON, or cut off by a corrupt
    `.gz` is an item holding the error. JSONL is streamed line by line, so memory does not grow
    with the pool; a JSON array (the original ADG repository's format) is parsed whole. A UTF-8
    byte-order mark is ignored. `name` is what messages call the file (an s3:// URI for its
    downloaded copy).
    """
    p = str(path)
    name = name or p
    if not Path(p).exists():
        raise PoolError(f"{name}: no such file")
    if Path(p).is_dir():
        raise PoolError(f"{name}: is a directory, expected a JSON or JSONL file")
    opener, errors = _OPENERS.get(Path(p).suffix, (_open_plain, _GZIP_ERRORS))
    with opener(p) as fh:
        lines = _Lines(fh, errors)
        yield from _iter_file(lines, name)
        if lines.error is not None:
            yield (
                lines.lineno + 1,
                "",
                ValueError(
                    f"corrupt compressed data after line {lines.lineno} ({lines.error}); "
                    "the rest of the file cannot be read"
                ),
            )


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


def id_key(value: Any) -> tuple[str, Any]:
    """Hashable identity of a record id for uniqueness checks and resume."""
    # 1 and "1" are different ids; True is not an int id here (StrictInt rejects it).
    return (type(value).__name__, value)


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
                raise PoolError(f"{path}:{lineno}: {_json_error(err)}") from None


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


def check_writable(path: str | os.PathLike) -> None:
    """Refuse an output that cannot be written, before any work is done for it."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise OSError(f"{path}: cannot write (no such folder {folder})")
    if not os.access(folder, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        raise OSError(f"{path}: cannot write (permission denied)")


@contextlib.contextmanager
def atomic_text(path: str | os.PathLike) -> Iterator[io.TextIOBase]:
    """A text file written beside `path` and renamed onto it when complete. A failure names
    `path` (never the temp file) and leaves neither a partial file nor the temp file behind."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OSError(f"{path}: cannot write ({err.strerror or err})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write records as JSONL atomically (temp file + rename); return the count."""
    n = 0
    with atomic_text(path) as fh:
        for r in records:
            fh.write(dumps(r) + "\n")
            n += 1
    return n


def write_json_array(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Write records as one indented JSON array (the format of top/middle/bottom.json)."""
    with atomic_text(path) as fh:
        json.dump(records, fh, ensure_ascii=False, indent=2)
        fh.write("\n")


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
