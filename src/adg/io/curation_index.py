"""The curation index's layout and storage: append-only entries and versions, and their protocol.

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

An entry or version without a manifest is an interrupted write (or one still under way) and
everything that reads the index ignores it.

Runs may overlap on one index (a manual run during a scheduled one, two schedules). Every new
entry or version id is taken with a conditional create of its `claim.json` (S3 `If-None-Match: *`,
locally a hard link, which never replaces a file); a writer that finds the id taken tries the
next one, so two runs land as two entries (two versions), never in one folder. Two runs that
planned before either wrote may both have scored the same record: a record counts once, in the
first entry (by id) that holds it, wherever the index is read (`first_occurrences`), so nothing
is ranked twice and nothing is lost.

The curation stage (planning, adding an entry, selecting a version) is adg.stages.curation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adg.io import fingerprint, storage
from adg.io.reading import iter_records
from adg.io.records import PoolError
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


# --- record keys ---------------------------------------------------------------------------------


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


# --- the write protocol: claim an id, write the files, commit the manifest ----------------------

# How many taken ids a writer steps over before it gives up (each a lost race with another run).
CLAIM_ATTEMPTS = 100


def claim(index: Index, kind: str, run_id: str) -> str:
    """Reserve a new id under `kind` ("entries", "versions") for this writer: the first id above
    every one used so far whose `claim.json` this writer creates (a conditional create: of two
    writers that try one id, exactly one gets it; the other tries the next)."""
    used = index.ids(kind)
    candidate = (used[-1] if used else 0) + 1
    note = {"run_id": run_id, "writer": uuid.uuid4().hex, "claimed_at": stamp()}
    for _ in range(CLAIM_ATTEMPTS):
        name = f"{candidate:06d}"
        if index.create_json(note, kind, name, "claim.json"):
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
        note = index.read_json("entries", name, "claim.json") or {}
        if note.get("run_id") == run_id:
            log.info("curation: entry %s was left unfinished by this run; reusing it", name)
            return name
    return None


def publish(index: Index, kind: str, manifest: dict[str, Any], files: dict[str, Path]) -> None:
    """Copy `files` (name -> local path) into the claimed entry or version `manifest["id"]`, then
    write its manifest, with each file's sha256 and size under "files": the manifest is what
    makes it complete, and it is created, never replaced."""
    manifest["files"] = {}
    for name, path in files.items():
        index.put(path, kind, manifest["id"], name)
        manifest["files"][name] = {
            "sha256": storage.sha256_file(path),
            "bytes": path.stat().st_size,
        }
    if not index.create_json(manifest, kind, manifest["id"], "manifest.json"):
        raise storage.StorageError(
            f"{index.uri(kind, manifest['id'], 'manifest.json')}: already exists, although this "
            "run claimed the id; refusing to replace it"
        )


def stamp() -> str:
    """The UTC time a manifest or claim records."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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


# --- an entry's files: written once, read back by planning and selection -----------------------


def known_keys(index: Index, entries: list[dict[str, Any]]) -> tuple[set[int], set[int]]:
    """(id hashes, content hashes) of every record in `entries`, read from their arrays files."""
    ids: set[int] = set()
    content: set[int] = set()
    for entry in entries:
        with index.local("entries", entry["id"], "arrays.npz") as path, np.load(path) as arrays:
            ids.update(arrays["id_hash"].tolist())
            content.update(arrays["content_hash"].tolist())
    return ids, content


def entry_files(
    scored_path: str | os.PathLike, embeddings_path: str | os.PathLike, work: Path
) -> tuple[dict[str, Path], int, int]:
    """An entry's files (`ENTRY_FILES`, name -> local path), the arrays and the float16
    embeddings written into `work`; with the record count and the embedding width."""
    emb = np.load(embeddings_path, mmap_mode="r")
    arrays = work / "arrays.npz"
    n = _write_arrays(scored_path, arrays)
    if emb.ndim != 2 or len(emb) != n:
        raise PoolError(
            f"{embeddings_path}: {emb.shape[0] if emb.ndim else 0} embedding rows for {n} "
            f"scored records in {scored_path}; both must come from the same batch"
        )
    half = work / "embeddings.npy"
    out = np.lib.format.open_memmap(half, mode="w+", dtype=np.float16, shape=emb.shape)
    for start in range(0, n, 65536):
        out[start : start + 65536] = emb[start : start + 65536]
    out.flush()
    del out
    files = {"scored.jsonl": Path(scored_path), "embeddings.npy": half, "arrays.npz": arrays}
    return {name: files[name] for name in ENTRY_FILES}, n, int(emb.shape[1])


def _write_arrays(scored_path: str | os.PathLike, dest: Path) -> int:
    """The arrays file (`arrays.npz`) of the scored records at `scored_path`; their count."""
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


def gather(index: Index, arrays: IndexArrays, picks: dict[str, np.ndarray]) -> dict[str, list]:
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
