"""The selected records handed back in the pool's own shape, ready for the user's training stack.

ADG works on canonical records (`adg.io.shapes`); `top.json` keeps that format. The user's trainer
(TRL, axolotl, LLaMA-Factory) reads the shape the pool came in, so ingest also keeps every
accepted record exactly as it was read (`Originals`, in pool order: the same keys and nesting,
a columnar pool's rows with its Arrow schema), and export writes the selected ones back
(`write_selected`): `selected.parquet` with the pool's schema when every pool file was
columnar (Parquet or a `datasets` folder), else `selected.jsonl`, each record in `top.json`'s
order (best first) plus `SCORE_COLUMNS`. The score fields carry an `adg_` prefix so they never
overwrite a field of the pool's own (a pool may well have a `score`); a pool that already has
them (a selection read back in) gets them replaced.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from adg.errors import AdgError
from adg.io import storage
from adg.io.fingerprint import comparable
from adg.io.records import atomic_text, dumps, id_key, iter_records
from adg.io.tables import is_parquet_file, json_value

# ADG's field in top.json → the field added to each selected record in the pool's shape.
SCORE_COLUMNS = {
    "score": "adg_score",
    "dispersion": "adg_dispersion",
    "anisotropy": "adg_anisotropy",
}
SELECTED = {"parquet": "selected.parquet", "jsonl": "selected.jsonl"}
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


def selected_name(originals: str | os.PathLike) -> str:
    """`selected.parquet` or `selected.jsonl`, by what the originals file is."""
    return SELECTED["parquet" if is_parquet_file(originals) else "jsonl"]


def _positions(selected: list[dict[str, Any]], pool: str | os.PathLike) -> list[int]:
    """The position in the pool (= in the originals) of each selected record."""
    wanted = {id_key(r["id"]): n for n, r in enumerate(selected)}
    positions: list[int | None] = [None] * len(selected)
    for position, record in enumerate(iter_records(pool)):
        n = wanted.get(id_key(record["id"]))
        if n is not None:
            positions[n] = position
    missing = [selected[n]["id"] for n, p in enumerate(positions) if p is None]
    if missing:
        raise HandbackError(f"{pool}: has no record with id {missing[0]!r} of the selection")
    return positions  # type: ignore[return-value]


def _scores(record: dict[str, Any]) -> dict[str, float | None]:
    out = {}
    for field, column in SCORE_COLUMNS.items():
        value = record.get(field)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        out[column] = float(value) if number else None
    return out


def write_selected(
    selected_path: str | os.PathLike,
    pool_path: str | os.PathLike,
    originals_path: str | os.PathLike,
    output: str | os.PathLike,
) -> int:
    """Write the records of `selected_path` (top.json) as the pool has them, plus the score
    fields, to `output` (Parquet or JSONL like `originals_path`); return how many."""
    selected = json.loads(Path(selected_path).read_text(encoding="utf-8"))
    positions = _positions(selected, pool_path)
    scores = [_scores(r) for r in selected]
    if is_parquet_file(originals_path):
        _write_parquet(originals_path, positions, scores, output)
    else:
        _write_jsonl(originals_path, positions, scores, output)
    return len(selected)


def _write_jsonl(originals, positions, scores, output) -> None:
    order = {p: n for n, p in enumerate(positions)}
    picked: list[str | None] = [None] * len(positions)
    with open(originals, encoding="utf-8") as fh:
        for position, line in enumerate(fh):
            n = order.get(position)
            if n is not None:
                picked[n] = line
    with atomic_text(output) as out:
        for n, line in enumerate(picked):
            if line is None:
                raise HandbackError(f"{originals}: fewer records than the pool")
            record = json.loads(line)
            for column in SCORE_COLUMNS.values():
                record.pop(column, None)
            out.write(dumps({**record, **scores[n]}) + "\n")


def _write_parquet(originals, positions, scores, output) -> None:
    """Take the selected rows batch by batch (memory: the selection, not the pool)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(originals)
    order = {p: n for n, p in enumerate(positions)}
    parts, where, start = [], [], 0
    for batch in source.iter_batches(batch_size=8192):
        local = [p - start for p in range(start, start + batch.num_rows) if p in order]
        if local:
            parts.append(batch.take(local))
            where += [order[start + i] for i in local]
        start += batch.num_rows
    schema = source.schema_arrow
    table = pa.Table.from_batches(parts, schema=schema) if parts else schema.empty_table()
    if len(where) != len(positions):
        raise HandbackError(f"{originals}: fewer rows than the pool")
    # Back into the selection's order (best first).
    rank = [0] * len(where)
    for row, n in enumerate(where):
        rank[n] = row
    table = table.take(rank)
    for column in SCORE_COLUMNS.values():
        if column in table.column_names:
            table = table.drop_columns([column])
    for column in SCORE_COLUMNS.values():
        table = table.append_column(column, pa.array([s[column] for s in scores], pa.float64()))
    table = table.replace_schema_metadata(schema.metadata)
    tmp = f"{output}.tmp"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_selection(
    subsets: dict[str, str | os.PathLike],
    report_path: str | os.PathLike,
    export_uri: str,
    run_id: str,
    model: str,
    parameters: dict[str, Any],
    extra: dict[str, str | os.PathLike] | None = None,
) -> str:
    """Export `top/middle/bottom.json`, the selection report and the `extra` files (name → path,
    e.g. selected.parquet) with a run manifest; with an empty `export_uri` nothing happens and
    "" is returned."""
    if not export_uri:
        return ""
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    counts = {
        name: report[name]["count"]
        for name in subsets
        if isinstance(report.get(name), dict) and "count" in report[name]
    }
    files = {f"{name}.json": path for name, path in subsets.items()}
    files["selection_report.json"] = report_path
    files.update(extra or {})
    manifest = {
        "run_id": run_id,
        "model": model,
        "parameters": {k: comparable(v) for k, v in parameters.items()},
        "counts": {"records": report.get("records"), **counts},
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return storage.export_results(files, export_uri, manifest)
