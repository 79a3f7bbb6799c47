"""The score stage: stream records through a scorer, write results (embed: `adg.stages.embed`).

score: records → `scored.jsonl`, each record plus `score` (higher is better) and the method's own
fields. Methods (`make_scorer` picks one of `adg.config.SCORE_METHODS`):

* `adg` (default): needs `generated_answers` (ours, or the original ADG repository's file);
  writes `dispersion`, `anisotropy`, `score` (and `divergence.diagnostics` with `all_metrics`).
* `ifd`: Instruction-Following Difficulty of the reference `output` with the backbone
  (adg.method.ifd), conditioned on the prompt generation renders (`prompt_format`: Alpaca, or
  the conversation in the chat template).
* `superfiltering`: the same IFD with a small proxy model (default: the embedded model).
* `random`: a seeded uniform score per id (stable across runs and resumes).

Every input record is validated first (the rules of ingest, unique ids, and for `adg` the
answers); the first bad one is a one-line error naming file, line and field, before any model
loads. Records are read and written in chunks, so memory does not grow with the pool; output is
appended chunk by chunk and a killed run resumes (`adg.io.checkpoint.ResumableOutput`), skipping
records already scored from the same input (id, text and answers); an output made with other
settings (`score_fingerprint`: method, model identity, layers, weights, metrics, seed, prompt
format, as the method uses them) is refused unless `restart` moves it aside. With
`checkpoint_uri` the output is also checkpointed to object storage (see `adg.io.checkpoint`), so a
retried pod resumes a preempted shard.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adg import progress
from adg.config import SCORE_METHODS, CheckpointConfig, SamplingConfig
from adg.errors import InputError
from adg.io import fingerprint, models
from adg.io.checkpoint import ResumableOutput
from adg.io.reading import batched, check_records, iter_records
from adg.io.records import PoolError
from adg.method import divergence
from adg.method.hidden import LAYERS, HiddenStateEncoder
from adg.method.prompts import AUTO, check_prompt_format, resolve_for_file

ANSWERS_FIELD = "generated_answers"

# A scorer maps a chunk of records (and where each came from, for errors) to their new fields.
Scorer = Callable[[list[dict[str, Any]], list[str]], list[dict[str, Any]]]


@dataclass
class ScoreOptions:
    model: str = ""
    weights: divergence.ScoreWeights = field(default_factory=divergence.ScoreWeights)
    all_metrics: bool = False
    proxy_model: str = ""  # superfiltering's small model; empty = the embedded model
    seed: int = 0
    prompt_format: str = SamplingConfig.prompt_format  # what ifd / superfiltering condition on


@dataclass
class ScoreSummary:
    total: int
    scored: int
    resumed: int

    redone: int = 0  # of `scored`: records whose input changed since the output was made

    def line(self) -> str:
        redone = f" ({self.redone} changed since the last run)" if self.redone else ""
        return (
            f"score: {self.scored} scored{redone}, {self.resumed} already done "
            f"({self.total} records)"
        )


def score_fingerprint(
    method: str, opts: ScoreOptions, encoder: HiddenStateEncoder | None = None
) -> dict[str, Any]:
    """The settings a score output is made with (`adg.io.fingerprint`): only those `method` uses."""
    values: dict[str, Any] = {"method": method}
    model: str | None = None
    if method == "adg":
        model = models.identity(opts.model, encoder)
        values.update(
            dispersion_weight=opts.weights.dispersion,
            anisotropy_weight=opts.weights.anisotropy,
            all_metrics=opts.all_metrics,
            layers=list(encoder.layers if encoder is not None else LAYERS),
        )
    elif method in ("ifd", "superfiltering"):
        model = models.model_identity(opts.model if method == "ifd" else opts.proxy_model)
        values["prompt_format"] = opts.prompt_format
    else:
        values["seed"] = opts.seed
    return fingerprint.stage_settings("score", model, **values)


def input_fields(method: str) -> tuple[str, ...]:
    """The fields besides a record's content its score depends on (its per-record hash)."""
    return (ANSWERS_FIELD,) if method == "adg" else ()


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


