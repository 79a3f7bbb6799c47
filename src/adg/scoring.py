"""The score and embed stages: stream records through the hidden-state encoder, write results.

score: `generated.jsonl` (ours, or the original ADG repository's generated-answers file) →
`scored.jsonl`, each record plus `dispersion`, `anisotropy`, `score` (and the diagnostics of
`divergence.diagnostics` with `all_metrics`). Records are read and written in chunks, so memory does
not grow with the pool; output is appended chunk by chunk and a killed run resumes, skipping ids
already scored.

embed: `pool.jsonl` → `embeddings.npy`, float32 [N, H] unit-norm instruction vectors, written
chunk by chunk into a memory-mapped .npy.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from adg import divergence, models
from adg.hidden import HiddenStateEncoder
from adg.records import (
    PoolError,
    batched,
    dumps,
    id_key,
    iter_jsonl_tolerant,
    iter_records,
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
) -> ScoreSummary:
    """The score stage (see the module docstring)."""
    weights = weights or divergence.ScoreWeights()
    truncate_partial_line(output_path)
    done = {id_key(r["id"]) for r in iter_jsonl_tolerant(output_path)}
    total = scored = 0
    with open(output_path, "a", encoding="utf-8") as fh:
        for chunk in batched(iter_records(input_path), chunk_records):
            todo = [r for r in chunk if id_key(r["id"]) not in done]
            answers = [
                _answers(r, f"{input_path}: record {total + n} (id {r['id']!r})")
                for n, r in enumerate(chunk)
                if id_key(r["id"]) not in done
            ]
            total += len(chunk)
            if not todo:
                continue
            if encoder is None:
                encoder = HiddenStateEncoder(*models.load(model))
            groups = encoder.answers_batch([r["instruction"] for r in todo], answers)
            for rec, fields in zip(todo, score_vectors(groups, weights, all_metrics), strict=True):
                fh.write(dumps({**rec, **fields}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            scored += len(todo)
            print(f"score: {total} records read, {scored} scored", file=sys.stderr)
    return ScoreSummary(total, scored, total - scored)


def embed_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    model: str | None = None,
    chunk_records: int = 512,
    encoder: HiddenStateEncoder | None = None,
) -> tuple[int, int]:
    """The embed stage; returns the array's shape (N, H)."""
    n = sum(1 for _ in iter_records(input_path))  # first pass: the row count for the memmap
    if not n:
        raise PoolError(f"{input_path}: no records to embed")
    encoder = encoder or HiddenStateEncoder(*models.load(model))
    shape = (n, encoder.hidden_size)
    tmp = f"{output_path}.tmp"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    start = 0
    for chunk in batched(iter_records(input_path), chunk_records):
        out[start : start + len(chunk)] = encoder.instruction_vectors(
            [r["instruction"] for r in chunk]
        )
        start += len(chunk)
        print(f"embed: {start}/{n}", file=sys.stderr)
    out.flush()
    del out
    os.replace(tmp, output_path)
    return shape
