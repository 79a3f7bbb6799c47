"""The models and inputs the parts measure: real records from the in-repository pool, a byte-level
BPE tokenizer trained on it and padded to the model's vocabulary, a Llama-family model built from a
shape's config with seeded random weights, its parameter and KV-cache counts; the `build` and `free`
parts, and the model saved to a folder for the parts that load one (train, evaluate, vLLM).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.gpu.run import Run
from bench.gpu.settings import POOL
from bench.gpu.timing import free_memory, peak_memory, timed

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # pad 0, bos 1, eos 2
BPE_VOCAB = 16384  # asked of the BPE trainer; the in-repository pool reaches ~9.6K


def pool_records(n: int) -> list[dict[str, Any]]:
    """n real Alpaca-GPT4 records from the in-repository pool, cycled with unique ids."""
    with open(POOL, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [{**rows[i % len(rows)], "id": f"{rows[i % len(rows)]['id']}-{i}"} for i in range(n)]


def write_pool(path: Path, n: int) -> Path:
    from adg.io.jsonl import write_jsonl

    write_jsonl(path, pool_records(n))
    return path


def build_tokenizer(vocab_size: int):
    """Byte-level BPE trained on the in-repository pool, padded with added tokens to vocab_size
    (the package docstring: every id then decodes to text that encodes back to one token)."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    texts = [
        " ".join([r["instruction"], r.get("input") or "", r["output"]]) for r in pool_records(200)
    ]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(BPE_VOCAB, vocab_size // 2),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    trained = tok.get_vocab_size()
    bos = tok.token_to_id("<|im_start|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)]
    )
    tok.add_tokens([AddedToken(f"<|v{i}|>", normalized=False) for i in range(trained, vocab_size)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    assert len(fast) == vocab_size, (len(fast), vocab_size)
    return fast, trained


def build_model(fields: dict[str, Any], device: str, seed: int = 0):
    """A Llama-family causal LM from the shape's fields, seeded random weights, made on `device`
    (bf16 on a GPU, fp32 on CPU, as adg.io.models.load loads)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**fields, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def parameter_counts(model) -> dict[str, int]:
    """Parameters a token passes through: generated (all blocks + head), read by embed/score (the
    blocks up to the deepest hidden layer read, adg.method.hidden.LAYERS; no head), and in all."""
    from adg.method.hidden import LAYERS

    blocks = model.get_decoder().layers
    per_block = sum(p.numel() for p in blocks[0].parameters())
    head = model.get_output_embeddings().weight.numel()
    deepest = len(blocks) + 1 + max(LAYERS)  # hidden_states[j] is block j-1's output
    return {
        "per_block": per_block,
        "blocks": len(blocks),
        "head": head,
        "generate": per_block * len(blocks) + head,
        "read": per_block * deepest,
        "total": sum(p.numel() for p in model.parameters()),
    }


def kv_bytes_per_token(fields: dict[str, Any], dtype_bytes: int) -> int:
    return (
        2
        * fields["num_hidden_layers"]
        * fields["num_key_value_heads"]
        * fields["head_dim"]
        * dtype_bytes
    )


def build(run: Run, shape: str) -> None:
    """The shape's tokenizer, model and hidden-state encoder, timed, with its counts."""
    from adg.method.hidden import HiddenStateEncoder

    fields = run.shapes[shape]
    res = run.shape_results(shape)
    (tok, trained), t_tok = timed(lambda: build_tokenizer(fields["vocab_size"]))
    with peak_memory(res.setdefault("build", {})):
        model, t_model = timed(lambda: build_model(fields, run.device))
        encoder, t_enc = timed(lambda: HiddenStateEncoder(tok, model))
    counts = parameter_counts(model)
    dtype_bytes = next(model.parameters()).element_size()
    res["config"] = fields
    res["parameters"] = counts
    res["dtype"] = str(next(model.parameters()).dtype)
    res["dtype_bytes"] = dtype_bytes
    res["kv_bytes_per_token"] = kv_bytes_per_token(fields, dtype_bytes)
    res["weights_bytes"] = counts["total"] * dtype_bytes
    res["tokenizer"] = {"bpe_tokens": trained, "padded_to": len(tok)}
    res["build"].update(
        tokenizer_s=round(t_tok, 2), model_s=round(t_model, 2), encoder_s=round(t_enc, 2)
    )
    if run.dry:
        res["dry_run_stand_in_for"] = shape
    run.objects[shape] = {"tokenizer": tok, "model": model, "encoder": encoder}


def free(run: Run, shape: str) -> None:
    """Drop the shape's objects, so the next shape has the card to itself."""
    run.objects.pop(shape, None)
    free_memory()


def save_model(run: Run, shape: str) -> Path:
    """The in-memory model and tokenizer saved once to a folder, for the parts that load one."""
    obj = run.objects[shape]
    folder = obj.get("folder")
    if folder is None:
        folder = run.work / f"{shape}-model"
        obj["model"].save_pretrained(folder)
        obj["tokenizer"].save_pretrained(folder)
        obj["folder"] = folder
    return folder
