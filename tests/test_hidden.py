"""The batched encoder and scorer equal the straightforward per-answer definition."""

import itertools

import numpy as np
import pytest
from helpers import sample_records

from adg.method.divergence import ScoreWeights
from adg.method.hidden import HiddenStateEncoder, content_weight_table, token_weight
from adg.stages.score import score_vectors
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
        # The published regex's \d is Unicode category Nd: ², ³, ⁶, ½ and ① are not digits.
        ("²", 1.0),
        ("x³", 1.0),
        ("⁶", 1.0),
        ("①", 1.0),
        ("½", 1.0),
        ("٣", 1.3),  # Arabic-Indic three is Nd
        ("७", 1.3),  # Devanagari seven is Nd
        ("²5", 1.3),
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
    from adg.io import models

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


def test_batches_bound_padding_on_skewed_lengths(tiny):
    # Real answer lengths are skewed (a few long, many short): with the CPU's small per-pass
    # overhead the batches waste under 5 % on padding, and every text lands in exactly one batch.
    tokenizer, model = tiny
    enc = HiddenStateEncoder(tokenizer, model, batch_overhead_tokens=32)
    rng = np.random.default_rng(0)
    lengths = np.minimum(1024, rng.lognormal(4.3, 0.9, 500).astype(np.int64) + 1)
    batches = enc._batches(lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * lengths[b].max() <= enc.max_batch_tokens or len(b) == 1
        assert len(b) <= enc.max_batch_size
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded / lengths.sum() <= 1.05


def _plain_best_cost(widths, overhead, max_tokens, max_rows):
    """Least Σ (rows × widest + overhead) over every split of the sorted list, by enumeration."""
    n, best = len(widths), float("inf")
    for mask in range(2 ** (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        cost = 0
        for a, b in itertools.pairwise(cuts):
            rows = b - a
            if rows > max_rows or (rows > 1 and rows * widths[a] > max_tokens):
                cost = float("inf")
                break
            cost += rows * widths[a] + overhead
        best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_batches_are_the_least_cost_split(tiny, seed):
    tokenizer, model = tiny
    rng = np.random.default_rng(seed)
    overhead = int(rng.choice([0, 8, 64, 2048]))
    enc = HiddenStateEncoder(
        tokenizer,
        model,
        max_batch_tokens=int(rng.integers(50, 400)),
        max_batch_size=int(rng.integers(1, 5)),
        batch_overhead_tokens=overhead,
    )
    lengths = rng.integers(1, 120, int(rng.integers(1, 11)))
    batches = enc._batches(lengths)
    widths = sorted(lengths.tolist(), reverse=True)
    cost = sum(len(b) * lengths[b].max() + overhead for b in batches)
    limits = (enc.max_batch_tokens, enc.max_batch_size)
    assert cost == _plain_best_cost(widths, overhead, *limits)