def _adg_scorer(opts: ScoreOptions, encoder: HiddenStateEncoder | None) -> Scorer:
    enc = encoder or HiddenStateEncoder(*models.load(opts.model))

    def run(chunk: list[dict[str, Any]], where: list[str]) -> list[dict[str, Any]]:
        answers = [_answers(r, w) for r, w in zip(chunk, where, strict=True)]
        groups = enc.answers_batch([r["instruction"] for r in chunk], answers)
        return score_vectors(groups, opts.weights, opts.all_metrics)

    return run


def _ifd_scorer(model_spec: str, prompt_format: str) -> Scorer:
    from adg.method.ifd import IFDScorer

    scorer = IFDScorer(*models.load(model_spec), prompt_format=prompt_format)
    return lambda chunk, _where: scorer.score(chunk)


def _random_scorer(opts: ScoreOptions) -> Scorer:
    def run(chunk: list[dict[str, Any]], _where: list[str]) -> list[dict[str, Any]]:
        # Seeded by (seed, id), not by position: the same id gets the same score on every run.
        out = []
        for r in chunk:
            digest = hashlib.sha256(f"{opts.seed}:{r['id']!r}".encode()).digest()
            u = int.from_bytes(digest[:8], "big") / 2**64
            out.append({"random": u, "score": u})
        return out

    return run


def make_scorer(method: str, opts: ScoreOptions, encoder: HiddenStateEncoder | None) -> Scorer:
    """The scorer of one of SCORE_METHODS; superfiltering is IFD with the proxy model."""
    if method == "adg":
        return _adg_scorer(opts, encoder)
    if method == "random":
        return _random_scorer(opts)
    model = opts.model if method == "ifd" else opts.proxy_model
    return _ifd_scorer(model, opts.prompt_format)


def score_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    model: str | None = None,
    weights: divergence.ScoreWeights | None = None,
    all_metrics: bool = False,
    chunk_records: int = 64,
    encoder: HiddenStateEncoder | None = None,
    method: str = "adg",
    proxy_model: str = "",
    seed: int = 0,
    checkpoint_uri: str = "",
    checkpoint_every: int = CheckpointConfig.checkpoint_every,
    prompt_format: str = SamplingConfig.prompt_format,
    restart: bool = False,
) -> ScoreSummary:
    """The score stage (see the module docstring)."""
    if method not in SCORE_METHODS:
        raise InputError(f"unknown scoring method {method!r}; choose one of {SCORE_METHODS}")
    if prompt_format == AUTO and method in ("ifd", "superfiltering"):
        # IFD conditions on the prompt: the pool's one format (adg.method.prompts), decided here
        # once.
        scoring_model = model if method == "ifd" else proxy_model
        prompt_format = resolve_for_file(AUTO, input_path, scoring_model or "")
    opts = ScoreOptions(
        model or "",
        weights or divergence.ScoreWeights(),
        all_metrics,
        proxy_model,
        seed,
        prompt_format,
    )

    # Every record is checked before the model loads or the output is touched.
    def fits_prompt(record: dict[str, Any], where: str) -> None:
        check_prompt_format(record, prompt_format, where)

    checks = {"adg": _answers, "ifd": fits_prompt, "superfiltering": fits_prompt}
    check_records(input_path, extra=checks.get(method))
    scorer: Scorer | None = None
    total = 0
    fp = score_fingerprint(method, opts, encoder)
    with ResumableOutput(
        output_path, fp, input_fields(method), checkpoint_uri, checkpoint_every, restart=restart
    ) as out:
        keys = [out.key(r) for r in iter_records(input_path)]
        out.keep_only(keys)
        with progress.bar(len(keys), "score" if method == "adg" else f"score ({method})") as bar:
            for chunk in batched(iter_records(input_path), chunk_records):
                where = [
                    f"{input_path}: record {total + n} (id {r['id']!r})"
                    for n, r in enumerate(chunk)
                ]
                todo = [(r, w) for r, w in zip(chunk, where, strict=True) if not out.is_done(r)]
                total += len(chunk)
                if todo:
                    if scorer is None:  # the model loads only when there is work left
                        scorer = make_scorer(method, opts, encoder)
                    records = [r for r, _ in todo]
                    fields = scorer(records, [w for _, w in todo])
                    out.append([{**r, **f} for r, f in zip(records, fields, strict=True)])
                bar.update(len(chunk))
    return ScoreSummary(total, out.written, total - out.written, out.redo)
