"""Preflight: the checks a run makes in seconds, on CPU, before any GPU pod is asked for.

`run_preflight(parameters, artifact_uri, run_id)` takes the run's pipeline parameters (a dict by
their pipeline names; absent names are not checked) and

1. checks that they are consistent: a pool or a pool prefix, GPU counts and sizes ≥ 1, a positive
   budget, shares within (0, 1], known selectors, strategies and backends, s3:// where only object
   storage makes sense (`check_parameters`);
2. checks the object store with the credentials in the environment (the Kubernetes Secret's):
   every bucket named is reachable, the input pool exists, the prefix can be listed, the ledger
   (when present) is one, an s3:// model prefix holds files, and the prefixes the run writes to
   (export, checkpoints, ledger) accept a write (a probe object, deleted again) (`check_storage`);
3. resolves the checkpoint prefix: `checkpoint_uri` as given, or, when empty, `checkpoints/` beside
   the run's artifacts under the pipeline root (from the preflight's own artifact URI) when that is
   on S3 and writable with these credentials, so a preempted GPU pod resumes by default; "none"
   turns checkpoints off.

Every problem found is collected; `PreflightError` carries them all on one line. That the pipeline
root itself is writable is proven by the KFP launcher uploading the preflight's report artifact.

What needs the pool read is checked right after ingest, still on CPU: `route_after_ingest` (the
pipeline's `curation_route` task) refuses a budget larger than the valid records.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from adg import storage

log = logging.getLogger(__name__)

NO_CHECKPOINTS = "none"
# Pipeline parameters that count GPUs (each GPU task's limit) or sizes that must be ≥ 1.
AT_LEAST_ONE = (
    "shard_count",
    "select_budget",
    "generate_tensor_parallel_size",
    "embed_gpu_count",
    "score_gpu_count",
    "train_num_gpus",
    "evaluate_gpu_count",
    "analyse_gpu_count",
    "generate_max_new_tokens",
    "generate_batch_size",
    "cluster_count",
    "checkpoint_every",
    "analyse_batch_size",
)
AT_LEAST_ZERO = ("ingest_limit", "cluster_pca_dims", "train_max_steps", "evaluate_limit")
CHOICES = {
    "generate_backend": ("auto", "hf", "vllm"),
    "generate_prompt_format": ("alpaca", "chat"),
    "evaluate_backend": ("auto", "hf", "vllm"),
}
S3_ONLY = ("ingest_pool_prefix", "ingest_ledger_uri", "export_uri")


class PreflightError(ValueError):
    """The run cannot work: every reason, on one line."""


def check_parameters(p: dict[str, Any]) -> list[str]:
    """Problems with the parameter values alone (no I/O)."""
    problems: list[str] = []
    if "ingest_input" in p and not (p.get("ingest_input") or p.get("ingest_pool_prefix")):
        problems.append("ingest_input or ingest_pool_prefix: give a pool or a pool prefix")
    for name in AT_LEAST_ONE:
        if name in p and not _number(p[name]) >= 1:
            problems.append(f"{name}={_show(p[name])}: must be at least 1")
    for name in AT_LEAST_ZERO:
        if name in p and not _number(p[name]) >= 0:
            problems.append(f"{name}={_show(p[name])}: must not be negative")
    if "generate_num_samples" in p and not _number(p["generate_num_samples"]) >= 2:
        problems.append(
            f"generate_num_samples={_show(p['generate_num_samples'])}: at least 2 answers are "
            "needed for a divergence"
        )
    for name in ("generate_gpu_memory_utilization", "generate_top_p"):
        if name in p and not 0 < _number(p[name]) <= 1:
            problems.append(f"{name}={_show(p[name])}: must be in (0, 1]")
    if "generate_temperature" in p and not _number(p["generate_temperature"]) >= 0:
        shown = _show(p["generate_temperature"])
        problems.append(f"generate_temperature={shown}: must not be negative")
    weights = [p[k] for k in ("score_dispersion_weight", "score_anisotropy_weight") if k in p]
    if weights and (min(map(_number, weights)) < 0 or sum(map(_number, weights)) <= 0):
        problems.append("score_dispersion_weight, score_anisotropy_weight: ≥ 0, not both 0")
    if "select_strategy" in p:
        from adg.selection import STRATEGIES

        if p["select_strategy"] not in STRATEGIES:
            problems.append(
                f"select_strategy={p['select_strategy']!r}: one of {', '.join(sorted(STRATEGIES))}"
            )
    for name, allowed in CHOICES.items():
        if name in p and p[name] not in allowed:
            problems.append(f"{name}={_show(p[name])}: one of {', '.join(allowed)}")
    if "selectors" in p:
        problems += _check_selectors(p["selectors"])
    if "accelerator_type" in p and not str(p["accelerator_type"]).strip():
        problems.append("accelerator_type: empty (e.g. nvidia.com/gpu, amd.com/gpu)")
    for name in S3_ONLY:
        if p.get(name) and not storage.is_s3(p[name]):
            problems.append(f"{name}={_show(p[name])}: must be an s3:// URI")
    checkpoint = p.get("checkpoint_uri") or ""
    if checkpoint and checkpoint != NO_CHECKPOINTS and not storage.is_s3(checkpoint):
        problems.append(
            f"checkpoint_uri={checkpoint!r}: an s3:// prefix, empty or {NO_CHECKPOINTS}"
        )
    return problems


def _show(value: Any) -> str:
    """A value as the user typed it: a pipeline dict parameter turns 3 into 3.0 on the way."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _check_selectors(selectors: Any) -> list[str]:
    from adg.config import SCORE_METHODS

    if not isinstance(selectors, list) or not selectors:
        return [f'selectors={selectors!r}: a non-empty list, e.g. ["adg", "random"]']
    unknown = [s for s in selectors if s not in SCORE_METHODS]
    if unknown:
        return [f"selectors: unknown {unknown}; known: {', '.join(sorted(SCORE_METHODS))}"]
    return []


