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

from adg.io import checkpoint, fingerprint, models, storage

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


@pytest.fixture
def small_pool(tmp_path) -> Path:
    return write_jsonl(tmp_path / "small.jsonl", sample_records(3))


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


def test_score_restores_its_checkpoint(tiny, tmp_path, bucket):
    from adg.method.hidden import HiddenStateEncoder
    from adg.stages.score import score_file

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


# --- nothing silently mixed: settings fingerprints, per-record input hashes, --restart ---------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from adg.cli import main

    code = main(list(argv))
    got = capsys.readouterr()
    return code, got.out, got.err


def gen_args(pool: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return generate_cmd(pool, out, model, "--max-new-tokens", "4", *extra)[3:]


def by_id(path: Path) -> dict:
    return {json.dumps(r["id"]): r for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize(
    ("flags", "setting", "old", "new"),
    [
        (("--num-samples", "3"), "num_samples", "2", "3"),
        (("--temperature", "0.7"), "temperature", "1.4", "0.7"),
        (("--top-p", "0.5"), "top_p", "0.9", "0.5"),
        (("--max-new-tokens", "5"), "max_new_tokens", "4", "5"),
        (("--seed", "3"), "seed", "0", "3"),
        (("--prompt-format", "chat"), "prompt_format", "alpaca", "chat"),
        (("--backend", "vllm"), "backend", "hf", "vllm"),
        (("--batch-size", "2"), "batch_size", "1", "2"),
    ],
)
def test_generate_with_other_settings_refuses_in_one_line(
    small_pool, tiny_model_dir, tmp_path, capsys, flags, setting, old, new
):
    out = tmp_path / "g.jsonl"
    assert run_cli(capsys, *gen_args(small_pool, out, tiny_model_dir))[0] == 0
    before = out.read_bytes()
    code, stdout, err = run_cli(capsys, *gen_args(small_pool, out, tiny_model_dir, *flags))
    assert code == 2 and stdout == ""
    assert err == (
        f"adg generate: error: {out} was made with {setting}={old}, this run asks for {new}; "
        "use a new output or --restart\n"
    )
    assert out.read_bytes() == before  # nothing overwritten


def test_generate_with_another_model_refuses(
    small_pool, tiny_model_dir, tiny_qwen_dir, tmp_path, capsys
):
    out = tmp_path / "g.jsonl"
    assert run_cli(capsys, *gen_args(small_pool, out, tiny_model_dir))[0] == 0
    code, _, err = run_cli(capsys, *gen_args(small_pool, out, tiny_qwen_dir))
    assert code == 2
    assert err.startswith(f"adg generate: error: {out} was made with model={tiny_model_dir}@")
    assert f"this run asks for {tiny_qwen_dir}@" in err and err.count("\n") == 1


def test_same_path_new_weights_is_another_model(tmp_path, tiny_model_dir):
    # A model saved again under the same path with another config is another identity.
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    first = models.model_identity(copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    assert models.model_identity(copy) != first
    assert first.startswith(f"{copy}@")


def test_changed_text_under_the_same_id_is_generated_again(pool, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "g.jsonl"
    assert run_cli(capsys, *gen_args(pool, out, tiny_model_dir))[0] == 0
    old = by_id(out)
    records = sample_records(N_RECORDS)
    records[5] = {**records[5], "instruction": "Name three colours."}
    records[9] = {**records[9], "input": "with some new context"}
    edited = write_jsonl(tmp_path / "edited.jsonl", records)
    code, stdout, _ = run_cli(capsys, *gen_args(edited, out, tiny_model_dir))
    assert code == 0
    assert "2 generated (2 changed since the last run), 22 already done" in stdout
    fresh = tmp_path / "fresh.jsonl"
    assert run_cli(capsys, *gen_args(edited, fresh, tiny_model_dir))[0] == 0
    got, want = by_id(out), by_id(fresh)
    assert got == want  # exactly what an uninterrupted run on the edited pool gives
    assert got[json.dumps(records[5]["id"])]["instruction"] == "Name three colours."
    unchanged = [
        k for k in old if k not in (json.dumps(records[5]["id"]), json.dumps(records[9]["id"]))
    ]
    assert all(got[k] == old[k] for k in unchanged)


def test_records_gone_from_the_input_leave_the_output(pool, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "g.jsonl"
    assert run_cli(capsys, *gen_args(pool, out, tiny_model_dir))[0] == 0
    fewer = write_jsonl(tmp_path / "fewer.jsonl", sample_records(N_RECORDS)[:10])
    code, stdout, _ = run_cli(capsys, *gen_args(fewer, out, tiny_model_dir))
    assert code == 0 and "0 generated, 10 already done" in stdout
    assert sorted(by_id(out)) == sorted(json.dumps(r["id"]) for r in sample_records(10))


def test_restart_keeps_the_old_output_aside(pool, tiny_model_dir, tmp_path, capsys, caplog):
    out = tmp_path / "g.jsonl"
    assert run_cli(capsys, *gen_args(pool, out, tiny_model_dir))[0] == 0
    first = out.read_bytes()
    for n in (1, 2):
        args = gen_args(pool, out, tiny_model_dir, "--num-samples", str(2 + n), "--restart")
        code, stdout, _ = run_cli(capsys, *args)
        assert code == 0 and f"{N_RECORDS} generated, 0 already done" in stdout
        aside = Path(f"{out}.before-restart-{n}")
        assert aside.exists() and fingerprint.sidecar_path(aside).exists()
        assert f"kept as {aside}" in caplog.text
    assert Path(f"{out}.before-restart-1").read_bytes() == first  # never clobbered
    assert fingerprint.read_sidecar(out)["num_samples"] == 4
    assert all(len(r["generated_answers"]) == 4 for r in by_id(out).values())


def test_an_output_without_a_fingerprint_is_refused(pool, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "g.jsonl"
    out.write_text(json.dumps({**sample_records(1)[0], "generated_answers": ["a", "b"]}) + "\n")
    code, _, err = run_cli(capsys, *gen_args(pool, out, tiny_model_dir))
    assert code == 2
    assert err == (
        f"adg generate: error: {out} has no g.jsonl.fingerprint.json saying what it was made "
        "with; use a new output or --restart\n"
    )


def scored_input(tmp_path: Path, n: int = 6) -> Path:
    records = [
        {**r, "generated_answers": [r["output"][:40], r["instruction"][:30], "42 %"]}
        for r in sample_records(n)
    ]
    return write_jsonl(tmp_path / "generated.jsonl", records)


@pytest.mark.parametrize(
    ("flags", "setting", "old", "new"),
    [
        (("--dispersion-weight", "0.5"), "dispersion_weight", "0.6", "0.5"),
        (("--anisotropy-weight", "1"), "anisotropy_weight", "0.4", "1"),
        (("--all-metrics",), "all_metrics", "false", "true"),
        (("--method", "random"), "all_metrics", "false", "(none)"),
    ],
)
def test_score_with_other_settings_refuses(
    tmp_path, tiny_model_dir, capsys, flags, setting, old, new
):
    src = scored_input(tmp_path)
    out = tmp_path / "s.jsonl"
    base = ["score", "--input", str(src), "--output", str(out), "--model", str(tiny_model_dir)]
    assert run_cli(capsys, *base)[0] == 0
    before = out.read_bytes()
    code, _, err = run_cli(capsys, *base, *flags)
    assert code == 2
    assert err == (
        f"adg score: error: {out} was made with {setting}={old}, this run asks for {new}; "
        "use a new output or --restart\n"
    )
    assert out.read_bytes() == before


def test_score_with_other_layers_or_model_refuses(tiny, tiny_model_dir, tiny_qwen_dir, tmp_path):
    from adg.method.hidden import HiddenStateEncoder
    from adg.stages.score import score_file

    src = scored_input(tmp_path)
    out = tmp_path / "s.jsonl"
    score_file(src, out, model=str(tiny_model_dir))
    other_layers = HiddenStateEncoder(*tiny, layers=(-3, -2))
    with pytest.raises(
        fingerprint.ResumeMismatch,
        match=r"made with layers=\[-4, -3, -2\], this run asks for \[-3, -2\]",
    ):
        score_file(src, out, model=str(tiny_model_dir), encoder=other_layers)
    with pytest.raises(fingerprint.ResumeMismatch, match=r"made with model="):
        score_file(src, out, model=str(tiny_qwen_dir))


def test_score_redoes_records_whose_answers_changed(tmp_path, tiny):
    from adg.method.hidden import HiddenStateEncoder
    from adg.stages.score import score_file

    encoder = HiddenStateEncoder(*tiny)
    src = scored_input(tmp_path)
    out = tmp_path / "s.jsonl"
    score_file(src, out, encoder=encoder)
    records = [json.loads(line) for line in src.read_text().splitlines()]
    records[2]["generated_answers"] = ["entirely", "new answers", "now"]
    edited = write_jsonl(tmp_path / "edited.jsonl", records)
    summary = score_file(edited, out, encoder=encoder)
    assert (summary.scored, summary.redone, summary.resumed) == (1, 1, 5)
    fresh = tmp_path / "fresh.jsonl"
    score_file(edited, fresh, encoder=encoder)
    got, want = by_id(out), by_id(fresh)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k]["generated_answers"] == want[k]["generated_answers"]
        assert got[k]["score"] == pytest.approx(want[k]["score"], abs=1e-6)


def test_a_checkpoint_made_otherwise_is_ignored_and_replaced(
    pool, tiny_model_dir, tmp_path, bucket
):
    from adg.stages.generate import SamplingConfig, generate_file

    uri = checkpoint.shard_uri(f"s3://{bucket}/ckpt", "run-1", "generate", 0)
    args = {"model": str(tiny_model_dir), "backend": "hf", "checkpoint_uri": uri}
    first = tmp_path / "pod-1" / "g.jsonl"
    first.parent.mkdir()
    generate_file(pool, first, cfg=SamplingConfig(num_samples=2, max_new_tokens=4), **args)
    assert storage.read_bytes(uri) == first.read_bytes()
    # Re-submitted with the same run id and prefix but another K: the checkpoint is not reused.
    fresh = tmp_path / "pod-2" / "g.jsonl"
    fresh.parent.mkdir()
    cfg = SamplingConfig(num_samples=3, max_new_tokens=4)
    summary = generate_file(pool, fresh, cfg=cfg, **args)
    assert (summary.generated, summary.resumed) == (N_RECORDS, 0)
    assert all(len(r["generated_answers"]) == 3 for r in by_id(fresh).values())
    remote = fingerprint.decode(storage.read_bytes(uri + fingerprint.SIDECAR_SUFFIX), uri)
    assert remote["num_samples"] == 3 and storage.read_bytes(uri) == fresh.read_bytes()


def test_embed_refuses_other_settings_and_skips_a_done_input(tmp_path, tiny, tiny_model_dir):
    import numpy as np

    from adg.method.hidden import HiddenStateEncoder
    from adg.stages.embed import embed_file

    src = write_jsonl(tmp_path / "pool.jsonl", sample_records(5))
    out = tmp_path / "e.npy"
    embed_file(src, out, model=str(tiny_model_dir))
    first = np.load(out)
    mtime = out.stat().st_mtime_ns
    assert embed_file(src, out, model=str(tiny_model_dir)) == first.shape
    assert out.stat().st_mtime_ns == mtime  # nothing to do: the same input, the same settings
    with pytest.raises(fingerprint.ResumeMismatch, match="layers="):
        embed_file(
            src, out, model=str(tiny_model_dir), encoder=HiddenStateEncoder(*tiny, layers=(-2,))
        )
    embed_file(
        src,
        out,
        model=str(tiny_model_dir),
        encoder=HiddenStateEncoder(*tiny, layers=(-2,)),
        restart=True,
    )
    assert np.array_equal(np.load(f"{out}.before-restart-1"), first)


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
