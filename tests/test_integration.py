"""The embedded SmolLM2-135M-Instruct model on real records, stage by stage through the CLI."""

import json

import numpy as np
import pytest
from helpers import SAMPLE_POOL, embedded_model_or_skip

from adg.cli import main

pytestmark = pytest.mark.integration


def test_stage_chain_on_embedded_model(tmp_path, capsys):
    embedded_model_or_skip()
    t = tmp_path
    assert main(["ingest", str(SAMPLE_POOL), "--output", f"{t}/pool.jsonl", "--limit", "6"]) == 0
    gen = ["generate", "--input", f"{t}/pool.jsonl", "--output", f"{t}/generated.jsonl"]
    assert main([*gen, "--num-samples", "3", "--max-new-tokens", "24", "--backend", "hf"]) == 0
    assert main(["embed", "--input", f"{t}/pool.jsonl", "--output", f"{t}/emb.npy"]) == 0
    assert (
        main(["cluster", "--embeddings", f"{t}/emb.npy", "--output", f"{t}/c.npy", "--count", "2"])
        == 0
    )
    assert main(["score", "--input", f"{t}/generated.jsonl", "--output", f"{t}/scored.jsonl"]) == 0
    for d in ("a", "b"):
        sel = ["select", "--input", f"{t}/scored.jsonl", "--clusters", f"{t}/c.npy"]
        assert main([*sel, "--budget", "2", "--output-dir", f"{t}/{d}"]) == 0

    emb = np.load(f"{t}/emb.npy")
    assert emb.shape == (6, 576)  # SmolLM2-135M hidden size
    scored = [json.loads(line) for line in open(f"{t}/scored.jsonl", encoding="utf-8")]
    assert len(scored) == 6
    for r in scored:
        assert len(r["generated_answers"]) == 3
        # Real, different sampled answers at temperature 1.4 spread out: D > 0.
        assert 0 < r["dispersion"] < 1 and 0 <= r["anisotropy"] <= 1
    for name in ("top", "middle", "bottom", "selection_report"):
        assert (t / "a" / f"{name}.json").read_bytes() == (t / "b" / f"{name}.json").read_bytes()
    assert len(json.loads((t / "a" / "top.json").read_text())) == 2


def test_embedded_tokenizer_superscripts_are_not_digits():
    # SmolLM2 has ² and ³ as tokens of their own: the published regex gives them weight 1, not 1.3.
    from transformers import AutoTokenizer

    from adg.method.hidden import content_weight_table

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_or_skip())
    table = content_weight_table(tokenizer)
    for piece, weight in (("²", 1.0), ("³", 1.0), ("7", 1.3)):
        ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, piece
        assert table[ids[0]] == weight
