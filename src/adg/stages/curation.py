"""Continuous curation: an append-only index of scored batches, and the best subset of all of it.

A curation index is a local folder or an s3:// prefix. Every curated batch becomes one *entry*,
written once and never changed:

    entries/<NNNNNN>/scored.jsonl     the scored records, with their K generated answers
    entries/<NNNNNN>/embeddings.npy   float16 [n, H] unit-norm instruction vectors, same order
    entries/<NNNNNN>/arrays.npz       float64 score / dispersion / anisotropy [n], and uint64
                                      id_hash / content_hash [n] (dedup keys), same order
    entries/<NNNNNN>/claim.json       written first: reserves the id for one writer
    entries/<NNNNNN>/manifest.json    written last: the model id and scoring settings, record
                                      count, sha256 of each file, the run that wrote it, and
                                      the entries it supersedes (re-scored ones)

Every selection over the index becomes one *version*:

    versions/<NNNNNN>/top.json, middle.json, bottom.json   the curated subsets
    versions/<NNNNNN>/selection_report.json                counts, score stats, the diff
    versions/<NNNNNN>/diff.json                            top ids added / dropped vs the previous
    versions/<NNNNNN>/report.md, report.html               the history of all versions
    versions/<NNNNNN>/claim.json                           written first (as for entries)
    versions/<NNNNNN>/manifest.json                        written last: entries covered, sha256

A run first *plans* (`plan_batch`): pool records already in the index (same id, or the same
canonical content: instruction + input + output, and a conversation's system prompt and earlier
turns) are dropped, so each record is generated, embedded and scored once.
Entries scored with another model or other scoring settings are never ranked together with this
run's: planning refuses (`CurationMismatch`), or, with `rescore_mismatched`, sends those entries'
records through this run again; the new entry then supersedes them. After scoring, `add_entry`
writes the batch, and `select_version` re-clusters every active entry's embeddings and selects the
budget over all indexed records. Selection holds only arrays in memory (embeddings memory-mapped,
scores and hashes as numpy arrays); record text is streamed once to pick the selected rows.

Runs may overlap on one index (a manual run during a scheduled one, two schedules). Every new
entry or version id is taken with a conditional create of its `claim.json` (S3 `If-None-Match: *`,
locally a hard link, which never replaces a file); a writer that finds the id taken tries the
next one, so two runs land as two entries (two versions), never in one folder. Two runs that
planned before either wrote may both have scored the same record: a record counts once, in the
first entry (by id) that holds it, wherever the index is read (selection, planning), so nothing
is ranked twice and nothing is lost.
One module of about 700 lines on purpose: the index's layout and write protocol (claims,
manifests, supersession) is what planning, adding and selecting all read and write, and one
place keeps the protocol's invariants together; the math it calls lives in adg.method.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adg.errors import InputError
from adg.io import fingerprint, models, storage
from adg.io.jsonl import write_json_array, write_jsonl
from adg.io.reading import iter_records
from adg.io.records import PoolError, id_key
from adg.io.shapes import content_text

log = logging.getLogger(__name__)

ENTRY_FILES = ("scored.jsonl", "embeddings.npy", "arrays.npz")
VERSION_FILES = (
    "top.json",
    "middle.json",
    "bottom.json",
    "selection_report.json",
    "diff.json",
    "report.md",
    "report.html",
)
GROUPS = ("top", "middle", "bottom")
# Fields generate and score add; stripped when a superseded entry's records are scored again.
SCORED_FIELDS = ("generated_answers", "score", "dispersion", "anisotropy")


class CurationMismatch(InputError):
    """Index entries were scored with another model or other settings than this run's."""


# --- identity -----------------------------------------------------------------------------------


def model_id(model: str) -> str:
    """The model as the index records it: its identity (`adg.io.models.model_identity`: the
    spec plus a digest of a local model's config and weights index; "" is the embedded model)."""
    return models.model_identity(model)


