"""The tolerant JSON scanner under pool reading: every element of a JSON array or line of a JSONL
file (plain, gzip or zstd) becomes exactly one item, a record or a problem, and reading goes on.

`iter_raw(path)` yields `Item`s (line number, the decoded value or the reason it is not one, the
raw text for the rejects file). A broken element of an array is skipped up to its end, so one bad
record costs one reject, not the file; values nested deeper than `MAX_DEPTH` or numbers Python
cannot hold are refused, not crashed on. Shape-aware reading with reject counting is
`adg.io.reading`.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from adg.io.records import PoolError


def open_text(path: str | os.PathLike, mode: str = "r") -> io.TextIOBase:
    """Open a local text file as UTF-8, transparently gunzipping `.gz`."""
    path = str(path)
    if path.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


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


def json_error(err: json.JSONDecodeError, line_offset: int = 0) -> ValueError:
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
        return lineno, text, json_error(err)
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
                    reason = json_error(err, line_offset=self.first_line - 1)
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
