"""Progress bars on stderr for the long stages (records and tokens/s), off with ADG_PROGRESS=0."""

from __future__ import annotations

from adg.config import SamplingConfig
from adg.stages.embed import embed_file
from adg.stages.generate import generate_file

CFG = SamplingConfig(num_samples=2, max_new_tokens=4, batch_size=4)


def test_generate_shows_records_and_tokens_per_second(tiny_model_dir, pool_file, tmp_path, capsys,
                                                      monkeypatch):  # fmt: skip
    monkeypatch.setenv("ADG_PROGRESS", "1")
    generate_file(pool_file, tmp_path / "g.jsonl", model=str(tiny_model_dir), cfg=CFG, limit=5)
    err = capsys.readouterr().err
    assert "generate: 100%" in err and "5/5" in err
    assert "tok/s" in err


def test_embed_bar_and_quiet_when_off(tiny_model_dir, pool_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ADG_PROGRESS", "1")
    embed_file(pool_file, tmp_path / "e.npy", model=str(tiny_model_dir))
    assert "embed: 100%" in capsys.readouterr().err
    monkeypatch.setenv("ADG_PROGRESS", "0")
    embed_file(pool_file, tmp_path / "e2.npy", model=str(tiny_model_dir))
    assert "embed" not in capsys.readouterr().err
