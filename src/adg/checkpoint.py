"""Remote checkpoints of a stage's JSONL output, so a preempted shard resumes in a fresh pod.

Generation and scoring append finished records to a local JSONL file and skip ids already there
on the next run (`ResumableOutput`). In a cluster a retried task starts in a new pod with an empty
disk, so the file is also copied to object storage every N records (`RemoteCheckpoint.progress`)
and copied back before work starts (`RemoteCheckpoint.restore`). The object lives at a stable
place derived from the run: `<checkpoint_uri>/<run id>/<stage>/shard-00003.jsonl`. An empty
`checkpoint_uri` turns this off.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from adg import storage
from adg.progress import log
from adg.records import (
    check_writable,
    dumps,
    id_key,
    iter_jsonl_tolerant,
    truncate_partial_line,
)


def shard_uri(base: str, run_id: str, stage: str, shard_index: int) -> str:
    """The checkpoint object of one stage's shard in one run; "" when `base` is empty."""
    if not base:
        return ""
    return storage.join(base, run_id or "no-run-id", stage, f"shard-{shard_index:05d}.jsonl")


def _complete_lines(path: str | os.PathLike) -> int:
    if not Path(path).exists():
        return 0
    with open(path, "rb") as fh:
        return fh.read().count(b"\n")


class RemoteCheckpoint:
    """Mirror of a local JSONL output at `uri`, uploaded every `every` new records."""

    def __init__(self, uri: str, every: int = 64):
        if uri:
            storage.split_uri(uri)
        self.uri = uri
        self.every = max(1, every)
        self.pending = 0

    def restore(self, local_path: str | os.PathLike) -> int:
        """Replace the local file by the checkpoint when that holds more complete records."""
        if not self.uri or not storage.exists(self.uri):
            return 0
        with tempfile.TemporaryDirectory(prefix="adg-ckpt-") as work:
            remote = storage.download(self.uri, Path(work) / "checkpoint.jsonl")
            remote_lines = _complete_lines(remote)
            if remote_lines <= _complete_lines(local_path):
                return 0
            _copy(remote, local_path)
        log.info("checkpoint: restored %d records from %s", remote_lines, self.uri)
        return remote_lines

    def progress(self, local_path: str | os.PathLike, new_records: int) -> None:
        """Count finished records; upload the file once `every` have accumulated."""
        if not self.uri:
            return
        self.pending += new_records
        if self.pending >= self.every:
            self.flush(local_path)

    def flush(self, local_path: str | os.PathLike) -> None:
        """Upload the local file now (only whole lines are ever in it between batches)."""
        if self.uri and Path(local_path).exists():
            storage.upload(local_path, self.uri)
            self.pending = 0


def _copy(src: Path, dest: str | os.PathLike) -> None:
    tmp = f"{dest}.restore"
    with open(src, "rb") as fi, open(tmp, "wb") as fo:
        while block := fi.read(1 << 20):
            fo.write(block)
    os.replace(tmp, dest)


class ResumableOutput:
    """The append-only JSONL output of generate and score, resumable after a kill.

    On open: the remote checkpoint (if any) is restored, a half-written last line is cut off, and
    the ids already written are collected (`done`). `append` writes whole records, flushes and
    fsyncs, so a kill loses at most the batch in flight; on close the file is checkpointed once
    more. The file is created by the first `append`. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike, checkpoint_uri: str = "", every: int = 64):
        self.path = path
        self.checkpoint = RemoteCheckpoint(checkpoint_uri, every)
        self.checkpoint.restore(path)
        truncate_partial_line(path)
        self.done = {id_key(r["id"]) for r in iter_jsonl_tolerant(path)}
        self.written = 0
        self._fh = None

    def is_done(self, record: dict[str, Any]) -> bool:
        return id_key(record["id"]) in self.done

    def __enter__(self) -> ResumableOutput:
        # The file is opened at the first append, so a run that fails before producing anything
        # (a model that does not load, a bad input) leaves no empty output behind; an output
        # that cannot be written is still refused before any work starts.
        check_writable(self.path)
        return self

    def append(self, records: list[dict[str, Any]]) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        for rec in records:
            self._fh.write(dumps(rec) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.written += len(records)
        self.checkpoint.progress(self.path, len(records))

    def __exit__(self, *exc_info) -> None:
        if self._fh is not None:
            self._fh.close()
        if self.written:
            self.checkpoint.flush(self.path)
