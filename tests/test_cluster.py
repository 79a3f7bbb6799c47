"""The cluster stage (adg.stages.cluster): an embeddings file that is missing, not a .npy array,
not a 2-D float array or not finite is one clear error naming it, and nothing is written. The
seeded k-means itself is in test_clustering.py."""

from __future__ import annotations

import numpy as np
import pytest

from adg.stages.cluster import cluster_file


def test_bad_embeddings_are_one_clear_error(tmp_path):
    from adg.errors import InputError

    out = str(tmp_path / "c.npy")
    with pytest.raises(InputError, match="no such embeddings file"):
        cluster_file(str(tmp_path / "missing.npy"), out)
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(InputError, match=r"text.npy: not a .npy array"):
        cluster_file(str(tmp_path / "text.npy"), out)
    np.save(tmp_path / "flat.npy", np.zeros(8, dtype=np.float32))
    with pytest.raises(InputError, match=r"expected a 2-D float array.*\(8,\)"):
        cluster_file(str(tmp_path / "flat.npy"), out)
    np.save(tmp_path / "ints.npy", np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(InputError, match="expected a 2-D float array"):
        cluster_file(str(tmp_path / "ints.npy"), out)
    emb = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    emb[7, 2] = np.nan
    np.save(tmp_path / "nan.npy", emb)
    with pytest.raises(InputError, match=r"row 7 \(record 7 of the pool\) is not finite"):
        cluster_file(str(tmp_path / "nan.npy"), out)
    assert not (tmp_path / "c.npy").exists()
