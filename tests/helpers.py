"""Helpers the tests share (plain functions, imported as `from helpers import ...`): the in-repo
sample's records, JSONL writing, tiny random models and a tokenizer built in the test (no
download), and the embedded model or a skip. Fixtures live in conftest.py.

The tokenizer is a byte-level BPE trained in well under a second on the in-repo sample pool, so it
encodes any text; the models are random-weight Llama- and Qwen-style decoders of a few layers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_POOL = REPO / "data" / "alpaca_gpt4_sample_200.jsonl"


def sample_records(n: int) -> list[dict]:
    with open(SAMPLE_POOL, encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh, strict=False)]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def build_tokenizer(vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    texts = [r["instruction"] + " " + r["output"] for r in sample_records(200)]
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    return fast


def build_model(tokenizer, family: str = "llama", layers: int = 4, seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config_cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[family]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.eval()
    return model


def save_tiny(path: Path, family: str = "llama") -> Path:
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, family)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def embedded_model_or_skip():
    """The embedded SmolLM2 folder (prepared by `make setup`), or skip outside the make flow."""
    from adg.models import _is_hf_folder, embedded_model_dir

    path = embedded_model_dir()
    if not _is_hf_folder(path):
        if os.environ.get("CI"):
            pytest.fail("embedded model missing in CI: `make test` should have prepared it")
        pytest.skip("embedded model not prepared; run `make setup`")
    return path


def selected_run(out: Path, records: list[dict], budget: int, run_parameters=None) -> dict:
    """`adg select` on `records` with seeded random D and I (score 0.6 D + 0.4 I), two sampled
    answers each and four bins, into `out`: the selection report; report.html / report.md there."""
    import numpy as np

    from adg.subsets import select_file

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    scored = []
    for r in records:
        d, i = float(rng.random()), float(rng.random())
        answers = [f"answer one to {r['id']}", "answer two"]
        scored.append({**r, "dispersion": d, "anisotropy": i, "score": 0.6 * d + 0.4 * i})
        scored[-1]["generated_answers"] = answers
    write_jsonl(out / "scored.jsonl", scored)
    np.save(out / "clusters.npy", rng.integers(0, 4, len(scored)))
    return select_file(
        out / "scored.jsonl", out / "clusters.npy", budget, out, run_parameters=run_parameters
    )