def scoring_settings(model: str, **settings: Any) -> dict[str, Any]:
    """What decides a record's score: the model's identity plus sampling and score settings, as
    one fingerprint (`adg.io.fingerprint.settings`, the same code every resumable output uses).

    Numbers are normalised (2.0 and 2 are the same setting; KFP passes dict values as strings).
    """
    return fingerprint.settings(model_id(model), **settings)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def record_keys(record: dict[str, Any]) -> tuple[int, int]:
    """(id hash, content hash): 1 and "1" are different ids; content is the record's canonical
    content (`adg.io.shapes.content_text`: instruction, input, output, and a conversation's system
    prompt and earlier turns), so one conversation read from two shapes is one record."""
    id_text = json.dumps(record["id"], ensure_ascii=False)
    return _hash64(id_text), _hash64(content_text(record))


# --- the index's storage (a local folder or an s3:// prefix) ------------------------------------


@dataclass
class Index:
    root: str

    def uri(self, *parts: str) -> str:
        if storage.is_s3(self.root):
            return storage.join(self.root, *parts)
        return str(Path(self.root, *parts))

    def read_json(self, *parts: str) -> Any:
        uri = self.uri(*parts)
        if storage.is_s3(uri):
            return storage.read_json(uri, default=None)
        path = Path(uri)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise PoolError(f"{path}:{err.lineno}: malformed JSON: {err.msg}") from None

    def put(self, local: str | os.PathLike, *parts: str) -> None:
        uri = self.uri(*parts)
        if storage.is_s3(uri):
            storage.upload(local, uri)
            return
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{uri}.tmp"  # embeddings and arrays are binary: copied, then renamed into place
        shutil.copyfile(local, tmp)
        os.replace(tmp, uri)

    def create_json(self, value: Any, *parts: str) -> bool:
        """Write a small JSON document only where none exists (S3: `If-None-Match: *`; locally
        a hard link of a finished temp file, which never replaces a file): False when one does."""
        uri = self.uri(*parts)
        if storage.is_s3(uri):
            try:
                storage.write_json(uri, value, if_none_match=True)
            except storage.PreconditionFailed:
                return False
            return True
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True

    def ids(self, kind: str) -> list[int]:
        """Every id under `kind` that anything was written to: complete, claimed or interrupted."""
        if storage.is_s3(self.root):
            prefix = storage.join(self.root, kind) + "/"
            _bucket, key = storage.split_uri(prefix)
            names = {o.key[len(key) :].split("/", 1)[0] for o in storage.list_objects(prefix)}
        else:
            folder = Path(self.root, kind)
            names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        return sorted(int(n) for n in names if n.isdigit())

    @contextmanager
    def local(self, *parts: str):
        """A local path of one file (downloaded to a temp folder for s3://)."""
        with storage.local_copy(self.uri(*parts)) as path:
            yield Path(path)

    def fetch(self, dest: Path, *parts: str) -> Path:
        """A local path of one file: the file itself locally, else downloaded to `dest`."""
        uri = self.uri(*parts)
        if not storage.is_s3(uri):
            return Path(uri)
        return storage.download(uri, dest / "/".join(parts))

    def manifests(self, kind: str) -> list[dict[str, Any]]:
        """The complete entries or versions (those with a manifest), sorted by their id."""
        if storage.is_s3(self.root):
            prefix = storage.join(self.root, kind) + "/"
            names = sorted(
                {
                    o.key.rsplit("/", 2)[-2]
                    for o in storage.list_objects(prefix)
                    if o.key.endswith("/manifest.json")
                }
            )
        else:
            folder = Path(self.root, kind)
            names = sorted(p.parent.name for p in folder.glob("*/manifest.json"))
        out = []
        for name in names:
            manifest = self.read_json(kind, name, "manifest.json")
            if not isinstance(manifest, dict) or manifest.get("id") != name:
                raise PoolError(f"{self.uri(kind, name, 'manifest.json')}: not an ADG manifest")
            out.append(manifest)
        return out


# How many taken ids a writer steps over before it gives up (each a lost race with another run).
CLAIM_ATTEMPTS = 100


