"""Preemption, the contract of every resumable stage: a generate run killed half-way (SIGKILL, as a
node loss would) continues on re-run, from its local output or, in a fresh pod, from its
object-store checkpoint; every id ends up in the output exactly once. A generate or score run
stopped by SIGTERM (a node draining) writes whole batches only, and its re-run equals an
uninterrupted run. What a resumable output refuses or redoes, and its remote checkpoint's rules,
are in test_checkpoint.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import N_RECORDS, by_id, generate_cmd, sample_records, write_jsonl

from adg.io import checkpoint, fingerprint, storage


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


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory) -> dict:
    """The output of the same generate run (same pool, model and settings) never interrupted,
    by id: what a killed and resumed run must end with."""
    from adg.cli import main

    work = tmp_path_factory.mktemp("uninterrupted")
    pool = write_jsonl(work / "pool.jsonl", sample_records(N_RECORDS))
    out = work / "generated.jsonl"
    assert main(generate_cmd(pool, out, tiny_model_dir)[3:]) == 0
    return by_id(out)


@pytest.mark.subprocess
def test_killed_generate_resumes_from_local_output(pool, tiny_model_dir, tmp_path, uninterrupted):
    out = tmp_path / "generated.jsonl"
    cmd = generate_cmd(pool, out, tiny_model_dir)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: complete_lines(out) >= 3)
    done_before = complete_lines(out)  # a line cut by the kill is not complete: sampled again
    assert done_before < N_RECORDS

    rerun = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert f"{N_RECORDS - done_before} generated, {done_before} already done" in rerun.stdout
    ids = ids_of(out)
    assert len(ids) == len(set(ids)) == N_RECORDS
    assert by_id(out) == uninterrupted  # identical answers: batch seeds do not move on resume


@pytest.mark.subprocess
def test_killed_generate_resumes_from_checkpoint_in_a_fresh_pod(
    pool, tiny_model_dir, tmp_path, bucket, uninterrupted
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
    # The checkpoint counts once its fingerprint is beside it (written after the first upload).
    sidecar = uri + fingerprint.SIDECAR_SUFFIX
    kill_when(proc, lambda: storage.exists(sidecar) and complete_lines(out) >= 4)
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
    assert f"{N_RECORDS - saved} generated, {saved} already done" in rerun.stdout
    ids = ids_of(fresh)
    assert len(ids) == len(set(ids)) == N_RECORDS
    assert by_id(fresh) == uninterrupted  # the restored records and the new ones
    assert storage.read_bytes(uri) == fresh.read_bytes()  # the final output is checkpointed too


# --- SIGTERM (a node draining): whole batches written, the rerun equals an uninterrupted run -----


def terminate_when(proc: subprocess.Popen, ready, timeout: float = 240.0) -> str:
    """SIGTERM the process once `ready()` holds; return its stderr after it ended."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the stage ended (rc {proc.returncode}) before it could be terminated")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the stage made no progress")
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    assert proc.returncode == 143, err
    return err


@pytest.mark.subprocess
def test_sigterm_during_generate_then_rerun_equals_an_uninterrupted_run(
    pool, tiny_model_dir, tmp_path
):
    out = tmp_path / "g.jsonl"
    cmd = generate_cmd(pool, out, tiny_model_dir, "--batch-size", "3")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = terminate_when(proc, lambda: complete_lines(out) >= 3)
    assert err.splitlines()[-1] == "adg generate: terminated (SIGTERM); re-run to resume"
    data = out.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") % 3 == 0  # whole batches only
    done = data.count(b"\n")
    assert done < N_RECORDS

    rerun = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert f"{N_RECORDS - done} generated, {done} already done" in rerun.stdout
    whole = tmp_path / "whole.jsonl"
    subprocess.run(
        generate_cmd(pool, whole, tiny_model_dir, "--batch-size", "3"),
        check=True,
        capture_output=True,
    )
    assert by_id(out) == by_id(whole)  # identical answers (same seed)


@pytest.mark.subprocess
def test_sigterm_during_score_then_rerun_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    n = 1500
    records = [
        {
            "id": i,
            "instruction": f"Explain topic number {i} in a few words",
            "generated_answers": [
                f"An answer about {i}",
                "another answer of some length",
                f"{i} %",
            ],
        }
        for i in range(n)
    ]
    src = write_jsonl(tmp_path / "generated.jsonl", records)
    out = tmp_path / "s.jsonl"
    cmd = [sys.executable, "-m", "adg.cli", "score", "--input", str(src), "--output", str(out)]
    cmd += ["--model", str(tiny_model_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = terminate_when(proc, lambda: complete_lines(out) >= 128)
    assert err.splitlines()[-1] == "adg score: terminated (SIGTERM); re-run to resume"
    data = out.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") % 64 == 0  # whole chunks only
    assert data.count(b"\n") < n

    subprocess.run(cmd, capture_output=True, text=True, check=True)
    whole = tmp_path / "whole.jsonl"
    subprocess.run([*cmd[:-4], "--output", str(whole), *cmd[-2:]], check=True, capture_output=True)
    got, want = by_id(out), by_id(whole)
    assert got.keys() == want.keys() and len(got) == n
    for k in want:
        for field in ("score", "dispersion", "anisotropy"):
            assert got[k][field] == pytest.approx(want[k][field], abs=1e-6)
