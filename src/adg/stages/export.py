"""The export stage: the selected records handed back in the pool's own shape, and the run's files
exported with a manifest.

`write_selected` writes `top.json`'s records as the pool has them (ingest kept them:
`adg.io.handback.Originals`): `selected.parquet` with the pool's schema when every pool file was
columnar, else `selected.jsonl`, best first, plus `SCORE_COLUMNS` (an `adg_` prefix, so they never
overwrite a field of the pool's own). `export_selection` copies the subsets, the selection report
and those files to an s3:// prefix with a run manifest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from adg.io import storage
from adg.io.fingerprint import comparable
from adg.io.handback import HandbackError
from adg.io.jsonl import atomic_text, dumps
from adg.io.reading import iter_records
from adg.io.records import id_key
from adg.io.tables import is_parquet_file

# ADG's field in top.json → the field added to each selected record in the pool's shape.
SCORE_COLUMNS = {
    "score": "adg_score",
    "dispersion": "adg_dispersion",
    "anisotropy": "adg_anisotropy",
}


SELECTED = {"parquet": "selected.parquet", "jsonl": "selected.jsonl"}


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