def _claim(index: Index, kind: str, run_id: str) -> str:
    """Reserve a new id under `kind` ("entries", "versions") for this writer: the first id above
    every one used so far whose `claim.json` this writer creates (a conditional create: of two
    writers that try one id, exactly one gets it; the other tries the next)."""
    used = index.ids(kind)
    candidate = (used[-1] if used else 0) + 1
    claim = {"run_id": run_id, "writer": uuid.uuid4().hex, "claimed_at": _stamp()}
    for _ in range(CLAIM_ATTEMPTS):
        name = f"{candidate:06d}"
        if index.create_json(claim, kind, name, "claim.json"):
            return name
        log.info("curation: %s/%s is taken by another run; trying the next id", kind, name)
        candidate += 1
    raise storage.StorageError(
        f"{index.uri(kind)}: no free id after {CLAIM_ATTEMPTS} attempts (does the store honour "
        "If-None-Match on PUT?)"
    )


def unfinished_entry(index: Index, run_id: str) -> str | None:
    """The last entry this run claimed but never finished (a claim.json of this `run_id`, no
    manifest), for its retry to reuse; None without a run id (a CLI call), or when none."""
    if not run_id:
        return None
    done = {m["id"] for m in index.manifests("entries")}
    for number in reversed(index.ids("entries")):
        name = f"{number:06d}"
        if name in done:
            continue
        claim = index.read_json("entries", name, "claim.json") or {}
        if claim.get("run_id") == run_id:
            log.info("curation: entry %s was left unfinished by this run; reusing it", name)
            return name
    return None


def _commit(index: Index, manifest: dict[str, Any], kind: str) -> None:
    """Write the manifest that makes an entry or version complete; it is created, never replaced."""
    if not index.create_json(manifest, kind, manifest["id"], "manifest.json"):
        raise storage.StorageError(
            f"{index.uri(kind, manifest['id'], 'manifest.json')}: already exists, although this "
            "run claimed the id; refusing to replace it"
        )


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _describe(settings: dict[str, Any], other: dict[str, Any]) -> str:
    diff = fingerprint.differences(settings, other)
    return ", ".join(f"{k}={settings.get(k)!r} (this run: {other.get(k)!r})" for k in diff)


