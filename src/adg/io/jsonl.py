"""Writing stage files: one JSON record per line (`dumps`, `write_jsonl`), indented JSON arrays
(`write_json_array`), atomically (`atomic_text`: a killed writer never leaves half a file), and
the repair of a JSONL file cut mid-line (`truncate_partial_line`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


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
