"""One base for user-facing errors: `adg` prints them (and OSErrors) as one line with exit status
2; anything else is a bug and keeps its traceback; ADG_DEBUG=1 shows the traceback for all."""

from __future__ import annotations

import numpy as np
import pytest

from adg.cli import main
from adg.errors import AdgError, InputError
from adg.io.records import PoolError
from adg.io.storage import StorageError
from adg.stages.select import ScoreCollapse


def test_the_stage_errors_share_the_base():
    for cls in (InputError, PoolError, StorageError, ScoreCollapse):
        assert issubclass(cls, AdgError)
        assert issubclass(cls, ValueError)  # library callers catching ValueError still do


def test_a_user_error_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ADG_DEBUG", raising=False)
    missing = tmp_path / "nope.jsonl"
    assert main(["ingest", str(missing), "--output", str(tmp_path / "pool.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("adg ingest: error: ") and "nope.jsonl" in err


def test_a_bad_flag_value_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ADG_DEBUG", raising=False)
    emb = tmp_path / "emb.npy"
    np.save(emb, np.eye(4, dtype=np.float32))
    assert main(["cluster", "--embeddings", str(emb), "--output", "c.npy", "--count", "0"]) == 2
    assert "bin count must be positive" in capsys.readouterr().err


def test_any_other_error_keeps_its_traceback(tmp_path, monkeypatch):
    """A bug inside the library (here k-means failing on valid embeddings, as a scikit-learn
    change could make it) is not a user mistake: its ValueError reaches the caller untouched
    instead of being flattened to one line. (A malformed embeddings file is a user error:
    `cluster` checks it first.)"""
    from adg.stages import cluster

    def broken(*_args, **_kwargs):
        raise ValueError("internal: k-means failed")

    monkeypatch.delenv("ADG_DEBUG", raising=False)
    monkeypatch.setattr(cluster, "kmeans_bins", broken)
    emb = tmp_path / "emb.npy"
    np.save(emb, np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="internal") as info:
        main(["cluster", "--embeddings", str(emb), "--output", str(tmp_path / "c.npy")])
    assert not isinstance(info.value, AdgError)
    np.save(emb, np.arange(4, dtype=np.float32))  # 1-D: the user's file, one line
    assert main(["cluster", "--embeddings", str(emb), "--output", str(tmp_path / "c.npy")]) == 2


def test_adg_debug_shows_the_traceback_of_user_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ADG_DEBUG", "1")
    with pytest.raises(PoolError, match=r"nope\.jsonl"):
        main(["ingest", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "p.jsonl")])
