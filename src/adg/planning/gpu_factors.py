"""Measured GPU efficiency factors for `adg plan`: the share of a card's peak each phase reaches.

`adg plan` turns FLOPs into seconds as FLOPs / (peak · efficiency). Its GPU factors are assumed
until a run of `bench.gpu` on a real card measures them; measured ones live in the package
data file `data/gpu_factors.json`, one entry per `adg plan --gpu` name, each with the device, date,
shape and command that measured it, so `adg plan` can say where its numbers come from. A GPU
without an entry keeps the assumed factors (`adg.planning.plan.EFFICIENCY["gpu"]`).

Entries are added by `python -m bench.gpu --write-factors RESULTS.json`, which refuses a dry run
or a result without a GPU: nothing estimated is ever written here as measured.

    {"devices": {"h200": {"forward": 0.41, "decode": 0.06, "device": "NVIDIA H200",
                          "date": "2026-12-01", "shape": "llama3-8b",
                          "command": "python -m bench.gpu --output ..."}}}

`forward` is the score stage's useful FLOPs (2 · parameters read · real tokens) over time and the
card's dense bf16 peak (`adg.planning.plan.GPU_PEAK`); `decode` the same for generate's decoded
tokens over generate's time less its prefill. `ADG_GPU_FACTORS` names another file (a user's own
runs, tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from adg import package_data
from adg.errors import InputError

FILE = "gpu_factors.json"
ENV = "ADG_GPU_FACTORS"
FIELDS = ("forward", "decode", "device", "date", "shape", "command")


def factors_path() -> Path:
    return Path(os.environ.get(ENV) or package_data.path(FILE))


def load(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """{plan GPU name: entry}, every entry checked (fields present, factors in (0, 1])."""
    path = Path(path) if path else factors_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: malformed JSON: {err.msg}") from None
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, dict):
        raise InputError(f"{path}: field 'devices': missing or not an object")
    for gpu, entry in devices.items():
        missing = [f for f in FIELDS if not isinstance(entry, dict) or entry.get(f) in (None, "")]
        if missing:
            raise InputError(f"{path}: devices.{gpu}: field '{missing[0]}' missing")
        for f in ("forward", "decode"):
            value = entry[f]
            # bool is an int in Python: `true` in the file is no factor
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise InputError(f"{path}: devices.{gpu}.{f}: {value!r} is not in (0, 1]")
    return devices


def lookup(gpu: str, path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The measured factors of `gpu` as `adg.planning.plan` uses them (forward, decode, source),
    or None."""
    entry = load(path).get(gpu)
    if entry is None:
        return None
    source = (
        f"measured by `python -m bench.gpu` on {entry['device']}, {entry['date']}, "
        f"{entry['shape']} shape: {entry['command']}"
    )
    return {"forward": float(entry["forward"]), "decode": float(entry["decode"]), "source": source}
