"""The curation stage: plan a batch against a curation index, add it as an entry, select a version.

The index (a local folder or an s3:// prefix of append-only entries and versions) and the
protocol that writes it, claims and manifests, are adg.io.curation_index; this module is what a
curation run does with it.

A run first *plans* (`plan_batch`): pool records already in the index (same id, or the same
canonical content: instruction + input + output, and a conversation's system prompt and earlier
turns) are dropped, so each record is generated, embedded and scored once.
Entries scored with another model or other scoring settings are never ranked together with this
run's: planning refuses (`CurationMismatch`), or, with `rescore_mismatched`, sends those entries'
records through this run again; the new entry then supersedes them. After scoring, `add_entry`
writes the batch, and `select_version` re-clusters every active entry's embeddings and selects the
budget over all indexed records. Selection holds only arrays in memory (embeddings memory-mapped,
scores and hashes as numpy arrays); record text is streamed once to pick the selected rows.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adg.errors import InputError
from adg.io import fingerprint, models
from adg.io.curation_index import (
    VERSION_FILES,
    Index,
    IndexArrays,
    active_entries,
    claim,
    entry_files,
    gather,
    known_keys,
    load_arrays,
    publish,
    record_keys,
    stamp,
    unfinished_entry,
)
from adg.io.jsonl import write_json_array, write_jsonl
from adg.io.reading import iter_records
from adg.io.records import PoolError, id_key

log = logging.getLogger(__name__)

GROUPS = ("top", "middle", "bottom")
# Fields generate and score add; stripped when a superseded entry's records are scored again.
SCORED_FIELDS = ("generated_answers", "score", "dispersion", "anisotropy")


class CurationMismatch(InputError):
    """Index entries were scored with another model or other settings than this run's."""


# --- what decides a score, and whether the index agrees with this run ---------------------------


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


def _describe(settings: dict[str, Any], other: dict[str, Any]) -> str:
    diff = fingerprint.differences(settings, other)
    return ", ".join(f"{k}={settings.get(k)!r} (this run: {other.get(k)!r})" for k in diff)


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
    known_ids, known_content = known_keys(index, same)
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
    with tempfile.TemporaryDirectory(prefix="adg-curation-") as work:
        files, n, dim = entry_files(scored_path, embeddings_path, Path(work))
        # A retried task (a preempted or killed pod) takes over the entry its earlier attempt
        # claimed and left without a manifest, instead of leaving it beside a new one forever.
        entry_id = unfinished_entry(index, run_id) or claim(index, "entries", run_id)
        manifest = {
            "id": entry_id,
            "run_id": run_id,
            "created_at": stamp(),
            "settings": settings,
            "records": n,
            "dim": dim,
            "supersedes": list(supersedes or []),
            "sources": [s.get("uri", s) if isinstance(s, dict) else s for s in sources or []],
        }
        publish(index, "entries", manifest, files)
    log.info("curation: entry %s with %d records -> %s", entry_id, n, index_uri)
    return entry_id


# --- selecting over the whole index --------------------------------------------------------------


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
        groups = gather(index, arrays, picks)
    version_id = claim(index, "versions", run_id)
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
        "created_at": stamp(),
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
    publish(index, "versions", manifest, {name: out / name for name in VERSION_FILES})
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