def _bucket_problem(uri: str) -> str | None:
    """None when the bucket of `uri` can be listed with the current credentials."""
    bucket, _ = storage.split_uri(uri)
    try:
        storage.list_objects(f"{storage.SCHEME}{bucket}/", max_keys=1)
    except (FileNotFoundError, storage.StorageError) as err:
        return f"bucket {bucket}: {err}".replace(f"{storage.SCHEME}{bucket}/: ", "")
    return None


def _probe_write(prefix: str, run_id: str) -> str | None:
    """None when an object can be written (and deleted) under `prefix`."""
    uri = storage.join(prefix, f".adg-preflight-{run_id or uuid.uuid4().hex}")
    try:
        storage.write_bytes(uri, b"preflight\n")
        storage.delete(uri)
    except (FileNotFoundError, storage.StorageError) as err:
        return f"{prefix}: not writable ({err})"
    return None


def check_storage(p: dict[str, Any], run_id: str = "") -> list[str]:
    """Problems with the object store: reachability, existence, writability (see module doc)."""
    named = [p.get(k) or "" for k in ("ingest_input", "ingest_pool_prefix", "ingest_ledger_uri")]
    named += [p.get(k) or "" for k in ("export_uri", "checkpoint_uri", "model")]
    buckets: dict[str, str] = {}
    for uri in named:
        if storage.is_s3(uri):
            buckets.setdefault(storage.split_uri(uri)[0], uri)
    problems = [msg for uri in buckets.values() if (msg := _bucket_problem(uri))]
    if problems:  # nothing below can work without the buckets
        return problems

    pool, prefix = p.get("ingest_input") or "", p.get("ingest_pool_prefix") or ""
    if pool and not prefix:
        if storage.is_s3(pool) and pool.endswith("/"):  # a folder of pool files
            if not storage.list_objects(pool, max_keys=1):
                problems.append(f"ingest_input={pool}: nothing under this prefix")
        elif storage.is_s3(pool) and not storage.exists(pool):
            problems.append(f"ingest_input={pool}: no such object")
        elif not storage.is_s3(pool) and not Path(pool).exists():
            problems.append(f"ingest_input={pool}: no such file")
    ledger_uri = p.get("ingest_ledger_uri") or ""
    if ledger_uri:
        from adg.ledger import load

        try:
            load(ledger_uri)
        except storage.StorageError as err:
            problems.append(f"ingest_ledger_uri: {err}")
        problems += filter(None, [_probe_write(ledger_uri.rsplit("/", 1)[0], run_id)])
    model = p.get("model") or ""
    if storage.is_s3(model):
        try:
            storage.model_objects(model)
        except (FileNotFoundError, storage.StorageError) as err:
            problems.append(f"model: {err}")
    for name in ("export_uri", "checkpoint_uri"):
        target = p.get(name) or ""
        if storage.is_s3(target):
            problems += filter(None, [_probe_write(target, run_id)])
    return problems


def default_checkpoint_uri(artifact_uri: str, run_id: str) -> str:
    """`checkpoints` beside this run's folder under the pipeline root, or "" when the root is
    not S3 (`minio://` roots are read as s3:// at the Secret's endpoint)."""
    uri = artifact_uri.replace("minio://", storage.SCHEME, 1)
    if not storage.is_s3(uri):
        return ""
    if run_id and f"/{run_id}/" in uri:
        return storage.join(uri[: uri.index(f"/{run_id}/")], "checkpoints")
    return storage.join(uri.rsplit("/", 1)[0], "checkpoints")


def route_after_ingest(new_files: int, records: int, budget: int, index_uri: str) -> str:
    """What the run does once ingest has read the pool, decided before any GPU pod: "none" (no
    new pool file), "curate" (select over the curation index, whose plan checks the budget
    against the index) or "batch", which refuses a budget larger than the valid records ingest
    kept (after rejects and `ingest_limit`): the selection would fail on it after the GPU work."""
    if new_files <= 0:
        return "none"
    if index_uri:
        return "curate"
    if budget > records:
        raise PreflightError(
            f"preflight: select_budget {budget} is larger than the pool: ingest kept {records} "
            "valid record(s) (rejected ones are in its rejects artifact, with the reason); "
            "lower the budget or give a larger pool"
        )
    return "batch"


def run_preflight(
    parameters: dict[str, Any], artifact_uri: str = "", run_id: str = ""
) -> dict[str, Any]:
    """All checks; raises `PreflightError` listing every problem. Returns the report:
    {"ok": True, "checkpoint_uri": resolved, "checked": [parameter names]}."""
    p = dict(parameters)
    problems = check_parameters(p)
    if not problems:
        problems = check_storage(p, run_id)
    if problems:
        raise PreflightError("preflight: " + "; ".join(problems))
    checkpoint = p.get("checkpoint_uri") or ""
    if checkpoint == NO_CHECKPOINTS:
        checkpoint = ""
    elif not checkpoint and "checkpoint_uri" in p:
        checkpoint = default_checkpoint_uri(artifact_uri, run_id)
        if checkpoint and _probe_write(checkpoint, run_id):
            log.warning("preflight: %s not writable with these credentials: off", checkpoint)
            checkpoint = ""
    log.info("preflight: ok; checkpoints: %s", checkpoint or "off")
    return {"ok": True, "checkpoint_uri": checkpoint, "checked": sorted(p)}
