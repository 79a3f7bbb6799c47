"""Preflight: the checks a run makes in seconds, on CPU, before any GPU pod is asked for.

`run_preflight(parameters, artifact_uri, run_id)` takes the run's pipeline parameters (a dict by
their pipeline names; absent names are not checked) and

1. checks their values (`check_parameters`: `adg.parameters.check`, the same check `adg submit`
   and `adg schedule` make): a pool or a pool prefix, sizes ≥ 1, GPU counts whole numbers ≥ 0,
   CPU and memory Kubernetes quantities, shares within (0, 1], known selectors, strategies and
   backends, s3:// where only object storage makes sense, and every value the KFP driver or
   launcher would fail a task on (Secret and claim names, tolerations, quotes in dict inputs);
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

from adg.io import storage
from adg.parameters import NO_CHECKPOINTS, check, refusal

log = logging.getLogger(__name__)


class PreflightError(ValueError):
    """The run cannot work: every reason, on one line."""


def check_parameters(p: dict[str, Any]) -> list[str]:
    """Problems with the parameter values alone (no I/O): `adg.parameters.check`, the one check
    `adg submit` and `adg schedule` make too, worded alike."""
    return check(p)


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
        from adg.stages.ledger import load

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


def resolve_pool_prompt_format(
    pool_path: str, requested: str, model: str, route: str = "batch"
) -> str:
    """The pool's one prompt format (adg.method.prompts: `auto` is chat when any record has a system
    prompt or earlier turns, else alpaca), decided once, right after ingest and before any GPU
    pod; a pool the format or the model's tokenizer cannot render is a PreflightError naming
    the first record that needs the chat template. With nothing new to curate ("none") the pool
    is empty and the format is moot."""
    from adg.errors import InputError
    from adg.method.prompts import resolve_for_file

    if route == "none" or not Path(pool_path).exists():
        return requested if requested != "auto" else "alpaca"
    try:
        return resolve_for_file(requested, pool_path, model)
    except InputError as err:
        raise PreflightError(f"preflight: {err}") from None


def placements(p: dict[str, Any]) -> dict[str, tuple[str, dict, list]]:
    """Each GPU stage's pod placement: (GPU count for the accelerator limit, node selector,
    tolerations). A count of "0" runs the stage on CPU: an empty count, which the driver reads
    as no accelerator limit at all (driver.go 439-446: a limit only when type and count are both
    non-empty), no node selector and no tolerations, so the pod lands on any CPU node."""
    from adg.config import GPU_COUNT_PARAMS, GPU_PODS
    from adg.parameters import asks_gpus

    out = {}
    for stage, name in GPU_COUNT_PARAMS.items():
        count = str(p.get(name, GPU_PODS[stage].gpus))
        if asks_gpus(count):
            out[stage] = (
                count,
                dict(p.get("gpu_node_selector") or {}),
                list(p.get("gpu_tolerations") or []),
            )
        else:
            out[stage] = ("", {}, [])
    return out


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
        raise PreflightError("preflight: " + refusal(problems))
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
