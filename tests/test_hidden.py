"""The batched encoder and scorer equal the straightforward per-answer definition."""

import numpy as np
import pytest
from helpers import sample_records

from adg.divergence import ScoreWeights
from adg.hidden import HiddenStateEncoder, content_weight_table, token_weight
from adg.scoring import score_vectors
from bench.baselines import reference_scoring as ref


@pytest.mark.parametrize(
    ("piece", "weight"),
    [
        ("", 0.0),
        ("  ", 0.0),
        (" ,", 0.0),
        ("...", 0.0),
        ("\\", 0.0),
        ("(", 0.0),
        ("--", 0.0),
        ("42", 1.3),
        (" 3.5", 1.3),
        ("%", 1.3),
        ("℃", 1.3),
        ("°C", 1.3),
        ("x2", 1.3),
        ("²", 1.3),  # a digit by str.isdigit, as in the straightforward baseline
        ("①", 1.3),
        ("٣", 1.3),
        ("½", 1.0),  # a number form, not a digit
        (" the", 1.0),
        ("@", 1.0),
        ("<s>", 1.0),
    ],
)
def test_token_weight_rules(piece, weight):
    assert token_weight(piece) == weight
    assert ref.weight_of(_OneToken(piece), 0) == weight


class _OneToken:
    """A tokenizer whose only token decodes to `piece` (feeds the baseline's weight rule)."""

    def __init__(self, piece):
        self.piece = piece

    def decode(self, ids):
        return self.piece


def test_weight_table_matches_per_token_decode(tiny):
    tokenizer, _ = tiny
    table = content_weight_table(tokenizer)
    assert table.shape == (len(tokenizer),)
    for tid in range(len(tokenizer)):
        assert table[tid] == ref.weight_of(tokenizer, tid)


def records_with_answers(n=6):
    recs = sample_records(n)
    for r in recs:
        out = r["output"]
        r["generated_answers"] = [out[:40], out[:200], "", out[-120:], "42% of 7 ℃"]
    return recs


# The Llama-style model stays in `make test-fast`; the Qwen-style one runs in `make test`.
@pytest.mark.parametrize(
    "fixture", ["tiny_model_dir", pytest.param("tiny_qwen_dir", marks=pytest.mark.slow)]
)
def test_batched_scores_equal_reference(fixture, request):
    from adg import models

    tokenizer, model = models.load(str(request.getfixturevalue(fixture)), device="cpu")
    enc = HiddenStateEncoder(tokenizer, model, max_batch_tokens=700, max_batch_size=5)
    recs = records_with_answers()
    groups = enc.answers_batch(
        [r["instruction"] for r in recs], [r["generated_answers"] for r in recs]
    )
    got = score_vectors(groups, ScoreWeights(), all_metrics=False)
    for r, g, res in zip(recs, groups, got, strict=True):
        want_v = ref.answer_vectors(tokenizer, model, r["instruction"], r["generated_answers"])
        np.testing.assert_allclose(g, want_v, atol=1e-5)
        assert not g[2].any()  # the empty answer is the zero vector
        want = ref.score_record(tokenizer, model, r)
        for key in ("dispersion", "anisotropy", "score"):
            assert res[key] == pytest.approx(want[key], abs=1e-4)


def test_instruction_vectors_equal_reference(tiny):
    tokenizer, model = tiny
    enc = HiddenStateEncoder(tokenizer, model, max_batch_size=3)
    texts = [r["instruction"] for r in sample_records(7)] + ["?!", "..."]
    got = enc.instruction_vectors(texts)
    for t, g in zip(texts, got, strict=True):
        np.testing.assert_allclose(g, ref.instruction_vector(tokenizer, model, t), atol=1e-5)
        assert np.linalg.norm(g) == pytest.approx(1.0, abs=1e-5)


def test_too_shallow_model_is_an_error():
    from helpers import build_model, build_tokenizer

    tok = build_tokenizer()
    with pytest.raises(ValueError, match="layers"):
        HiddenStateEncoder(tok, build_model(tok, layers=2))
