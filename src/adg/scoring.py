"""The score and embed stages: stream records through the hidden-state encoder, write results.

score: `generated.jsonl` (ours, or the original ADG repository's generated-answers file) →
`scored.jsonl`, each record plus `dispersion`, `anisotropy`, `score` (and the diagnostics of
`divergence.diagnostics` with `all_metrics`). Records are read and written in chunks, so memory does
not grow with the pool; output is appended chunk by chunk and a killed run resumes, skipping ids
already scored. With `checkpoint_uri` the output is also checkpointed to object storage (see
`adg.checkpoint`), so a retried pod resumes a preempted shard.

embed: `pool.jsonl` → `embeddings.npy`, float32 [N, H] unit-norm instruction vectors, written
chunk by chunk into a memory-mapped .npy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from adg import divergence, models
from adg.checkpoint import RemoteCheckpoint
from adg.hidden import HiddenStateEncoder
from adg.records import (
    PoolError,
    dumps,
    id_key,
    iter_jsonl_tolerant,
    read_records,
    truncate_partial_line,
)

ANSWERS_FIELD = "generated_answers"


@dataclass
class ScoreSummary:
    total: int
    scored: int
    resumed: int

    def line(self) -> str:
        return f"score: {self.scored} scored, {self.resumed} already done ({self.total} records)"


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _answers(record: dict[str, Any], where: str) -> list[str]:
    answers = record.get(ANSWERS_FIELD)
    if not isinstance(answers, list) or not all(isinstance(a, str | None) for a in answers):
        raise PoolError(f"{where}: field '{ANSWERS_FIELD}' must be a list of strings")
    if len(answers) < 2:
        raise PoolError(f"{where}: field '{ANSWERS_FIELD}' needs at least 2 answers")
    return [a or "" for a in answers]


def score_vectors(
    groups: list[np.ndarray], weights: divergence.ScoreWeights, all_metrics: bool
) -> list[dict[str, float]]:
    """Per-record result fields from [K_i, H] answer vectors; records with equal K share one
    stacked eigendecomposition."""
    results: list[dict[str, float]] = [{} for _ in groups]
    by_k: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        by_k.setdefault(len(g), []).append(i)
    for idx in by_k.values():
        v = np.stack([groups[i] for i in idx])
        d, a = divergence.dispersion_anisotropy(v)
        s = divergence.combine(d, a, weights)
        extra = divergence.diagnostics(v) if all_metrics else {}
        for j, i in enumerate(idx):
            results[i] = {
                "dispersion": float(d[j]),
                "anisotropy": float(a[j]),
                "score": float(s[j]),
            }
            results[i].update({name: float(vals[j]) for name, vals in extra.items()})
    return results


def score_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    model: str | None = None,
    weights: divergence.ScoreWeights | None = None,
    all_metrics: bool = False,
    chunk_records: int = 64,
    encoder: HiddenStateEncoder | None = None,
    checkpoint_uri: str = "",
    checkpoint_every: int = 64,
) -> ScoreSummary:
    """The score stage (see the module docstring)."""
    weights = weights or divergence.ScoreWeights()
    records = read_records(input_path)
    checkpoint = RemoteCheckpoint(checkpoint_uri, checkpoint_every)
    checkpoint.restore(output_path)
    truncate_partial_line(output_path)
    done = {id_key(r["id"]) for r in iter_jsonl_tolerant(output_path)}
    todo = [r for r in records if id_key(r["id"]) not in done]
    for n, r in enumerate(todo):
        _answers(r, f"{input_path}: record {n} (id {r['id']!r})")
    if todo and encoder is None:
        encoder = HiddenStateEncoder(*models.load(model))
    scored = 0
    with open(output_path, "a", encoding="utf-8") as fh:
        for chunk in _chunks(todo, chunk_records):
            groups = encoder.answers_batch(
                [r["instruction"] for r in chunk], [_answers(r, "") for r in chunk]
            )
            for rec, fields in zip(chunk, score_vectors(groups, weights, all_metrics), strict=True):
                fh.write(dumps({**rec, **fields}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            scored += len(chunk)
            checkpoint.progress(output_path, len(chunk))
            print(f"score: {len(records) - len(todo) + scored}/{len(records)}", file=sys.stderr)
    if scored:
        checkpoint.flush(output_path)
    return ScoreSummary(len(records), scored, len(records) - len(todo))


def embed_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    model: str | None = None,
    chunk_records: int = 512,
    encoder: HiddenStateEncoder | None = None,
) -> tuple[int, int]:
    """The embed stage; returns the array's shape (N, H)."""
    records = read_records(input_path)
    if not records:
        raise PoolError(f"{input_path}: no records to embed")
    encoder = encoder or HiddenStateEncoder(*models.load(model))
    shape = (len(records), encoder.hidden_size)
    tmp = f"{output_path}.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    for start in range(0, len(records), chunk_records):
        chunk = records[start : start + chunk_records]
        out[start : start + len(chunk)] = encoder.instruction_vectors(
            [r["instruction"] for r in chunk]
        )
        print(f"embed: {start + len(chunk)}/{len(records)}", file=sys.stderr)
    out.flush()
    del out
    os.replace(tmp, output_path)
    return shape
