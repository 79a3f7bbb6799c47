"""The embed stage (adg.stages.embed, `adg embed`): unit-norm rows, bad records and an unwritable
output refused in one line before the model loads, and a done input skipped while other settings
are refused (or redone with --restart)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import generated, one_line_error, sample_records, write_jsonl

from adg.cli import main
from adg.io import fingerprint
from adg.stages.embed import embed_file


def test_embed_file_unit_norm_rows(tmp_path, tiny_model_dir):
    src = write_jsonl(tmp_path / "pool.jsonl", sample_records(9))
    out = tmp_path / "embeddings.npy"
    assert embed_file(src, out, model=str(tiny_model_dir), chunk_records=4) == (9, 32)
    emb = np.load(out)
    assert emb.dtype == np.float32 and emb.shape == (9, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_embed_checks_records_and_output_before_loading_the_model(tmp_path, capsys):
    src = tmp_path / "pool.jsonl"
    src.write_text(json.dumps(generated(1)) + "\n" + json.dumps({"id": 2}) + "\n")
    out = tmp_path / "embeddings.npy"
    assert main(["embed", "--input", str(src), "--output", str(out)]) == 2
    one_line_error(capsys.readouterr().err, "pool.jsonl:2: field 'instruction': missing")
    src.write_text(json.dumps(generated(1)) + "\n")
    out = tmp_path / "missing" / "embeddings.npy"
    assert main(["embed", "--input", str(src), "--output", str(out)]) == 2
    one_line_error(capsys.readouterr().err, f"{out}: cannot write (no such folder")


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
