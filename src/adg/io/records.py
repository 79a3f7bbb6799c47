"""Instruction records: ADG's canonical record (the pydantic model), its validation, and the
accounting of a read (`Reject`, `ReadResult`, `PoolError`).

Every canonical record needs a non-empty string `instruction`; `input`, `output` and `system` are
optional strings, `history` a list of earlier turns; `id` is an int or a string and unique
(`id_key` compares ids across int and str); any other field is carried through untouched. A bad
record is a `Reject` naming the file, line (Parquet: row) and field, and reading goes on.

The rest of the record I/O, one job per module: `adg.io.jsonscan` (the tolerant JSON scanner),
`adg.io.reading` (pools of any shape of `adg.io.shapes`, JSON, JSONL, Parquet or a `datasets`
folder, read with reject counting; stage files read back), `adg.io.jsonl` (writing stage files);
the ingest stage itself is `adg.stages.ingest`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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


def id_key(value: Any) -> tuple[str, Any]:
    """Hashable identity of a record id for uniqueness checks and resume."""
    # 1 and "1" are different ids; True is not an int id here (StrictInt rejects it).
    return (type(value).__name__, value)
