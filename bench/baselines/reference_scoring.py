"""The straightforward ADG scorer: the definition in README.md's "The math" written out per answer,
per token.

This is the baseline that `adg score` is measured against (bench/score.py) and tested equal to
(tests/test_hidden.py): one full forward pass per answer at batch size 1 with
`output_hidden_states=True`, every token decoded alone in Python to get its weight, one
eigendecomposition per instruction. It is deliberately slow and obvious.
"""

from __future__ import annotations

import re

import numpy as np
import torch

PUNCT = re.compile(r"[\s,.;:!?()\[\]{}\"'`~\-_/\\]+")


def weight_of(tokenizer, token_id: int) -> float:
    s = tokenizer.decode([token_id]).strip()
    if s == "" or PUNCT.fullmatch(s):
        return 0.0
    if re.search(r"[\d%℃°]", s):
        return 1.3
    return 1.0


@torch.inference_mode()
def pooled_vector(tokenizer, model, text: str, special: bool, max_length: int, uniform_fallback):
    ids = tokenizer(text, add_special_tokens=special, truncation=True, max_length=max_length)[
        "input_ids"
    ]
    out = model(input_ids=torch.tensor([ids], device=model.device), output_hidden_states=True)
    hs = out.hidden_states
    h = ((hs[-4].float() + hs[-3].float() + hs[-2].float()) / 3.0)[0].cpu().numpy()
    w = np.array([weight_of(tokenizer, t) for t in ids], dtype=np.float64)
    if w.sum() == 0:
        if not uniform_fallback:
            return np.zeros(h.shape[1])
        w = np.ones(len(ids))
    v = (w[:, None] * h).sum(0) / w.sum()
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def answer_vectors(tokenizer, model, instruction: str, answers: list[str]) -> np.ndarray:
    rows = []
    for a in answers:
        if not a.strip():
            rows.append(None)
            continue
        rows.append(pooled_vector(tokenizer, model, f"{instruction} {a}", False, 1024, False))
    hidden = next((len(r) for r in rows if r is not None), model.config.hidden_size)
    return np.stack([r if r is not None else np.zeros(hidden) for r in rows])


def instruction_vector(tokenizer, model, instruction: str) -> np.ndarray:
    return pooled_vector(tokenizer, model, instruction, True, 512, True)


def score_record(tokenizer, model, record: dict, wd: float = 0.6, wi: float = 0.4) -> dict:
    v = answer_vectors(tokenizer, model, record["instruction"], record["generated_answers"])
    k = len(v)
    s = v @ v.T
    c = np.eye(k) - np.ones((k, k)) / k
    lam = np.clip(np.sort(np.linalg.eigvalsh(c @ s @ c))[::-1], 0, None)
    tr = lam.sum()
    d = tr / k if tr >= 1e-12 else 0.0
    i = 1 - lam[0] / tr if tr >= 1e-12 else 0.0
    return {"dispersion": d, "anisotropy": i, "score": wd * d + wi * i}
