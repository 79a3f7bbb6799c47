"""Resumable stage outputs and their remote checkpoints: a preempted shard resumes in a new pod.

Generation and scoring append finished records to a local JSONL file and, on the next run, skip
the records already there (`ResumableOutput`). Nothing is ever silently mixed:

* The output carries what it was made with, `<output>.fingerprint.json` (`adg.io.fingerprint`). A
run
  with other settings refuses with one line naming the first setting that differs and both values
  (`ResumeMismatch`, exit 2), before anything is written; `restart=True` (`--restart`) moves the
  old output and its fingerprint aside to `<output>.before-restart-<n>` and starts over.
* A record is skipped only when its id is in the output and its input hash
  (`fingerprint.record_hash`, computed from the output line itself) matches this run's record; a
  record whose text changed is done again, and output lines of records no longer in the input
  are dropped, so the output always holds exactly the run's records.
* `append` writes a batch whole or not at all as far as SIGTERM is concerned: the signal is held
  back while the batch is written and fsynced. While the output is open SIGTERM (what Kubernetes
  sends before SIGKILL when a node drains) raises `adg.errors.Terminated` between batches, so the
  stage ends within the grace period, uploads its checkpoint and the next run resumes exactly
  there. (A SIGKILL can still cut a line: a half-written last line is cut off on the next open.)

In a cluster a retried task starts in a new pod with an empty disk, so the file is also copied to
object storage every N records (`RemoteCheckpoint.progress`) and copied back before work starts
(`RemoteCheckpoint.restore`). The object lives at a stable place derived from the run:
`<checkpoint_uri>/<run id>/<stage>/shard-00003.jsonl`, with its fingerprint beside it
(`shard-00003.jsonl.fingerprint.json`). A checkpoint made with other settings (a re-submitted run
with the same run id and checkpoint prefix), or one without a fingerprint, is never restored: it is
ignored with a warning and overwritten by this run's own, since a task pod has no one to answer a
refusal and an ignored checkpoint only costs time. An empty `checkpoint_uri` turns this off.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adg.errors import Terminated
from adg.io import fingerprint, storage
from adg.io.jsonl import check_writable, dumps, truncate_partial_line
from adg.io.reading import iter_jsonl_tolerant
from adg.io.records import id_key
from adg.progress import log


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
    """Mirror of a local JSONL output at `uri` (and its fingerprint at `uri` + the sidecar
    suffix), uploaded every `every` new records."""

    def __init__(self, uri: str, every: int = 64, fingerprint_: dict[str, Any] | None = None):
        if uri:
            storage.split_uri(uri)
        self.uri = uri
        self.every = max(1, every)
        self.pending = 0
        self.fingerprint = fingerprint_ or {}
        self._fingerprint_current = False  # the remote fingerprint is known to be ours

    @property
    def fingerprint_uri(self) -> str:
        return f"{self.uri}{fingerprint.SIDECAR_SUFFIX}"

    def _remote_fingerprint(self) -> dict[str, Any] | None:
        try:
            data = storage.read_bytes(self.fingerprint_uri)
        except FileNotFoundError:
            return None
        return fingerprint.decode(data, self.fingerprint_uri)

    def restore(self, local_path: str | os.PathLike) -> int:
        """Replace the local file by the checkpoint when that holds more complete records and was
        made with this run's settings; a checkpoint made otherwise is ignored (see the module)."""
        if not self.uri or not storage.exists(self.uri):
            return 0
        made = self._remote_fingerprint()
        if made is None:
            log.warning(
                "checkpoint: %s has no fingerprint; ignored, this run starts over", self.uri
            )
            return 0
        line = fingerprint.mismatch_line(self.uri, made, self.fingerprint)
        if line is not None:
            log.warning("checkpoint: ignored, this run starts over: %s", line.split(";")[0])
            return 0
        self._fingerprint_current = True
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
        """Upload the local file now (only whole lines are ever in it between batches).

        The first upload of a run over a checkpoint made otherwise deletes the old fingerprint
        first and writes the new one after the data: a kill in between leaves data without a
        fingerprint (ignored next time), never data under a fingerprint it was not made with."""
        if not (self.uri and Path(local_path).exists()):
            return
        if not self._fingerprint_current and self._remote_fingerprint() is not None:
            storage.delete(self.fingerprint_uri)
        storage.upload(local_path, self.uri)
        if not self._fingerprint_current:
            storage.write_bytes(
                self.fingerprint_uri, fingerprint.encode(self.fingerprint), "application/json"
            )
            self._fingerprint_current = True
        self.pending = 0


def _copy(src: Path, dest: str | os.PathLike) -> None:
    tmp = f"{dest}.restore"
    with open(src, "rb") as fi, open(tmp, "wb") as fo:
        while block := fi.read(1 << 20):
            fo.write(block)
    os.replace(tmp, dest)