def active_entries(
    index: Index, settings: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(entries that rank with `settings`, entries scored otherwise); superseded ones are left
    out. Without `settings`, all active entries must agree with each other."""
    entries = index.manifests("entries")
    superseded = {s for m in entries for s in m.get("supersedes", [])}
    live = [m for m in entries if m["id"] not in superseded]
    if settings is None and live:
        settings = live[-1]["settings"]
    same = [m for m in live if not fingerprint.differences(m["settings"], settings)]
    other = [m for m in live if fingerprint.differences(m["settings"], settings)]
    return same, other


def check_consistency(
    index_uri: str, settings: dict[str, Any], rescore_mismatched: bool = False
) -> list[dict[str, Any]]:
    """The index's entries scored otherwise than `settings` (to re-score); raises
    `CurationMismatch` when there are any and `rescore_mismatched` is off."""
    _same, other = active_entries(Index(index_uri), settings)
    if other and not rescore_mismatched:
        first = other[0]
        how = _describe(first["settings"], settings)
        raise CurationMismatch(
            f"curation index {index_uri}: entry {first['id']} ({first['records']} records, run "
            f"{first.get('run_id') or '?'}) was scored with {how}"
            f"; {len(other)} entr{'y' if len(other) == 1 else 'ies'} differ. Records scored "
            "differently are never ranked together: re-run with --rescore-mismatched "
            "(pipeline: curation_rescore_mismatched) to score them again, or use another index"
        )
    return other


# --- planning: which records this run must score ------------------------------------------------


@dataclass
class Plan:
    records: int  # records to generate, embed and score in this run
    pool: int  # records in the pool
    duplicates: int  # pool records already in the index (or repeated in the pool)
    rescored: int  # records of superseded entries scored again
    supersedes: list[str]
    indexed: int = 0  # records of the index's entries that stay (same settings, not superseded)

    def line(self) -> str:
        return (
            f"curation plan: {self.records} records to score ({self.pool} in the pool, "
            f"{self.duplicates} already indexed or repeated, {self.rescored} re-scored from "
            f"entries {', '.join(self.supersedes) or '-'}); {self.indexed} stay indexed"
        )


def plan_batch(
    index_uri: str,
    pool_path: str | os.PathLike,
    output: str | os.PathLike,
    settings: dict[str, Any],
    rescore_mismatched: bool = False,
    budget: int = 0,
) -> Plan:
    """Write to `output` the pool records this run must score (see the module docstring).
    A `budget` larger than the index will hold after this run fails here, before any record is
    generated, rather than in the selection after the GPU work."""
    index = Index(index_uri)
    other = check_consistency(index_uri, settings, rescore_mismatched)
    same, _ = active_entries(index, settings)
    known_ids, known_content = _known_keys(index, same)
    seen_ids: set[int] = set()
    seen_content: set[int] = set()
    stats = {"pool": 0, "dup": 0, "rescored": 0}

    def fresh(record: dict[str, Any]) -> bool:
        i, c = record_keys(record)
        if i in seen_ids or c in seen_content or i in known_ids or c in known_content:
            return False
        seen_ids.add(i)
        seen_content.add(c)
        return True

    def todo():
        for record in iter_records(pool_path):
            stats["pool"] += 1
            if fresh(record):
                yield record
            else:
                stats["dup"] += 1
        for entry in other:
            with index.local("entries", entry["id"], "scored.jsonl") as path:
                for record in iter_records(path):
                    if fresh(record):
                        stats["rescored"] += 1
                        yield {k: v for k, v in record.items() if k not in SCORED_FIELDS}

    n = write_jsonl(output, todo())
    supersedes = [m["id"] for m in other]
    plan = Plan(n, stats["pool"], stats["dup"], stats["rescored"], supersedes, len(known_ids))
    log.info(plan.line())
    if budget > plan.indexed + n:
        raise PoolError(
            f"budget {budget} is larger than the curation index will be after this run "
            f"({plan.indexed} indexed + {n} new records)"
        )
    return plan


def _known_keys(index: Index, entries: list[dict[str, Any]]) -> tuple[set[int], set[int]]:
    ids: set[int] = set()
    content: set[int] = set()
    for entry in entries:
        with index.local("entries", entry["id"], "arrays.npz") as path, np.load(path) as arrays:
            ids.update(arrays["id_hash"].tolist())
            content.update(arrays["content_hash"].tolist())
    return ids, content


# --- writing an entry ---------------------------------------------------------------------------


def add_entry(
    index_uri: str,
    scored_path: str | os.PathLike,
    embeddings_path: str | os.PathLike,
    settings: dict[str, Any],
    run_id: str = "",
    supersedes: list[str] | None = None,
    sources: list[Any] | None = None,
) -> str:
    """Write one batch (scored records + instruction embeddings) as a new entry; its id.

    The files are written first and the manifest last, so an entry without a manifest is an
    interrupted write and is ignored by everything that reads the index; the same run's retry
    writes into it again (`unfinished_entry`), so none is left behind.
    """
    index = Index(index_uri)
    emb = np.load(embeddings_path, mmap_mode="r")
    with tempfile.TemporaryDirectory(prefix="adg-curation-") as work:
        arrays = Path(work) / "arrays.npz"
        n = _write_arrays(scored_path, arrays)
        if emb.ndim != 2 or len(emb) != n:
            raise PoolError(
                f"{embeddings_path}: {emb.shape[0] if emb.ndim else 0} embedding rows for {n} "
                f"scored records in {scored_path}; both must come from the same batch"
            )
        half = Path(work) / "embeddings.npy"
        out = np.lib.format.open_memmap(half, mode="w+", dtype=np.float16, shape=emb.shape)
        for start in range(0, n, 65536):
            out[start : start + 65536] = emb[start : start + 65536]
        out.flush()
        del out
        files = {"scored.jsonl": Path(scored_path), "embeddings.npy": half, "arrays.npz": arrays}
        # A retried task (a preempted or killed pod) takes over the entry its earlier attempt
        # claimed and left without a manifest, instead of leaving it beside a new one forever.
        entry_id = unfinished_entry(index, run_id) or _claim(index, "entries", run_id)
        listing = {}
        for name, path in files.items():
            index.put(path, "entries", entry_id, name)
            listing[name] = {"sha256": storage.sha256_file(path), "bytes": path.stat().st_size}
        manifest = {
            "id": entry_id,
            "run_id": run_id,
            "created_at": _stamp(),
            "settings": settings,
            "records": n,
            "dim": int(emb.shape[1]),
            "supersedes": list(supersedes or []),
            "sources": [s.get("uri", s) if isinstance(s, dict) else s for s in sources or []],
            "files": listing,
        }
        _commit(index, manifest, "entries")
    log.info("curation: entry %s with %d records -> %s", entry_id, n, index_uri)
    return entry_id


def _write_arrays(scored_path: str | os.PathLike, dest: Path) -> int:
    cols: dict[str, list] = {k: [] for k in ("score", "dispersion", "anisotropy", "id", "content")}
    for n, r in enumerate(iter_records(scored_path)):
        if not isinstance(r.get("score"), int | float):
            raise PoolError(
                f"{scored_path}: record {n} (id {r.get('id')!r}): field 'score' missing"
            )
        i, c = record_keys(r)
        cols["score"].append(float(r["score"]))
        cols["dispersion"].append(float(r.get("dispersion", np.nan)))
        cols["anisotropy"].append(float(r.get("anisotropy", np.nan)))
        cols["id"].append(i)
        cols["content"].append(c)
    with open(dest, "wb") as fh:
        np.savez(
            fh,
            score=np.array(cols["score"], dtype=np.float64),
            dispersion=np.array(cols["dispersion"], dtype=np.float64),
            anisotropy=np.array(cols["anisotropy"], dtype=np.float64),
            id_hash=np.array(cols["id"], dtype=np.uint64),
            content_hash=np.array(cols["content"], dtype=np.uint64),
        )
    return len(cols["score"])


# --- selecting over the whole index --------------------------------------------------------------


@dataclass
class IndexArrays:
    """Everything selection needs, without record text: one row per indexed record."""

    embeddings: list[np.ndarray]  # float16 [n_e, H] per entry (memory-mapped; rows kept only)
    score: np.ndarray  # float64 [N]
    dispersion: np.ndarray
    anisotropy: np.ndarray
    entry: np.ndarray  # int32 [N]: position of the row's entry in `entries`
    row: np.ndarray  # int64 [N]: row inside its entry
    entries: list[dict[str, Any]]
    duplicates: int = 0  # rows left out: an earlier entry holds the same id or content


def first_occurrences(id_hash: np.ndarray, content_hash: np.ndarray) -> np.ndarray:
    """bool [N]: rows whose id and content no earlier row has (rows in index order).

    Overlapping runs may both score a record (both planned before either wrote); it counts once,
    in the entry written first. Planning never indexes a record twice by itself.
    """
    keep = np.zeros(len(id_hash), dtype=bool)
    if not len(id_hash):
        return keep
    _, first_id = np.unique(id_hash, return_index=True)
    _, first_content = np.unique(content_hash, return_index=True)
    keep[np.intersect1d(first_id, first_content)] = True
    return keep


def load_arrays(index: Index, entries: list[dict[str, Any]], work: Path) -> IndexArrays:
    """Memory-map every entry's embeddings (downloaded into `work` for s3://) and stack the
    small per-record arrays, each record once (`first_occurrences`)."""
    embs, parts = [], {k: [] for k in ("score", "dispersion", "anisotropy", "id", "content")}
    entry_col, row_col = [], []
    for pos, e in enumerate(entries):
        emb = np.load(index.fetch(work, "entries", e["id"], "embeddings.npy"), mmap_mode="r")
        with np.load(index.fetch(work, "entries", e["id"], "arrays.npz")) as arrays:
            for k in ("score", "dispersion", "anisotropy"):
                parts[k].append(np.asarray(arrays[k], dtype=np.float64))
            parts["id"].append(np.asarray(arrays["id_hash"], dtype=np.uint64))
            parts["content"].append(np.asarray(arrays["content_hash"], dtype=np.uint64))
        if len(emb) != e["records"] or len(parts["score"][-1]) != e["records"]:
            raise PoolError(f"{index.uri('entries', e['id'])}: files disagree with the manifest")
        embs.append(emb)
        entry_col.append(np.full(e["records"], pos, dtype=np.int32))
        row_col.append(np.arange(e["records"], dtype=np.int64))
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    entry = np.concatenate(entry_col) if entry_col else np.zeros(0, np.int32)
    row = np.concatenate(row_col) if row_col else np.zeros(0, np.int64)
    keep = first_occurrences(cat["id"], cat["content"])
    duplicates = int(len(keep) - keep.sum())
    if duplicates:
        log.warning(
            "curation: %d indexed records are also in an earlier entry (overlapping runs); "
            "each counts once",
            duplicates,
        )
        # Only an entry that lost rows is copied into memory; the others stay memory-mapped.
        bounds = np.cumsum([0] + [len(emb) for emb in embs])
        for pos, emb in enumerate(embs):
            mine = keep[bounds[pos] : bounds[pos + 1]]
            if not mine.all():
                embs[pos] = np.asarray(emb[mine])
    return IndexArrays(
        embs,
        cat["score"][keep],
        cat["dispersion"][keep],
        cat["anisotropy"][keep],
        entry[keep],
        row[keep],
        entries,
        duplicates,
    )


def select_arrays(
    arrays: IndexArrays,
    budget: int,
    cluster_count: int = 0,
    seed: int = 42,
    pca_dims: int = 0,
    strategy: str = "exact",
):
    """(Selection, bins) over all indexed records: re-cluster, then the selection stage's
    procedure (adg.method.selection) on the stacked scores. cluster_count 0 = about 52 per bin."""
    from adg.method.clustering import auto_bin_count, kmeans_bins_parts
    from adg.method.selection import select

    total = len(arrays.score)
    if budget > total:
        raise PoolError(f"budget {budget} is larger than the curation index ({total} records)")
    count = cluster_count or auto_bin_count(total)
    bins = kmeans_bins_parts(arrays.embeddings, count=count, seed=seed, pca_dims=pca_dims)
    return select(arrays.score, bins, budget, strategy), bins


def _gather(index: Index, arrays: IndexArrays, picks: dict[str, np.ndarray]) -> dict[str, list]:
    """The selected records, each group in its pick order, streaming each entry's file once."""
    wanted: dict[tuple[int, int], list[tuple[str, int]]] = {}
    for name, idx in picks.items():
        for pos, i in enumerate(idx):
            wanted.setdefault((int(arrays.entry[i]), int(arrays.row[i])), []).append((name, pos))
    out: dict[str, list] = {name: [None] * len(idx) for name, idx in picks.items()}
    for e_pos, entry in enumerate(arrays.entries):
        if not any(k[0] == e_pos for k in wanted):
            continue
        with index.local("entries", entry["id"], "scored.jsonl") as path:
            for row, record in enumerate(iter_records(path)):
                for name, pos in wanted.get((e_pos, row), []):
                    out[name][pos] = record
    return out


def _stats(values: np.ndarray) -> dict[str, float | None]:
    values = values[~np.isnan(values)]
    if not len(values):
        return {"min": None, "mean": None, "max": None}
    return {"min": float(values.min()), "mean": float(values.mean()), "max": float(values.max())}


def select_version(
    index_uri: str,
    budget: int,
    out_dir: str | os.PathLike,
    cluster_count: int = 0,
    seed: int = 42,
    pca_dims: int = 0,
    strategy: str = "exact",
    run_id: str = "",
) -> dict[str, Any]:
    """Select the budget over every active entry and write a new version; return its manifest.

    The files of `VERSION_FILES` are written to `out_dir` and then copied into the index,
    manifest last.
    """
    index = Index(index_uri)
    entries, other = active_entries(index)
    if other:
        raise CurationMismatch(
            f"curation index {index_uri}: entries {', '.join(m['id'] for m in other)} were scored "
            f"with other settings than entries {', '.join(m['id'] for m in entries)}; "
            "refusing to rank them together"
        )
    if not entries:
        raise PoolError(f"curation index {index_uri}: no complete entries to select from")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    versions = index.manifests("versions")
    with tempfile.TemporaryDirectory(prefix="adg-curation-") as work:
        arrays = load_arrays(index, entries, Path(work))
        sel, bins = select_arrays(arrays, budget, cluster_count, seed, pca_dims, strategy)
        picks = {name: getattr(sel, name) for name in GROUPS}
        groups = _gather(index, arrays, picks)
    version_id = _claim(index, "versions", run_id)
    for name, records in groups.items():
        write_json_array(out / f"{name}.json", records)
    previous = versions[-1] if versions else None
    diff = _diff(index, previous, groups["top"])
    diff["version"] = version_id
    (out / "diff.json").write_text(json.dumps(diff, indent=2, ensure_ascii=False) + "\n", "utf-8")
    report = {
        "version": version_id,
        "records": len(arrays.score),
        "duplicates": arrays.duplicates,
        "entries": [e["id"] for e in entries],
        "budget": budget,
        "strategy": strategy,
        "bins": int((sel.bin_sizes > 0).sum()),
        "bins_in_top": len(np.unique(bins[sel.top])) if len(sel.top) else 0,
        "budget_fill": len(sel.top) / budget,
        "pool": {
            "score": _stats(arrays.score),
            "dispersion": _stats(arrays.dispersion),
            "anisotropy": _stats(arrays.anisotropy),
        },
        "diff": {k: diff[k] for k in ("previous", "kept")}
        | {"added": len(diff["added"]), "dropped": len(diff["dropped"])},
    }
    for name, idx in picks.items():
        report[name] = {
            "count": len(idx),
            "score": _stats(arrays.score[idx]),
            "dispersion": _stats(arrays.dispersion[idx]),
            "anisotropy": _stats(arrays.anisotropy[idx]),
            "file": f"{name}.json",
        }
    (out / "selection_report.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    manifest = {
        "id": version_id,
        "run_id": run_id,
        "created_at": _stamp(),
        "settings": entries[-1]["settings"],
        "entries": report["entries"],
        "records": report["records"],
        "duplicates": arrays.duplicates,
        "budget": budget,
        "strategy": strategy,
        "cluster_count": cluster_count,
        "cluster_seed": seed,
        "cluster_pca_dims": pca_dims,
        "counts": {name: report[name]["count"] for name in GROUPS},
        "top_score": report["top"]["score"],
        "previous": diff["previous"],
        "diff": report["diff"],
    }
    history = [*versions, manifest]
    from adg.reporting.curation_history import history_html, history_markdown

    (out / "report.md").write_text(history_markdown(history), encoding="utf-8")
    (out / "report.html").write_text(history_html(history), encoding="utf-8")
    manifest["files"] = {}
    for name in VERSION_FILES:
        path = out / name
        index.put(path, "versions", version_id, name)
        manifest["files"][name] = {
            "sha256": storage.sha256_file(path),
            "bytes": path.stat().st_size,
        }
    _commit(index, manifest, "versions")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    log.info(
        "curation: version %s selects %d of %d indexed records (+%d, -%d vs %s)",
        version_id,
        len(sel.top),
        report["records"],
        report["diff"]["added"],
        report["diff"]["dropped"],
        diff["previous"] or "nothing",
    )
    return manifest


def _diff(index: Index, previous: dict[str, Any] | None, top: list[dict]) -> dict[str, Any]:
    """Top ids added and dropped against the previous version's top set."""
    now = [r["id"] for r in top]
    before: list[Any] = []
    if previous is not None:
        with index.local("versions", previous["id"], "top.json") as path:
            before = [r["id"] for r in json.loads(path.read_text(encoding="utf-8"))]
    old = {id_key(i) for i in before}
    new = {id_key(i) for i in now}
    return {
        "previous": previous["id"] if previous else None,
        "added": [i for i in now if id_key(i) not in old],
        "dropped": [i for i in before if id_key(i) not in new],
        "kept": len(old & new),
    }
