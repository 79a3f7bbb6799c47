"""The embed stage: `pool.jsonl` → `embeddings.npy`, float32 [N, H] unit-norm instruction vectors
(`adg.method.hidden`), the input of the cluster stage's bins,
written chunk by chunk into a memory-mapped .npy; a killed run starts over, an output made
with another model or input is refused (`embed_fingerprint`)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from adg import progress
from adg.io import fingerprint, models
from adg.io.checkpoint import move_aside
from adg.io.jsonl import check_writable
from adg.io.reading import batched, check_records, iter_records
from adg.io.records import PoolError
from adg.method.hidden import LAYERS, HiddenStateEncoder
from adg.progress import log


def embed_fingerprint(model: str | None, encoder: HiddenStateEncoder | None) -> dict[str, Any]:
    """The settings an embeddings file is made with (`adg.io.fingerprint`)."""
    return fingerprint.stage_settings(
        "embed",
        models.identity(model or "", encoder),
        layers=list(encoder.layers if encoder is not None else LAYERS),
    )


def _input_digest(input_path: str | os.PathLike) -> str:
    """One hash of every record's id and content, in order (what the rows of the array are)."""
    h = hashlib.sha256()
    for r in iter_records(input_path):
        h.update(f"{json.dumps(r['id'])}:{fingerprint.record_hash(r)}\n".encode())
    return h.hexdigest()[:16]


def embed_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    model: str | None = None,
    chunk_records: int = 512,
    encoder: HiddenStateEncoder | None = None,
    restart: bool = False,
) -> tuple[int, int]:
    """The embed stage; returns the array's shape (N, H).

    The array is written whole (to a temp file, then renamed), so there is no partial output to
    resume; its fingerprint (`<output>.fingerprint.json`, with a digest of the input) says what it
    was made with. An existing output made with other settings (or without a fingerprint) is
    refused; one made with the same settings from the same input is kept as it is (nothing to
    do); from another input it is computed again. `restart` moves an existing output aside.
    """
    n = check_records(input_path)  # first pass: every record checked, rows counted for the memmap
    if not n:
        raise PoolError(f"{input_path}: no records to embed")
    check_writable(output_path)
    fp = embed_fingerprint(model, encoder)
    digest = _input_digest(input_path)
    if restart:
        move_aside(output_path)
    elif os.path.exists(output_path):
        made = fingerprint.read_sidecar(output_path)
        if made is None:
            raise fingerprint.ResumeMismatch(
                f"{output_path} has no {fingerprint.sidecar_path(output_path).name} saying what "
                "it was made with; use a new output or --restart"
            )
        line = fingerprint.mismatch_line(
            str(output_path), {k: v for k, v in made.items() if k != "input_digest"}, fp
        )
        if line is not None:
            raise fingerprint.ResumeMismatch(line)
        if made.get("input_digest") == digest:
            shape = np.load(output_path, mmap_mode="r").shape
            log.info("embed: %s already holds this input's vectors", output_path)
            return int(shape[0]), int(shape[1])
    encoder = encoder or HiddenStateEncoder(*models.load(model))
    shape = (n, encoder.hidden_size)
    tmp = f"{output_path}.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    start = 0
    with progress.bar(n, "embed") as bar:
        for chunk in batched(iter_records(input_path), chunk_records):
            out[start : start + len(chunk)] = encoder.instruction_vectors(
                [r["instruction"] for r in chunk]
            )
            start += len(chunk)
            bar.update(len(chunk))
    out.flush()
    del out
    # The input digest is cleared while the array is replaced: a kill in between leaves an array
    # whose digest matches nothing, so the next run computes it again.
    fingerprint.write_sidecar(output_path, {**fp, "input_digest": None})
    os.replace(tmp, output_path)
    fingerprint.write_sidecar(output_path, {**fp, "input_digest": digest})
    return shape