def move_aside(path: str | os.PathLike) -> Path | None:
    """`--restart`: rename an output and its fingerprint to a name nothing has yet; return it."""
    sidecar = fingerprint.sidecar_path(path)
    if not Path(path).exists():
        sidecar.unlink(missing_ok=True)  # a fingerprint without its output describes nothing
        return None
    target = fingerprint.aside_name(path)
    os.replace(path, target)
    if sidecar.exists():
        os.replace(sidecar, fingerprint.sidecar_path(target))
    log.info("restart: the previous output is kept as %s", target)
    return target


def _on_sigterm(_signum, _frame) -> None:
    raise Terminated


@contextmanager
def sigterm_raises():
    """While inside, SIGTERM raises `Terminated` (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def sigterm_held():
    """Hold SIGTERM back (it is delivered on leaving), so a batch is written whole."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class ResumableOutput:
    """The append-only JSONL output of generate and score, resumable after a kill (see the module).

    `fingerprint_` is this run's settings fingerprint, `fields` the stage's own input fields the
    per-record hash covers. On open: with `restart` the old output is moved aside; otherwise an
    existing output made otherwise is refused, the remote checkpoint (if any, and made the same
    way) is restored, a half-written last line is cut off, and the ids already written are
    collected with their input hashes. `keep_only(wanted)` then drops lines this run must redo.
    The file (and its fingerprint) is created by the first `append`. Use as a context manager.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fingerprint_: dict[str, Any],
        fields: tuple[str, ...] = (),
        checkpoint_uri: str = "",
        every: int = 64,
        restart: bool = False,
    ):
        self.path = path
        self.fingerprint = fingerprint_
        self.fields = fields
        self.checkpoint = RemoteCheckpoint(checkpoint_uri, every, fingerprint_)
        self.redo = 0  # records in the output whose input changed (done again)
        if restart:
            move_aside(path)
        else:
            self._check_local()
            self.checkpoint.restore(path)
        truncate_partial_line(path)
        self.done: dict[Any, str] = {
            id_key(r["id"]): fingerprint.record_hash(r, fields) for r in iter_jsonl_tolerant(path)
        }
        self.written = 0
        self._fh = None
        self._signals = sigterm_raises()

    def _check_local(self) -> None:
        if not Path(self.path).exists() or os.path.getsize(self.path) == 0:
            return
        made = fingerprint.read_sidecar(self.path)
        if made is None:
            raise fingerprint.ResumeMismatch(
                f"{self.path} has no {fingerprint.sidecar_path(self.path).name} saying what it "
                "was made with; use a new output or --restart"
            )
        line = fingerprint.mismatch_line(str(self.path), made, self.fingerprint)
        if line is not None:
            raise fingerprint.ResumeMismatch(line)

    def key(self, record: dict[str, Any]) -> tuple[Any, str]:
        return id_key(record["id"]), fingerprint.record_hash(record, self.fields)

    def keep_only(self, wanted: Iterable[tuple[Any, str]]) -> int:
        """Keep the output lines of `wanted` (id key, input hash) pairs only, once each; rewrite
        the file without the others (records whose text changed, or no longer in the input).
        Returns how many lines were dropped."""
        want = dict(wanted)
        self.redo = sum(1 for k, h in want.items() if k in self.done and self.done[k] != h)
        keep = {k for k, h in self.done.items() if want.get(k) == h}
        if len(keep) == len(self.done) and _complete_lines(self.path) == len(self.done):
            return 0
        tmp = f"{self.path}.keep"
        seen: set[Any] = set()
        with open(tmp, "w", encoding="utf-8") as fo:
            for r in iter_jsonl_tolerant(self.path):
                k = id_key(r["id"])
                if k in keep and k not in seen:
                    seen.add(k)
                    fo.write(dumps(r) + "\n")
            fo.flush()
            os.fsync(fo.fileno())
        dropped = _complete_lines(self.path) - len(seen)
        os.replace(tmp, self.path)
        self.done = {k: self.done[k] for k in seen}
        log.info("resume: %d output records dropped (input changed or gone)", dropped)
        return dropped

    def is_done(self, record: dict[str, Any]) -> bool:
        k, h = self.key(record)
        return self.done.get(k) == h

    def __enter__(self) -> ResumableOutput:
        # The file is opened at the first append, so a run that fails before producing anything
        # (a model that does not load, a bad input) leaves no empty output behind; an output
        # that cannot be written is still refused before any work starts.
        check_writable(self.path)
        if self.done:
            fingerprint.write_sidecar(self.path, self.fingerprint)  # e.g. restored from remote
        self._signals.__enter__()
        return self

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        text = "".join(dumps(rec) + "\n" for rec in records)
        with sigterm_held():
            if self._fh is None:
                fingerprint.write_sidecar(self.path, self.fingerprint)
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
            self._fh.write(text)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            for rec in records:
                self.done[id_key(rec["id"])] = fingerprint.record_hash(rec, self.fields)
            self.written += len(records)
        self.checkpoint.progress(self.path, len(records))

    def __exit__(self, *exc_info) -> None:
        self._signals.__exit__(*exc_info)
        if self._fh is not None:
            self._fh.close()
        if self.written:
            self.checkpoint.flush(self.path)
