"""Preemption: a generate run killed half-way (SIGKILL, as a node loss would) continues on re-run,
from its local output or, in a fresh pod, from its object-store checkpoint; every id ends up in the
output exactly once. Scoring restores its checkpoint the same way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import sample_records, write_jsonl

from adg import checkpoint, fingerprint, storage

N_RECORDS = 24


def generate_cmd(pool: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "adg.cli",
        "generate",
        "--input",
        str(pool),
        "--output",
        str(out),
        "--model",
        str(model),
        "--backend",
        "hf",
        "--num-samples",
        "2",
        "--max-new-tokens",
        "12",
        "--batch-size",
        "1",
        *extra,
    ]


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240.0) -> None:
    """SIGKILL the process as soon as `ready()` holds; fail if it ended on its own first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"generate ended (rc {proc.returncode}) before it could be killed")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("generate made no progress")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def ids_of(path: Path) -> list:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


@pytest.fixture
def pool(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pool.jsonl", sample_records(N_RECORDS))


@pytest.mark.subprocess
def test_killed_generate_resumes_from_local_output(pool, tiny_model_dir, tmp_path):
    out = tmp_path / "generated.jsonl"
    cmd = generate_cmd(pool, out, tiny_model_dir)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: complete_lines(out) >= 3)
    done_before = complete_lines(out)
    assert done_before < N_RECORDS

    rerun = subprocess.run(cmd, capture_output=True, text=True, check=True)
    resumed = int(rerun.stdout.split(" generated, ")[1].split(" already done")[0])
    assert resumed >= done_before
    ids = ids_of(out)
    assert sorted(ids) == sorted(r["id"] for r in sample_records(N_RECORDS))
    assert len(ids) == len(set(ids)) == N_RECORDS
    assert all(len(json.loads(line)["generated_answers"]) == 2 for line in out.open())


@pytest.mark.subprocess
def test_killed_generate_resumes_from_checkpoint_in_a_fresh_pod(
    pool, tiny_model_dir, tmp_path, bucket
):
    uri = checkpoint.shard_uri(f"s3://{bucket}/checkpoints", "run-7", "generate", 0)
    assert uri == f"s3://{bucket}/checkpoints/run-7/generate/shard-00000.jsonl"
    out = tmp_path / "pod-1" / "generated.jsonl"
    out.parent.mkdir()
    extra = ("--checkpoint-uri", uri, "--checkpoint-every", "2")
    proc = subprocess.Popen(
        generate_cmd(pool, out, tiny_model_dir, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    kill_when(proc, lambda: storage.exists(uri) and complete_lines(out) >= 4)
    saved = storage.read_bytes(uri).count(b"\n")
    assert 2 <= saved < N_RECORDS

    # The retry runs in a new pod: its disk does not have pod-1's output.
    fresh = tmp_path / "pod-2" / "generated.jsonl"
    fresh.parent.mkdir()
    rerun = subprocess.run(
        generate_cmd(pool, fresh, tiny_model_dir, *extra),
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{saved} already done" in rerun.stdout or "already done" in rerun.stdout
    resumed = int(rerun.stdout.split(" generated, ")[1].split(" already done")[0])
    assert resumed >= saved
    ids = ids_of(fresh)
    assert len(ids) == len(set(ids)) == N_RECORDS
    assert storage.read_bytes(uri) == fresh.read_bytes()  # the final output is checkpointed too


def test_score_restores_its_checkpoint(tiny, tmp_path, bucket):
    from adg.hidden import HiddenStateEncoder
    from adg.scoring import score_file

    records = [
        {**r, "generated_answers": [r["output"][:40], r["instruction"][:30], "42 %"]}
        for r in sample_records(6)
    ]
    generated = write_jsonl(tmp_path / "generated.jsonl", records)
    encoder = HiddenStateEncoder(*tiny)
    full = tmp_path / "full.jsonl"
    score_file(generated, full, encoder=encoder, chunk_records=2)

    uri = f"s3://{bucket}/ckpt/score/shard-00000.jsonl"
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(full.read_text().splitlines(keepends=True)[:3]))
    storage.upload(partial, uri)
    # The checkpoint's fingerprint says it was made with these settings (as a pod's upload does).
    storage.upload(fingerprint.sidecar_path(full), uri + fingerprint.SIDECAR_SUFFIX)

    out = tmp_path / "fresh" / "scored.jsonl"
    out.parent.mkdir()
    summary = score_file(
        generated, out, encoder=encoder, chunk_records=2, checkpoint_uri=uri, checkpoint_every=1
    )
    assert (summary.resumed, summary.scored) == (3, 3)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    want = [json.loads(line) for line in full.read_text().splitlines()]
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for a, b in zip(got, want, strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
    assert storage.read_bytes(uri) == out.read_bytes()


def test_empty_checkpoint_uri_means_no_remote_work(tmp_path):
    assert checkpoint.shard_uri("", "run", "generate", 3) == ""
    ckpt = checkpoint.RemoteCheckpoint("", every=1)
    out = tmp_path / "x.jsonl"
    out.write_text('{"id": 1}\n')
    assert ckpt.restore(out) == 0
    ckpt.progress(out, 5)  # no upload, no error without any S3 configured
    assert os.path.getsize(out) == 10
