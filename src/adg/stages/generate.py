"""Sampling K answers per instruction: a transformers backend (CPU/GPU) and a vLLM backend (GPU).

Each output record is the input record plus `generated_answers` (a list of K strings). Output is
appended batch by batch and flushed, so a run killed half-way resumes on the next call
(`adg.io.checkpoint.ResumableOutput`): records already in the output with the same input text are
skipped, a record whose text changed is sampled again, and an output made with other settings
(`generation_fingerprint`: K, temperature, top-p, max tokens, seed, prompt format, backend, the
model's identity) is refused unless `restart` moves it aside.

Seeds. The transformers backend samples fixed slices of the pool, each seeded from (`seed`, batch
index): a row's random draws depend on its batch (padding, the shared generator), so the batch
size and shard count are part of its fingerprint, and a batch with any record left to do is
sampled again whole; the same pool, model and seed then give the same answers on every resume.
The vLLM backend seeds every request from (`seed`, record id) (`record_seed`), so a record's
answers do not depend on its batch.

In a cluster the pool is split into shards (`shard_index` of `shard_count`, see `adg.stages.shard`)
and each shard's output is also checkpointed to object storage (`adg.io.checkpoint`), so a preempted
pod's retry continues where the last checkpoint left off.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from typing import Any

from adg import progress
from adg.config import CheckpointConfig, GenerateConfig, SamplingConfig
from adg.errors import InputError
from adg.io import fingerprint, models
from adg.io.checkpoint import ResumableOutput
from adg.io.reading import batched, check_records
from adg.method.prompts import (
    AUTO,
    adds_special_tokens,
    build_prompt,
    check_prompt_format,
    resolve_for_file,
)
from adg.stages.shard import iter_shard

BACKENDS = ("auto", "hf", "vllm")


@dataclass
class GenerateSummary:
    total: int
    generated: int
    resumed: int
    backend: str
    redone: int = 0  # of `generated`: records whose text changed since the output was made

    def line(self) -> str:
        redone = f" ({self.redone} changed since the last run)" if self.redone else ""
        return (
            f"generate: {self.generated} generated{redone}, {self.resumed} already done "
            f"({self.total} records, backend {self.backend})"
        )


def check_sampling(cfg: SamplingConfig) -> None:
    """Refuse settings that cannot sample, before any file is touched or model loaded."""
    if cfg.num_samples < 2:
        raise InputError("--num-samples must be at least 2 (divergence needs several answers)")
    if cfg.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1, got {cfg.max_new_tokens}")
    if not cfg.temperature > 0:
        raise InputError(f"--temperature must be above 0 for sampling, got {cfg.temperature}")
    if not 0 < cfg.top_p <= 1:
        raise InputError(f"--top-p must be in (0, 1], got {cfg.top_p}")


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    return "vllm" if torch.cuda.is_available() and importlib.util.find_spec("vllm") else "hf"


def batch_seed(seed: int, batch_index: int) -> int:
    return (seed * 1_000_003 + batch_index) % (2**63)


def record_seed(seed: int, record_id: int | str) -> int:
    """The vLLM request seed of one record: from (`seed`, id), not its position (1 and "1" are
    different ids and get different seeds)."""
    text = f"{seed}:{json.dumps(record_id, ensure_ascii=False)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % (2**63)


def generation_fingerprint(
    cfg: SamplingConfig, backend: str, model_identity: str, shard_count: int = 1
) -> dict[str, Any]:
    """The settings a generate output is made with (`adg.io.fingerprint`)."""
    values: dict[str, Any] = {
        "backend": backend,
        "num_samples": cfg.num_samples,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "max_new_tokens": cfg.max_new_tokens,
        "seed": cfg.seed,
        "prompt_format": cfg.prompt_format,
    }
    if backend == "hf":  # batch-seeded: a record's answers depend on its batch (module docstring)
        values.update(batch_size=cfg.batch_size, shard_count=shard_count)
    return fingerprint.stage_settings("generate", model_identity, **values)


class HFSampler:
    """Batched sampling with `transformers.generate` (left padding, K return sequences).

    `loaded` is a (tokenizer, model) pair already in memory, used instead of loading `model_spec`
    (bench.gpu builds models from a config with random weights). `generate_options` are extra
    keyword arguments for `generate`, none by default; the benchmark forces every answer to the
    cap (`min_new_tokens`) and compares KV-cache implementations through them.
    """

    name = "hf"

    def __init__(self, model_spec: str | None, cfg: SamplingConfig, loaded=None):
        self.tokenizer, self.model = loaded if loaded is not None else models.load(model_spec)
        self.tokenizer.padding_side = "left"
        self.cfg = cfg
        self.tokens = 0  # generated so far (for tokens/s)
        self.generate_options: dict[str, Any] = {}

    def sample(self, records: list[dict[str, Any]], batch_index: int) -> list[list[str]]:
        import torch

        cfg = self.cfg
        prompts = [build_prompt(r, cfg.prompt_format, self.tokenizer) for r in records]
        special = adds_special_tokens(cfg.prompt_format)
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=special)
        enc = enc.to(self.model.device)
        torch.manual_seed(batch_seed(cfg.seed, batch_index))
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                do_sample=True,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_new_tokens=cfg.max_new_tokens,
                num_return_sequences=cfg.num_samples,
                pad_token_id=self.tokenizer.pad_token_id,
                **self.generate_options,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        self.tokens += int((new != self.tokenizer.pad_token_id).sum())
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        k = cfg.num_samples
        return [[t.strip() for t in texts[i * k : (i + 1) * k]] for i in range(len(records))]


class VLLMSampler:
    """vLLM sampling: one engine per process, n=K samples per prompt, tensor parallel on request.

    Prompts are passed as token ids encoded exactly as the transformers backend encodes them
    (`adds_special_tokens`: BOS for Alpaca text, none added to a chat template that has its own).
    `tensor_parallel_size` GPUs hold one model copy; `gpu_memory_utilization` is the share of each
    GPU's memory vLLM may take for weights and KV cache.
    """

    name = "vllm"

    def __init__(
        self,
        model_spec: str | None,
        cfg: SamplingConfig,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
    ):
        from vllm import LLM  # optional extra: `pip install adg[generate]`

        path = models.resolve_model(model_spec)
        kwargs: dict[str, Any] = {}
        # A GGUF file carries its tokenizer; a HF tokenizer beside it (faster) is used if present.
        if path.is_file() and path.suffix == ".gguf" and (path.parent / "tokenizer.json").is_file():
            kwargs["tokenizer"] = str(path.parent)
        self.llm = LLM(
            model=str(path),
            seed=cfg.seed,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            **kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.cfg = cfg
        self.tokens = 0  # generated so far (for tokens/s)

    def sample(self, records: list[dict[str, Any]], batch_index: int) -> list[list[str]]:
        from vllm import SamplingParams

        cfg = self.cfg
        # One request per record, seeded from (seed, id): answers independent of the batch.
        params = [
            SamplingParams(
                n=cfg.num_samples,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                max_tokens=cfg.max_new_tokens,
                seed=record_seed(cfg.seed, r["id"]),
            )
            for r in records
        ]
        prompts = [
            {
                "prompt_token_ids": self.tokenizer(
                    build_prompt(r, cfg.prompt_format, self.tokenizer),
                    add_special_tokens=adds_special_tokens(cfg.prompt_format),
                )["input_ids"]
            }
            for r in records
        ]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        self.tokens += sum(len(c.token_ids) for o in outs for c in o.outputs)
        return [[c.text.strip() for c in o.outputs] for o in outs]


def generate_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    model: str | None = None,
    cfg: SamplingConfig | None = None,
    backend: str = GenerateConfig.backend,
    limit: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    checkpoint_uri: str = "",
    checkpoint_every: int = CheckpointConfig.checkpoint_every,
    tensor_parallel_size: int = GenerateConfig.tensor_parallel_size,
    gpu_memory_utilization: float = GenerateConfig.gpu_memory_utilization,
    sampler: HFSampler | VLLMSampler | None = None,
    restart: bool = False,
) -> GenerateSummary:
    """The generate stage: `pool.jsonl` (or one shard of it) → `generated.jsonl`, resumable.

    `checkpoint_uri` (an s3:// object, optional) is restored before work starts and updated every
    `checkpoint_every` records. The two vLLM settings are ignored by the transformers backend.
    `sampler`, when given, is used instead of one built from `model` and `backend` (like
    `score_file`'s `encoder`: one model in memory for several calls); its own settings
    (`sampler.cfg`) are then the ones used, `cfg` is ignored. An existing output made with other
    settings is refused (`adg.io.fingerprint.ResumeMismatch`); `restart` moves it aside instead.
    """
    cfg = sampler.cfg if sampler is not None else cfg or SamplingConfig()
    check_sampling(cfg)
    if cfg.prompt_format == AUTO:  # the pool's one format, before anything is fingerprinted
        tokenizer = getattr(sampler, "tokenizer", None)
        cfg = replace(cfg, prompt_format=resolve_for_file(AUTO, input_path, model, tokenizer))
        if sampler is not None:
            sampler.cfg = cfg

    # Every record must fit the prompt format (no conversation cut down to fit Alpaca's).
    def fits_prompt(record: dict[str, Any], where: str) -> None:
        check_prompt_format(record, cfg.prompt_format, where)

    check_records(input_path, extra=fits_prompt)
    name = sampler.name if sampler is not None else resolve_backend(backend)
    if sampler is not None and model is None:
        identity = models.in_memory_identity(getattr(sampler, "model", sampler))
    else:
        identity = models.model_identity(model)
    fp = generation_fingerprint(cfg, name, identity, shard_count)
    total = 0
    with ResumableOutput(
        output_path, fp, (), checkpoint_uri, checkpoint_every, restart=restart
    ) as out:
        # This run's records (id, input hash): output lines of any other are dropped.
        keys = [out.key(r) for r in iter_shard(input_path, shard_count, shard_index, limit=limit)]
        out.keep_only(keys)
        size = len(keys)
        records = iter_shard(input_path, shard_count, shard_index, limit=limit)
        with progress.bar(size, "generate") as bar:
            tokens = progress.Tokens(bar)
            # Fixed slices of the shard, so batch b (and its seed) is the same on every resume.
            for b, batch in enumerate(batched(records, cfg.batch_size)):
                total += len(batch)
                if all(out.is_done(r) for r in batch):
                    bar.update(len(batch))
                    continue
                if sampler is None:
                    sampler = (
                        VLLMSampler(model, cfg, tensor_parallel_size, gpu_memory_utilization)
                        if name == "vllm"
                        else HFSampler(model, cfg)
                    )
                # A kill can land inside a batch, or one record of it changed: the whole batch is
                # sampled again (same records, same seed), so the records it still lacks get the
                # answers of an uninterrupted run.
                before = sampler.tokens
                answers = sampler.sample(batch, b)
                out.append(
                    [
                        {**r, "generated_answers": a}
                        for r, a in zip(batch, answers, strict=True)
                        if not out.is_done(r)
                    ]
                )
                tokens.add(sampler.tokens - before)
                bar.update(len(batch))
    return GenerateSummary(total, out.written, total - out.written, name, out.redo)
