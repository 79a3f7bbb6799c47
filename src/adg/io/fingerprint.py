"""What a result was made with: a settings fingerprint per output, an input hash per record.

A resumable output (generate's and score's JSONL, their object-store checkpoints, a curation
index's entries) is only ever continued under the settings it was started with. The fingerprint
of a run is one flat dict of the settings that change results: the stage's own settings, the
model's identity (`adg.io.models.model_identity`: the spec plus a digest of its config and weights
index) and the code's result-format version (`RESULT_FORMAT`, raised whenever a stage's output
for the same settings would change), with the stage's name (`stage_settings` builds it for
generate, score and embed). It is kept beside the output as `<output>.fingerprint.json`.

Per record, `record_hash` is a hash of the input fields the result depends on: the record's
canonical content (`adg.io.shapes.canonical_content`, the one definition of "the same record"), plus
the stage's own inputs (score: the generated answers). It is computed from an output line itself
(every output record carries its input fields), so it needs no extra field: a record whose text
changed under the same id no longer matches and is done again.

`first_difference` names the first setting (in sorted order) on which two fingerprints differ;
`ResumeMismatch` is the one-line refusal built from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from adg.errors import InputError
from adg.io.shapes import canonical_content

# Raise when the same settings would now give other output (a changed formula, a new field).
RESULT_FORMAT = 1
SIDECAR_SUFFIX = ".fingerprint.json"


class ResumeMismatch(InputError):
    """An existing output (or checkpoint) was made with other settings than this run's."""


# --- settings -----------------------------------------------------------------------------------


def comparable(value: Any) -> Any:
    """A setting as compared: numbers normalised (2.0 and 2 are one setting; KFP passes dict
    values as strings, "2.0"), tuples as lists (as JSON gives them back)."""
    if isinstance(value, tuple | list):
        return [comparable(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


def settings(model: str | os.PathLike | None = None, **values: Any) -> dict[str, Any]:
    """One fingerprint: `model` (its id as given, or an identity) and the other settings, sorted,
    normalised by `comparable`."""
    out: dict[str, Any] = {}
    if model is not None:
        out["model"] = str(model)
    for key, value in sorted(values.items()):
        out[key] = comparable(value)
    return out


def stage_settings(stage: str, model: str | os.PathLike | None, **values: Any) -> dict[str, Any]:
    """The fingerprint of a stage's resumable output: `settings` plus what every such output
    carries, the stage's name and the code's result format (`RESULT_FORMAT`)."""
    return settings(model, stage=stage, result_format=RESULT_FORMAT, **values)


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value)


def differences(made: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The settings on which two fingerprints differ, sorted by name."""
    return [k for k in sorted(set(made) | set(wanted)) if made.get(k) != wanted.get(k)]


def first_difference(made: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, str, str] | None:
    """(setting, value it was made with, value asked for now) of the first difference, or None."""
    diff = differences(made, wanted)
    if not diff:
        return None
    k = diff[0]
    return k, _show(made.get(k)), _show(wanted.get(k))


def mismatch_line(what: str, made: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """`<what> was made with k=old, this run asks for new; use a new output or --restart`."""
    diff = first_difference(made, wanted)
    if diff is None:
        return None
    key, old, new = diff
    return (
        f"{what} was made with {key}={old}, this run asks for {new}; use a new output or --restart"
    )


# --- the sidecar beside an output ---------------------------------------------------------------


def sidecar_path(output: str | os.PathLike) -> Path:
    return Path(f"{output}{SIDECAR_SUFFIX}")


def encode(fingerprint: dict[str, Any]) -> bytes:
    return (json.dumps(fingerprint, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def decode(data: bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(
            f"{where}: not a fingerprint (not JSON); use a new output or --restart"
        ) from None
    if not isinstance(value, dict):
        raise InputError(
            f"{where}: not a fingerprint (not an object); use a new output or --restart"
        )
    return value


def read_sidecar(output: str | os.PathLike) -> dict[str, Any] | None:
    path = sidecar_path(output)
    if not path.is_file():
        return None
    return decode(path.read_bytes(), str(path))


def write_sidecar(output: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
    """Write atomically (a kill never leaves half a fingerprint)."""
    path = sidecar_path(output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(encode(fingerprint))
    os.replace(tmp, path)


# --- per record ---------------------------------------------------------------------------------


def record_hash(record: dict[str, Any], fields: tuple[str, ...] = ()) -> str:
    """Hash (16 hex digits) of what a record's result depends on: its canonical content plus the
    stage's own input `fields` (e.g. `generated_answers`)."""
    key = [canonical_content(record), [record.get(f) for f in fields]]
    text = json.dumps(key, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def aside_name(output: str | os.PathLike) -> Path:
    """A name beside `output` that nothing has yet: `<output>.before-restart-<n>`."""
    n = 1
    while True:
        candidate = Path(f"{output}.before-restart-{n}")
        if not candidate.exists() and not sidecar_path(candidate).exists():
            return candidate
        n += 1
