"""Recurring curation: which pool files under a bucket prefix are new, and a ledger of those done.

A scheduled run points ingest at a pool prefix (`s3://bucket/pools/`) and a ledger object
(`s3://bucket/adg/ledger.json`). `plan_sources` lists the pool files (.json, .jsonl, and their .gz)
under the prefix and keeps those the ledger does not hold with the same ETag, so a re-uploaded,
changed file is curated again. Only after the run has selected its subsets does `record` add the
ingested files (with the ETag seen at ingest time) to the ledger; a run that fails records nothing
and the next run picks the files up again. The ledger is a small JSON document:
`{"version": 1, "files": {uri: {"etag", "size", "run_id", "recorded_at"}}}`. Runs must not
overlap (the schedule's max concurrency is 1), since the ledger update is read-modify-write.
"""

from __future__ import annotations

import os
import time
from typing import Any

from adg import storage
from adg.records import IngestSummary, ingest, write_jsonl

POOL_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


def read_ledger(ledger_uri: str) -> dict[str, Any]:
    ledger = storage.read_json(ledger_uri, default=None) or {"version": 1, "files": {}}
    if not isinstance(ledger.get("files"), dict):
        raise storage.StorageError(f"{ledger_uri}: not an ADG ledger (no 'files' object)")
    return ledger


def local_pool_files(path: str) -> list[str]:
    """The pool files in a local folder, sorted by name ([] when `path` is not a folder)."""
    if storage.is_s3(path) or not os.path.isdir(path):
        return []
    names = sorted(n for n in os.listdir(path) if n.endswith(POOL_SUFFIXES))
    return [os.path.join(path, n) for n in names]


def plan_sources(pool_uri: str, pool_prefix: str, ledger_uri: str) -> list[dict[str, Any]]:
    """The pool files this run should ingest, as {"uri", "etag", "size"} dicts.

    Without a prefix: just `pool_uri` (a local path or an s3:// URI; a local folder: every pool
    file in it, for `adg run` with a curation index, where dedup skips what is done). With a
    prefix: the pool
    files under it not yet in the ledger (all of them when there is no ledger), sorted by key.
    """
    if not pool_prefix:
        if not pool_uri:
            raise ValueError("ingest: give a pool (ingest_input) or a pool prefix")
        return [{"uri": p} for p in local_pool_files(pool_uri)] or [{"uri": pool_uri}]
    bucket, key = storage.split_uri(pool_prefix)
    if key and not key.endswith("/"):
        key += "/"
    done = read_ledger(ledger_uri)["files"] if ledger_uri else {}
    pending = []
    for obj in storage.list_objects(f"{storage.SCHEME}{bucket}/{key}"):
        if not obj.key.endswith(POOL_SUFFIXES):
            continue
        uri = f"{storage.SCHEME}{bucket}/{obj.key}"
        if done.get(uri, {}).get("etag") == obj.etag:
            continue
        pending.append({"uri": uri, "etag": obj.etag, "size": obj.size})
    return pending


def ingest_pending(
    pool_uri: str,
    pool_prefix: str,
    ledger_uri: str,
    output: str | os.PathLike,
    rejects: str | os.PathLike,
    limit: int = 0,
) -> tuple[IngestSummary | None, list[dict[str, Any]]]:
    """The ingest stage with recurring curation: (summary, sources), or (None, []) with empty
    output files when there is nothing new to curate."""
    sources = plan_sources(pool_uri, pool_prefix, ledger_uri)
    if not sources:
        write_jsonl(output, [])
        write_jsonl(rejects, [])
        return None, []
    return ingest([s["uri"] for s in sources], output, rejects, limit=limit), sources


def record(ledger_uri: str, sources: list[dict[str, Any]], run_id: str = "") -> int:
    """Add the curated pool files to the ledger; return how many entries were written."""
    entries = [s for s in sources if str(s.get("uri", "")).startswith(storage.SCHEME)]
    if not ledger_uri or not entries:
        return 0
    ledger = read_ledger(ledger_uri)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for s in entries:
        ledger["files"][s["uri"]] = {
            "etag": s.get("etag", ""),
            "size": s.get("size", 0),
            "run_id": run_id,
            "recorded_at": stamp,
        }
    storage.write_json(ledger_uri, ledger)
    return len(entries)
