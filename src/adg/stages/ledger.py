"""Recurring curation: which pool files under a bucket prefix are new, and a ledger of those done.

A scheduled run points ingest at a pool prefix (`s3://bucket/pools/`) and a ledger object
(`s3://bucket/adg/ledger.json`). The ledger is a small JSON document,

    {"version": 1,
     "files": {uri: {"etag", "size", "run_id", "recorded_at", "status", "records"[, "reason"]}}}

with `status` "curated" (its records were selected from in run `run_id`) or "rejected" (the file
held no valid record; `reason` says why); `records` is how many of its records the run curated.
Entries written before `status` existed count as curated.

The API, in the order a run uses it:

- `plan_sources(pool_uri, pool_prefix, ledger_uri)`: the pool files (`POOL_SUFFIXES`: JSON, JSONL
  and their .gz / .zst, Parquet) under the prefix that the ledger does not hold with the same
  ETag, as source dicts `{"uri", "etag", "size"}`. A re-uploaded, changed file has a new ETag
  and is curated again.
- `ingest_pending(...)`: reads exactly those versions (If-Match on the listing's ETag) into one
  pool and gives each source its `records` (how many are in the pool) and `status`: "curated"
  (all of its valid records are in the pool), "rejected" (no valid record, or not readable as a
  pool) or "deferred" (`limit` cut some of its records off; the next run reads it again, whole).
- `record(ledger_uri, sources, run_id)`: after the run's curation succeeded, adds the curated and
  rejected sources (never the deferred ones): `load`, `updated`, `save`. The write is conditional
  (If-Match on the ETag the ledger was read with, If-None-Match when there was none), so two runs
  on one ledger cannot lose an update: `save` raises `LedgerConflict` for the later writer, and
  `record` then reads the ledger again and adds its files to that version, until its write lands
  (files are independent keys, so both runs' files end up recorded).
- `read_ledger(ledger_uri)` / `load(ledger_uri)`: the document (and its ETag), for tools built on
  top (e.g. an index of what was curated when).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from typing import Any

from adg.errors import InputError
from adg.io import storage
from adg.io.jsonl import write_jsonl
from adg.io.reading import PoolFormat
from adg.io.tables import is_dataset_folder
from adg.stages.ingest import IngestSummary, ingest

log = logging.getLogger(__name__)

POOL_SUFFIXES = (
    ".json",
    ".jsonl",
    ".json.gz",
    ".jsonl.gz",
    ".json.zst",
    ".jsonl.zst",
    ".parquet",
)
LEDGER_VERSION = 1
CURATED, REJECTED, DEFERRED = "curated", "rejected", "deferred"


class LedgerConflict(storage.StorageError):
    """Another run wrote the ledger between our read and our write; nothing was recorded."""


def _empty() -> dict[str, Any]:
    return {"version": LEDGER_VERSION, "files": {}}


def load(ledger_uri: str) -> tuple[dict[str, Any], str | None]:
    """(ledger, ETag of the object read) — ETag None when there is no ledger yet."""
    data, etag = storage.read_versioned(ledger_uri)
    if data is None:
        return _empty(), None
    try:
        ledger = json.loads(data)
    except json.JSONDecodeError as err:
        raise storage.StorageError(f"{ledger_uri}: not valid JSON ({err.msg})") from None
    if not isinstance(ledger, dict) or not isinstance(ledger.get("files"), dict):
        raise storage.StorageError(f"{ledger_uri}: not an ADG ledger (no 'files' object)")
    return ledger, etag


def read_ledger(ledger_uri: str) -> dict[str, Any]:
    """The ledger document (an empty one when the object does not exist yet)."""
    return load(ledger_uri)[0]


def pool_files(path: str) -> list[str]:
    """The pool files in a folder: a local one, or an s3:// URI ending in "/" (a prefix), sorted
    by name ([] when `path` is a single file, or a `datasets` folder, which is one pool file).
    A folder of Parquet shards is read this way, each shard a file of the pool."""
    if storage.is_s3(path):
        if not path.endswith("/"):
            return []
        bucket, _ = storage.split_uri(path)
        files = [
            f"{storage.SCHEME}{bucket}/{obj.key}"
            for obj in storage.list_objects(path)
            if obj.key.endswith(POOL_SUFFIXES)
        ]
        if not files:
            raise InputError(f"{path}: no pool files ({', '.join(POOL_SUFFIXES)}) under it")
        return files
    if not os.path.isdir(path) or is_dataset_folder(path):
        return []
    names = sorted(n for n in os.listdir(path) if n.endswith(POOL_SUFFIXES))
    return [os.path.join(path, n) for n in names]


def plan_sources(pool_uri: str, pool_prefix: str, ledger_uri: str) -> list[dict[str, Any]]:
    """The pool files this run should ingest, as {"uri", "etag", "size"} dicts.

    Without a prefix: just `pool_uri` (a local path or an s3:// URI; a folder, local or an
    s3:// URI ending in "/": every pool file in it, for `adg run` with a curation index, where
    dedup skips what is done). With a
    prefix: the pool files under it not yet in the ledger with their current ETag (all of them
    when there is no ledger), sorted by key.
    """
    if not pool_prefix:
        if not pool_uri:
            raise InputError("ingest: give a pool (ingest_input) or a pool prefix")
        return [{"uri": p} for p in pool_files(pool_uri)] or [{"uri": pool_uri}]
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


def _status(summary: IngestSummary, uri: str) -> tuple[str, str]:
    if uri in summary.unreadable:
        return REJECTED, summary.unreadable[uri]
    counts = summary.per_source.get(uri, {"records": 0, "complete": False})
    if not counts["complete"]:
        return DEFERRED, f"the ingest limit stopped reading it after {counts['records']} records"
    if counts["records"] == 0:
        return REJECTED, "no valid record"
    return CURATED, ""


def ingest_pending(
    pool_uri: str,
    pool_prefix: str,
    ledger_uri: str,
    output: str | os.PathLike,
    rejects: str | os.PathLike,
    limit: int = 0,
    how: PoolFormat | None = None,
    originals: str | os.PathLike | None = None,
) -> tuple[IngestSummary | None, list[dict[str, Any]]]:
    """The ingest stage with recurring curation: (summary, sources), or (None, []) with empty
    output files when there is nothing new to curate.

    Without a prefix this is plain `adg.stages.ingest.ingest` (a pool with no valid record is an
    error). With one, every source gets a `status` (and a `reason` unless curated); the summary may
    count 0 accepted records when every new file was rejected. `how` and `originals` as in
    `adg.stages.ingest.ingest`.
    """
    sources = plan_sources(pool_uri, pool_prefix, ledger_uri)
    if not sources:
        write_jsonl(output, [])
        write_jsonl(rejects, [])
        if originals is not None:
            write_jsonl(originals, [])
        return None, []
    uris = [s["uri"] for s in sources]
    kw = {"limit": limit, "how": how, "originals": originals}
    if not pool_prefix:
        summary = ingest(uris, output, rejects, **kw)
        sources[0].update(status=CURATED, records=summary.accepted)
        return summary, sources
    etags = {s["uri"]: s["etag"] for s in sources}
    summary = ingest(uris, output, rejects, etags=etags, tolerant=True, **kw)
    for s in sources:
        status, reason = _status(summary, s["uri"])
        s["status"] = status
        s["records"] = summary.per_source.get(s["uri"], {}).get("records", 0)
        if reason:
            s["reason"] = reason
            log.warning("ingest: %s: %s (%s)", s["uri"], status, reason)
    return summary, sources


def files_with_records(sources: list[dict[str, Any]]) -> int:
    """How many sources contributed records to this run's pool (0: nothing to curate)."""
    return sum(1 for s in sources if s.get("records", 0) > 0)


