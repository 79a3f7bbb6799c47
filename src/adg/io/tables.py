"""Columnar pools: Parquet files and `datasets` folders (`Dataset.save_to_disk`), read in record
batches with pyarrow, so memory holds one batch of rows as Python objects at a time.

A `datasets` folder holds `state.json` (its Arrow files, in order), `dataset_info.json` and
`data-NNNNN-of-NNNNN.arrow` files in Arrow's streaming format; a `DatasetDict` folder
(`dataset_dict.json`) holds one such folder per split and is read when it has a single split.
Rows are numbered from 0 across a source's files, as `dataset[i]` and `DataFrame.iloc[i]` count
them; an assigned id is that number. Values that JSON has no type for (timestamps, decimals,
bytes) are written to `pool.jsonl` as text; the originals keep their Arrow types.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adg.errors import AdgError

TABLE_SUFFIXES = (".parquet", ".arrow")
BATCH_ROWS = 1024
PARQUET_MAGIC = b"PAR1"


class TableError(AdgError, ValueError):
    """A columnar pool that cannot be read at all: one line naming it."""


def is_dataset_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file())


def is_table(name: str | os.PathLike) -> bool:
    """Whether a source is read with pyarrow: a .parquet or .arrow file or a `datasets` folder
    (by name for an s3:// URI, which is a file)."""
    text = str(name)
    return text.endswith(TABLE_SUFFIXES) or (
        not text.startswith("s3://") and is_dataset_folder(text)
    )


def is_parquet_file(path: str | os.PathLike) -> bool:
    """Whether a file is Parquet (by its magic bytes, so artifacts without a suffix count)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def _dataset_dir(path: Path, name: str) -> Path:
    """The folder of one `Dataset` (a `DatasetDict`'s single split)."""
    index = path / "dataset_dict.json"
    if not index.is_file():
        return path
    try:
        splits = json.loads(index.read_text(encoding="utf-8"))["splits"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise TableError(f"{name}: dataset_dict.json is not a datasets index ({err})") from None
    if len(splits) != 1:
        raise TableError(
            f"{name}: a DatasetDict with splits {', '.join(splits)}; give one split's folder, "
            f"e.g. {name.rstrip('/')}/{splits[0]}"
        )
    return path / splits[0]


def arrow_files(path: str | os.PathLike, name: str) -> list[Path]:
    """The Arrow files of a `datasets` folder, in the order of its state.json."""
    folder = _dataset_dir(Path(path), name)
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        files = [folder / f["filename"] for f in state["_data_files"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise TableError(f"{name}: not a datasets folder (state.json: {err})") from None
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise TableError(f"{name}: state.json lists {missing[0]}, which is not there")
    return files


def _open_arrow(path: Path):
    """A reader of record batches of one Arrow file, streaming format (datasets) or file format."""
    import pyarrow as pa

    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_file(source)


def _kind(path: Path, name: str) -> str:
    if path.is_dir():
        if not is_dataset_folder(path):
            raise TableError(f"{name}: a folder that is not a datasets folder (no state.json)")
        return "datasets"
    return "arrow" if path.suffix == ".arrow" else "parquet"


def schema(path: str | os.PathLike, name: str):
    """The Arrow schema of a columnar source (with its metadata, e.g. Hugging Face's features)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    try:
        kind = _kind(p, name)
        if kind == "parquet":
            return pq.read_schema(p)
        first = arrow_files(p, name)[0] if kind == "datasets" else p
        return _open_arrow(first).schema
    except (pa.ArrowException, OSError) as err:
        raise TableError(f"{name}: not a readable {_label(p)} ({_line(err)})") from None


def _line(err: Exception) -> str:
    """pyarrow's message on one line (some span several)."""
    return " ".join(str(err).split())


def _label(path: Path) -> str:
    return "datasets folder" if path.is_dir() else f"{path.suffix.lstrip('.')} file"


def iter_batches(path: str | os.PathLike, name: str, rows: int = BATCH_ROWS):
    """Record batches of at most `rows` rows, in order. A file that cannot be opened is a
    `TableError`; damage found later raises pyarrow's error (the caller keeps the rows before)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    kind = _kind(p, name)
    if kind == "parquet":
        try:
            # Row group by row group, without pre-buffering or threads: one row group in memory
            # at a time (pyarrow's defaults read ~10 ahead: bench/ingest.py), and damage in one
            # is found when it is reached, after the rows before it.
            parquet = pq.ParquetFile(p, pre_buffer=False)
        except (pa.ArrowException, OSError) as err:
            raise TableError(f"{name}: not a readable Parquet file ({_line(err)})") from None
        for group in range(parquet.num_row_groups):
            yield from parquet.iter_batches(rows, row_groups=[group], use_threads=False)
        return
    files = arrow_files(p, name) if kind == "datasets" else [p]
    for f in files:
        try:
            reader = _open_arrow(f)
        except (pa.ArrowException, OSError) as err:
            why = _line(err)
            raise TableError(f"{name}: {f.name} is not a readable Arrow file ({why})") from None
        for batch in reader:
            for start in range(0, batch.num_rows, rows):
                yield batch.slice(start, rows)


def json_native(arrow_schema) -> bool:
    """Whether every column's values come out of `to_pylist` as JSON types already."""
    import pyarrow.types as t

    def native(typ) -> bool:
        if t.is_struct(typ):
            return all(native(typ.field(i).type) for i in range(typ.num_fields))
        if t.is_list(typ) or t.is_large_list(typ) or t.is_fixed_size_list(typ):
            return native(typ.value_type)
        return (
            t.is_string(typ)
            or t.is_large_string(typ)
            or t.is_integer(typ)
            or t.is_floating(typ)
            or t.is_boolean(typ)
            or t.is_null(typ)
        )

    return all(native(f.type) for f in arrow_schema)


def json_value(value: Any) -> Any:
    """A Python value from Arrow as a JSON value: dates and times in ISO 8601, decimals and
    other numbers as text, bytes as base64, maps as objects."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if value and all(isinstance(p, tuple) and len(p) == 2 for p in value):
            return {str(k): json_value(v) for k, v in value}  # an Arrow map
        return [json_value(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, decimal.Decimal | dt.timedelta):
        return str(value)
    return str(value)


Row = tuple[int, Any, int, dict[str, Any]]  # (row number, its batch, index in the batch, values)


def iter_rows(path: str | os.PathLike, name: str) -> Iterator[Row]:
    """Each row of a columnar source as (row number from 0, batch, index, dict of JSON values).

    One batch at a time is turned into Python objects. A source that turns out damaged after
    some rows raises `TableError` naming the row reached; the rows before it were yielded."""
    import pyarrow as pa

    row = 0
    convert = None
    batches = iter_batches(path, name)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as err:
            what = (
                f"damaged data after row {row - 1}"
                if row
                else f"not a readable {_label(Path(path))}"
            )
            raise TableError(f"{name}: {what} ({_line(err)})") from None
        if convert is None:
            convert = (lambda d: d) if json_native(batch.schema) else json_value
        for i, values in enumerate(batch.to_pylist()):
            yield row, batch, i, convert(values)
            row += 1
