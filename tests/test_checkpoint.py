"""Resumable outputs and their remote checkpoints (adg.io.checkpoint): nothing is silently mixed
(a run with other settings or another model refuses in one line, a record whose text or answers
changed is done again, records gone from the input leave the output, --restart keeps the old
output aside, an output without a fingerprint is refused), and a remote checkpoint is restored
when it was made the same way and ignored and replaced otherwise. The kill-and-resume runs of
real stages are in test_resume.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import N_RECORDS, by_id, generate_cmd, sample_records, write_jsonl

from adg.io import checkpoint, fingerprint, storage

# --- remote checkpoints: restored when made the same way, else ignored and replaced ------------


@pytest.fixture
def small_pool(tmp_path) -> Path:
    return write_jsonl(tmp_path / "small.jsonl", sample_records(3))


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


# --- nothing silently mixed: settings fingerprints, per-record input hashes, --restart ---------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from adg.cli import main

    code = main(list(argv))
    got = capsys.readouterr()
    return code, got.out, got.err


def gen_args(pool: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return generate_cmd(pool, out, model, "--max-new-tokens", "4", *extra)[3:]


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
