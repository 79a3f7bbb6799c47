"""Instruction-Following Difficulty (IFD), the loss-ratio baseline selector, computed in batches.

For a record with prompt p (the prompt generation samples with: the Alpaca prompt of instruction
and input, or the chat template's rendering of the conversation up to the answer,
`adg.method.prompts`) and reference output y:

    loss(y | p) = mean over y's tokens of −log P(y_t | p, y_<t)     (conditioned)
    loss(y)     = mean over y's tokens of −log P(y_t | y_<t)        (direct; BOS first if any)
    IFD         = loss(y | p) / loss(y)

A high IFD means the instruction helps little to predict the answer: a hard, informative example.
Records with IFD ≥ 1 (the instruction does not help at all) or no usable output are unusable: their
`score` is `UNUSABLE_SCORE`, below every valid IFD (which lies in (0, 1)). Run with the backbone it
is IFD; run with a small proxy model it is Superfiltering.

Only the hidden states are computed for the whole batch; the LM head runs on the positions that
carry a label, in row chunks, so the [batch, tokens, vocabulary] logits are never materialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from adg.method.prompts import adds_special_tokens, build_prompt

UNUSABLE_SCORE = -1.0
IGNORE = -100


class IFDScorer:
    """Batched conditioned / direct answer losses with one causal LM."""

    def __init__(
        self,
        tokenizer,
        model,
        max_length: int = 1024,
        batch_size: int = 8,
        prompt_format: str = "alpaca",
    ):
        self.tokenizer = tokenizer
        self.model = model
        self.prompt_format = prompt_format
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    def _sequences(self, record: dict[str, Any]) -> tuple[list[int], list[int], list[int]]:
        """(conditioned ids, conditioned labels, direct ids) for one record.

        Both sequences start with BOS where the tokenizer has one (a chat template writes its own
        opening tokens into the prompt instead), and both losses cover the same answer tokens:
        without a BOS the direct sequence's first token has no context to be predicted from, so
        it is left out of the conditioned loss as well. A prompt too long for `max_length` loses
        its beginning, never the "### Response:" line (or assistant header) next to the answer.
        """
        tok = self.tokenizer
        bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
        lead = bos if adds_special_tokens(self.prompt_format) else []
        text = build_prompt(record, self.prompt_format, tok)
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        answer = tok(record.get("output") or "", add_special_tokens=False)["input_ids"]
        answer = answer[: max(0, self.max_length - len(lead) - 1)]
        room = max(0, self.max_length - len(lead) - len(answer))
        prompt = prompt[len(prompt) - room :] if len(prompt) > room else prompt
        unlabelled = 0 if bos else 1
        cond = lead + prompt + answer
        labels = [IGNORE] * (len(lead) + len(prompt) + unlabelled) + answer[unlabelled:]
        return cond, labels[: len(cond)], bos + answer

    def _losses(self, seqs: Sequence[list[int]], labels: Sequence[list[int]]) -> np.ndarray:
        """Mean next-token loss over labelled positions, per sequence (NaN when none)."""
        import torch
        import torch.nn.functional as F

        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        lab = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, (s, y) in enumerate(zip(seqs, labels, strict=True)):
            ids[row, : len(s)] = torch.tensor(s)
            lab[row, : len(y)] = torch.tensor(y)
            mask[row, : len(s)] = 1
        ids, lab, mask = ids.to(self.device), lab.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            # Position t predicts token t + 1.
            target = lab[:, 1:]
            rows, cols = torch.nonzero(target != IGNORE, as_tuple=True)
            head = self.model.get_output_embeddings()
            nll = torch.empty(len(rows), device=self.device)
            for s in range(0, len(rows), 4096):
                r, c = rows[s : s + 4096], cols[s : s + 4096]
                logits = head(hidden[r, c]).float()
                nll[s : s + 4096] = F.cross_entropy(logits, target[r, c], reduction="none")
            total = torch.zeros(len(seqs), device=self.device).index_add_(0, rows, nll)
            count = torch.zeros(len(seqs), device=self.device).index_add_(
                0, rows, torch.ones_like(nll)
            )
        out = (total / count).cpu().numpy().astype(np.float64)
        return np.where(count.cpu().numpy() > 0, out, np.nan)

    def score(self, records: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
        """Per record: `loss_conditioned`, `loss_direct`, `ifd` and the selection `score`."""
        results = []
        for start in range(0, len(records), self.batch_size):
            chunk = records[start : start + self.batch_size]
            triples = [self._sequences(r) for r in chunk]
            cond = self._losses([t[0] for t in triples], [t[1] for t in triples])
            direct_ids = [t[2] for t in triples]
            # The first token of the direct sequence has no context: it carries no label.
            direct_labels = [[IGNORE, *s[1:]] if s else [] for s in direct_ids]
            has_answer = [len(s) > 1 for s in direct_ids]
            safe_ids = [s if s else [self.tokenizer.pad_token_id or 0] for s in direct_ids]
            direct = self._losses(safe_ids, [y or [IGNORE] for y in direct_labels])
            for c, d, ok in zip(cond, direct, has_answer, strict=True):
                ifd = c / d if ok and d > 0 else float("nan")
                usable = np.isfinite(ifd) and ifd < 1.0
                results.append(
                    {
                        "loss_conditioned": _json_float(c),
                        "loss_direct": _json_float(d),
                        "ifd": _json_float(ifd),
                        "score": float(ifd) if usable else UNUSABLE_SCORE,
                    }
                )
        return results


def _json_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
