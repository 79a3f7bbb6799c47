"""Instruction-Following Difficulty (adg.method.ifd), the IFD and Superfiltering baselines, on
hand-checkable cases. The score stage's baseline methods (ifd, superfiltering, random) are in
test_score.py."""

import pytest
import torch
from helpers import build_model, build_tokenizer, sample_records

from adg.method.ifd import IFDScorer


def test_ifd_equals_ratio_of_plain_losses(tiny):
    tokenizer, model = tiny
    rec = sample_records(1)[0]
    got = IFDScorer(tokenizer, model).score([rec])[0]
    # The same two losses, computed the plain way with the model's own loss.
    scorer = IFDScorer(tokenizer, model)
    cond, labels, direct = scorer._sequences(rec)
    with torch.inference_mode():
        lc = model(input_ids=torch.tensor([cond]), labels=torch.tensor([labels])).loss.item()
        ld = model(
            input_ids=torch.tensor([direct]), labels=torch.tensor([[-100, *direct[1:]]])
        ).loss.item()
    assert got["loss_conditioned"] == pytest.approx(lc, rel=1e-4)
    assert got["loss_direct"] == pytest.approx(ld, rel=1e-4)
    assert got["ifd"] == pytest.approx(lc / ld, rel=1e-4)


def test_both_losses_cover_the_same_answer_tokens(tiny):
    tokenizer, model = tiny
    rec = sample_records(1)[0]
    scorer = IFDScorer(tokenizer, model)
    cond, labels, direct = scorer._sequences(rec)
    assert cond[0] == direct[0] == tokenizer.bos_token_id
    answer = direct[1:]
    assert cond[-len(answer) :] == answer and labels[-len(answer) :] == answer
    assert all(y == -100 for y in labels[: -len(answer)])
    # A prompt too long for max_length keeps its end: the answer still follows "### Response:".
    short = IFDScorer(tokenizer, model, max_length=len(answer) + 8)
    cond, labels, _ = short._sequences(rec)
    assert len(cond) == len(answer) + 8 and cond[-len(answer) :] == answer
    response = tokenizer("### Response:\n", add_special_tokens=False)["input_ids"]
    prompt_tail = cond[1 : -len(answer)]
    assert prompt_tail[-len(response) :] == response[-len(prompt_tail) :]


def test_batched_equals_one_by_one(tiny):
    tokenizer, model = tiny
    recs = sample_records(5)
    batched = IFDScorer(tokenizer, model, batch_size=5).score(recs)
    single = [IFDScorer(tokenizer, model, batch_size=1).score([r])[0] for r in recs]
    for a, b in zip(batched, single, strict=True):
        assert a["ifd"] == pytest.approx(b["ifd"], rel=1e-4)


@pytest.mark.slow
def test_memorised_output_has_low_ifd():
    # Hand-checkable: fit a fresh tiny model until it predicts record A's output from A's prompt
    # (conditioned loss → 0), then IFD(A) → 0, while a record it never saw keeps IFD near 1.
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=3)
    a, b = sample_records(2)
    a = {**a, "output": a["output"][:120]}
    scorer = IFDScorer(tokenizer, model)
    before = scorer.score([a, b])
    cond, labels, _ = scorer._sequences(a)
    ids, lab = torch.tensor([cond]), torch.tensor([labels])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(80):
        opt.zero_grad()
        model(input_ids=ids, labels=lab).loss.backward()
        opt.step()
    model.eval()
    after = scorer.score([a, b])
    assert after[0]["loss_conditioned"] < 0.05
    assert after[0]["ifd"] < 0.1 < before[0]["ifd"]
    assert after[0]["score"] == after[0]["ifd"]  # usable: IFD < 1
    assert after[1]["ifd"] > 0.5  # the unseen record's answer is not given away by its prompt