def updated(
    ledger: dict[str, Any], sources: list[dict[str, Any]], run_id: str = ""
) -> tuple[dict[str, Any], int]:
    """(the ledger with this run's curated and rejected s3:// sources added, how many). Deferred
    files (cut by the ingest limit) and local files are not recorded."""
    entries = [
        s
        for s in sources
        if storage.is_s3(s.get("uri")) and s.get("status", CURATED) in (CURATED, REJECTED)
    ]
    files = dict(ledger.get("files", {}))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for s in entries:
        entry = {
            "etag": s.get("etag", ""),
            "size": s.get("size", 0),
            "run_id": run_id,
            "recorded_at": stamp,
            "status": s.get("status", CURATED),
            "records": s.get("records", 0),
        }
        if s.get("reason"):
            entry["reason"] = s["reason"]
        files[s["uri"]] = entry
    return {**ledger, "version": LEDGER_VERSION, "files": files}, len(entries)


def save(ledger_uri: str, ledger: dict[str, Any], etag: str | None, run_id: str = "") -> None:
    """Write the ledger only over the version read (`etag`; None: only if there is none yet).

    Raises `LedgerConflict` when another writer changed it in between.
    """
    try:
        storage.write_json(ledger_uri, ledger, if_match=etag, if_none_match=etag is None)
    except storage.PreconditionFailed:
        raise LedgerConflict(
            f"{ledger_uri}: written by another run since this one read it; "
            f"nothing recorded for run {run_id or '?'} (its files are curated again next run)"
        ) from None


# Lost races `record` retries before it gives up (each one another run's write in between).
RECORD_ATTEMPTS = 10


def record(ledger_uri: str, sources: list[dict[str, Any]], run_id: str = "") -> int:
    """Add this run's curated and rejected pool files to the ledger (read, `updated`, `save`);
    return how many entries were written. When another run wrote the ledger in between, read it
    again and add them to that version (a file both runs curated keeps the later run's entry);
    `LedgerConflict` only after `RECORD_ATTEMPTS` lost races in a row."""
    if not ledger_uri:
        return 0
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        ledger, etag = load(ledger_uri)
        new, count = updated(ledger, sources, run_id)
        if not count:
            return 0
        try:
            save(ledger_uri, new, etag, run_id)
            return count
        except LedgerConflict:
            log.info("ledger %s: another run wrote it meanwhile; reading it again", ledger_uri)
            time.sleep(random.uniform(0.05, 0.25) * attempt)  # jitter: racing writers spread out
    raise LedgerConflict(
        f"{ledger_uri}: {RECORD_ATTEMPTS} writes in a row lost to other runs; nothing recorded "
        f"for run {run_id or '?'} (its files are curated again next run)"
    )
