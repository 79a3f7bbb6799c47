"""The ingest stage: a pool (local files or s3:// URIs, any shape of `adg.io.shapes`) validated into
`pool.jsonl` and `rejects.jsonl`, streaming, with the accepted records also kept in the pool's own
shape (`adg.io.handback.Originals`) for export.

`ingest` reads the pool with `adg.io.reading.read_sources`, writes
the stage's files and returns an `IngestSummary` (every item read is exactly one of accepted or
rejected).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from adg.io.handback import Originals
from adg.io.jsonl import atomic_text, dumps
from adg.io.reading import PoolFormat, read_sources
from adg.io.records import PoolError, ReadResult
from adg.io.tables import is_table


@dataclass
class IngestSummary:
    accepted: int
    rejected: int
    ids_assigned: int
    read: int = 0  # accepted + rejected: every item read is exactly one of them
    limit: int = 0  # the --limit that stopped reading early, or 0
    per_source: dict[str, dict[str, Any]] = field(default_factory=dict)  # as in ReadResult
    unreadable: dict[str, str] = field(default_factory=dict)
    originals: str = ""  # "parquet" or "jsonl" when the pool's own records were kept

    def line(self) -> str:
        stopped = f", stopped at --limit {self.limit}" if self.limit else ""
        return (
            f"ingest: {self.accepted} accepted + {self.rejected} rejected = {self.read} read"
            f" ({self.ids_assigned} ids assigned{stopped})"
        )

    def source_lines(self) -> list[str]:
        """One line per file: its shape and its counts."""
        return [
            f"ingest: {name}: {c['shape']}, {c['records']} accepted, {c['rejected']} rejected"
            for name, c in self.per_source.items()
            if "shape" in c
        ]

    def lines(self) -> list[str]:
        return [*self.source_lines(), self.line()]


def _no_records(sources: list[str], result: ReadResult, rejects: Any) -> PoolError:
    where = f", see {rejects})" if rejects else ")"
    hint = ""
    if any("(default)" in c.get("shape", "") for c in result.per_source.values()):
        hint = "; read as alpaca (no other shape's fields found): give --format or --columns"
    return PoolError(
        f"{', '.join(sources)}: no valid records ({result.rejected} rejected{where}{hint}"
    )


def ingest(
    source: str | os.PathLike | list[str],
    output: str | os.PathLike,
    rejects: str | os.PathLike | None,
    limit: int = 0,
    etags: dict[str, str] | None = None,
    tolerant: bool = False,
    how: PoolFormat | None = None,
    originals: str | os.PathLike | None = None,
) -> IngestSummary:
    """The ingest stage: validate a pool into `pool.jsonl`, rejected records into `rejects.jsonl`.

    `source` is a local path, an s3:// URI or a list of them (read into one pool). Every item
    read (a JSONL line that is not blank, an element of a JSON array, a row of a Parquet file)
    is exactly one of accepted or rejected. `limit` > 0 stops reading once `limit` records are
    accepted (for quick runs on a large pool); what lies beyond is not read, so it is neither.
    `etags` and `tolerant` as in `read_sources`; tolerant, a pool with no valid record is not an
    error (the summary says 0 accepted and `per_source` which files gave nothing). `how`: the
    pool's shape (`PoolFormat`; detected per file by default). `originals`: also write each
    accepted record as the pool has it, in pool order (`adg.io.handback.Originals`: Parquet when
    every source is columnar, else JSONL). Records and rejects are written as they are read.
    """
    sources = [str(s) for s in source] if isinstance(source, list) else [str(source)]
    if not sources:
        raise PoolError("ingest: no pool files given")
    if limit < 0:
        raise PoolError(f"ingest: --limit must be 0 (all) or positive, got {limit}")
    kept = Originals(originals, tabular=all(is_table(s) for s in sources))
    with atomic_text(rejects) if rejects is not None else open(os.devnull, "w") as rej:
        empty = False
        try:
            with atomic_text(output) as out, kept:

                def accept(record: dict[str, Any], origin: Any) -> None:
                    out.write(dumps(record) + "\n")
                    kept.add(origin)

                result = ReadResult(
                    on_accept=accept, on_reject=lambda r: rej.write(dumps(r.to_json()) + "\n")
                )
                read_sources(sources, limit, etags, tolerant, how, result)
                if not result.accepted and not tolerant:
                    raise _NoRecords
        except _NoRecords:
            empty = True
    if empty:
        raise _no_records(sources, result, rejects)
    return IngestSummary(
        result.accepted,
        result.rejected,
        result.ids_assigned,
        result.read,
        limit if result.stopped_at_limit else 0,
        result.per_source,
        result.unreadable,
        kept.kind if originals is not None else "",
    )


class _NoRecords(Exception):
    """Nothing accepted: the output is not written (the rejects are)."""
