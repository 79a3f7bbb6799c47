"""The selected records handed back in the pool's own shape, ready for the user's training stack.

ADG works on canonical records (`adg.io.shapes`); `top.json` keeps that format. The user's trainer
(TRL, axolotl, LLaMA-Factory) reads the shape the pool came in, so ingest also keeps every
accepted record exactly as it was read (`Originals`, in pool order: the same keys and nesting,
a columnar pool's rows with its Arrow schema: Parquet when every pool file was columnar (Parquet
or a `datasets` folder), else JSONL), and the export stage writes the selected ones back
(`adg.stages.export.write_selected`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from adg.errors import AdgError
from adg.io.jsonl import dumps
from adg.io.tables import json_value

ROW_GROUP_ROWS = 65536  # rows per row group of the originals (Parquet's usual order of size)


class HandbackError(AdgError, ValueError):
    """The selected records cannot be matched to the pool's own records: one line."""


class Originals:
    """The accepted records as the pool has them, written in pool order while ingest reads.

    `tabular` (every source is columnar): a Parquet file whose schema is the first source's
    (with its metadata), later sources' rows cast to it; else JSONL, a columnar row as JSON
    values. `path` None keeps nothing. The file appears complete or not at all (temp + rename).
    """

    def __init__(self, path: str | os.PathLike | None, tabular: bool):
        self.path = None if path is None else str(path)
        self.kind = "parquet" if tabular else "jsonl"
        self._tmp = f"{self.path}.tmp"
        self._writer = None  # pyarrow ParquetWriter, or a text file
        self._batch = None  # the batch whose accepted rows are still being collected
        self._rows: list[int] = []
        self._pending: list[Any] = []  # slices of batches not yet written
        self._pending_rows = 0
        self._schema = None

    def __enter__(self) -> Originals:
        if self.path is not None and self.kind == "jsonl":
            self._writer = open(self._tmp, "w", encoding="utf-8")
        return self

    def add(self, origin: Any) -> None:
        """One accepted record: its parsed dict, or (batch, index) of a columnar row."""
        if self.path is None:
            return
        if self.kind == "jsonl":
            if isinstance(origin, tuple):
                batch, index = origin
                origin = json_value(batch.slice(index, 1).to_pylist()[0])
            self._writer.write(dumps(origin) + "\n")
            return
        batch, index = origin
        if batch is not self._batch:
            self._take()
            self._batch = batch
        self._rows.append(index)

    def _take(self) -> None:
        """The accepted rows of the current batch, as slices of it (runs of consecutive rows:
        no copy, and no pyarrow.compute, whose import alone takes a second)."""
        rows, batch = self._rows, self._batch
        self._rows = []
        if rows and self._pending and not batch.schema.equals(self._pending[0].schema):
            self._write()  # another file's schema: its rows go into a row group of their own
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i] != rows[i - 1] + 1:
                self._pending.append(batch.slice(rows[start], i - start))
                self._pending_rows += i - start
                start = i
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._write()

    def _write(self) -> None:
        """Write what is pending as one row group."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending)
        self._pending, self._pending_rows = [], 0
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self._tmp, self._schema)
        elif not table.schema.equals(self._schema):
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, ValueError) as err:
                raise HandbackError(
                    f"the pool's files have different columns ({err}); ingest them separately"
                ) from None
        self._writer.write_table(table)

    def __exit__(self, kind, _value, _tb) -> None:
        if self.path is None:
            return
        try:
            if kind is None and self.kind == "parquet":
                self._take()
                self._write()
        finally:
            if self._writer is not None:
                self._writer.close()
        if kind is not None:
            Path(self._tmp).unlink(missing_ok=True)
            return
        if self._writer is None:  # nothing accepted: an empty JSONL file
            Path(self._tmp).write_text("", encoding="utf-8")
        os.replace(self._tmp, self.path)
