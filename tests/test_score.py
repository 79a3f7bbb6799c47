"""The score stage (adg.stages.score) on files: fields, resume, the original ADG file format, the
baseline methods (IFD, Superfiltering, the seeded random score), errors. The embed stage is in
test_embed.py, select in test_select.py."""

import json
import shutil

import pytest
from helpers import sample_records, write_jsonl

from adg.cli import main
from adg.io import fingerprint
from adg.method.ifd import UNUSABLE_SCORE
from adg.stages.score import score_file


def generated_records(n):
    recs = sample_records(n)
    for r in recs:
        out = r["output"]
        r["generated_answers"] = [out[:60], out[30:160], out[-80:], out[:10]]
    return recs


def read(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_score_file_fields_and_all_metrics(tmp_path, tiny_model_dir):
    src = write_jsonl(tmp_path / "gen.jsonl", generated_records(5))
    out = tmp_path / "scored.jsonl"
    s = score_file(src, out, model=str(tiny_model_dir), all_metrics=True, chunk_records=2)
    assert (s.scored, s.resumed) == (5, 0)
    rows = read(out)
    assert [r["id"] for r in rows] == list(range(5))
    for r in rows:
        assert 0 <= r["dispersion"] <= 1 and 0 <= r["anisotropy"] <= 1
        assert r["score"] == pytest.approx(0.6 * r["dispersion"] + 0.4 * r["anisotropy"])
        for key in ("spectral_entropy", "top_eig_share", "mean_pairwise_cosine", "eig_ratio_12"):
            assert key in r
        assert "dispersion_loo_std" in r and r["generated_answers"]


def test_original_adg_generated_file_scores_as_is(tmp_path, tiny_model_dir):
    # The original repository's files: a JSON array, no ids, answers under generated_answers.
    recs = [{k: v for k, v in r.items() if k != "id"} for r in generated_records(3)]
    src = tmp_path / "alpaca_generated.json"
    src.write_text(json.dumps(recs))
    out = tmp_path / "scored.jsonl"
    score_file(src, out, model=str(tiny_model_dir))
    assert [r["id"] for r in read(out)] == [0, 1, 2]


def test_score_resumes(tmp_path, tiny_model_dir):
    src = write_jsonl(tmp_path / "gen.jsonl", generated_records(6))
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    score_file(src, full, model=str(tiny_model_dir))
    lines = full.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:3]) + lines[3][:10])
    shutil.copy(fingerprint.sidecar_path(full), fingerprint.sidecar_path(part))
    s = score_file(src, part, model=str(tiny_model_dir))
    assert (s.resumed, s.scored) == (3, 3)
    # The resumed records are batched with other texts than in one run (batches are cut by length),
    # so their floats may differ in the last bits; everything else is identical.
    resumed, whole = read(part), read(full)
    assert [r["id"] for r in resumed] == [r["id"] for r in whole]
    for a, b in zip(resumed, whole, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                assert a[k] == pytest.approx(b[k], abs=1e-6), k
            else:
                assert a[k] == b[k], k


def test_missing_answers_is_a_clear_error(tmp_path, capsys):
    src = write_jsonl(tmp_path / "gen.jsonl", [{"id": 1, "instruction": "x"}])
    code = main(["score", "--input", str(src), "--output", str(tmp_path / "s.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "generated_answers" in err and "id 1" in err


@pytest.mark.parametrize("method", ["ifd", "superfiltering"])
def test_score_file_ifd_methods(tmp_path, tiny_model_dir, method):
    recs = [*sample_records(4), {"id": 99, "instruction": "Say nothing.", "output": ""}]
    src = write_jsonl(tmp_path / "pool.jsonl", recs)
    out = tmp_path / "scored.jsonl"
    m = str(tiny_model_dir)
    score_file(src, out, method=method, model=m, proxy_model=m)
    rows = read(out)
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 99]
    for r in rows[:4]:
        assert r["ifd"] > 0 and r["loss_conditioned"] > 0 and r["loss_direct"] > 0
        assert r["score"] == (r["ifd"] if r["ifd"] < 1 else UNUSABLE_SCORE)
    assert rows[4]["ifd"] is None and rows[4]["score"] == UNUSABLE_SCORE


def test_random_method_is_seeded_per_id(tmp_path):
    src = write_jsonl(tmp_path / "pool.jsonl", sample_records(20))
    a, b, c = (tmp_path / f"{x}.jsonl" for x in "abc")
    score_file(src, a, method="random", seed=1)
    score_file(src, b, method="random", seed=1)
    score_file(src, c, method="random", seed=2)
    sa, sc = [r["score"] for r in read(a)], [r["score"] for r in read(c)]
    assert read(a) == read(b) and sa != sc
    assert all(0 <= x < 1 for x in sa) and len(set(sa)) == 20


def test_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="unknown scoring method"):
        score_file(tmp_path / "x", tmp_path / "y", method="loss")
