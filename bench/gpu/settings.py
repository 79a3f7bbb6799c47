"""What the GPU benchmark measures and how much: the two model shapes (and their tiny dry-run
stand-ins), the sizes of each part (GPU run, --dry-run, --quick), the parts in the order they run
and their time estimates, the paper's figures and the in-repository inputs. Standard library only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
POOL = REPO / "data" / "alpaca_gpt4_sample_200.jsonl"
EVAL_TASKS_DIR = REPO / "tests" / "lm_eval_tasks"
EVAL_TASKS = ["adg_tiny_mc", "adg_tiny_gen"]
# The paper's cost table: ADG selects at 8.10 examples/s on 4 GPUs with 8B backbones.
PAPER_EXAMPLES_PER_S = 8.10
PAPER_GPUS = 4


# The converted embedded model's config.json (~/.cache/adg/models/SmolLM2-135M-Instruct), the
# fields that decide the shape; and the LLaMA-3-8B shape the issue names.
SHAPES: dict[str, dict[str, Any]] = {
    "llama3-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
    "smollm2-135m": {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "vocab_size": 49152,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
    },
}
# --dry-run: the same two families, tiny (CPU, fp32).
DRY_SHAPES: dict[str, dict[str, Any]] = {
    "llama3-8b": {
        **SHAPES["llama3-8b"],
        "hidden_size": 96,
        "intermediate_size": 256,
        "num_hidden_layers": 5,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 1300,
    },
    "smollm2-135m": {
        **SHAPES["smollm2-135m"],
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 1100,
    },
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each part does (GPU run, --dry-run, --quick)."""

    max_new_tokens: int
    batches: dict[str, tuple[int, ...]]  # generate sweep, instructions per batch, per shape
    loop_records: dict[str, int]  # records scored by the per-answer loop
    train_steps: int
    train_accumulation: int
    eval_limit: int | None
    eval_batch_size: int


GPU_SIZES = Sizes(
    max_new_tokens=256,
    batches={"llama3-8b": (8, 32, 96, 192, 384), "smollm2-135m": (16, 64, 256, 512, 1024)},
    loop_records={"llama3-8b": 4, "smollm2-135m": 8},
    train_steps=10,
    train_accumulation=8,
    eval_limit=None,
    eval_batch_size=16,
)
DRY_SIZES = Sizes(
    max_new_tokens=16,
    batches={"llama3-8b": (2, 4), "smollm2-135m": (2, 4)},
    loop_records={"llama3-8b": 2, "smollm2-135m": 2},
    train_steps=2,
    train_accumulation=2,
    eval_limit=4,
    eval_batch_size=4,
)
QUICK_SIZES = dataclasses.replace(
    DRY_SIZES,
    max_new_tokens=6,
    batches={"llama3-8b": (2,), "smollm2-135m": (2,)},
    loop_records={"llama3-8b": 1, "smollm2-135m": 1},
    train_steps=1,
    train_accumulation=1,
    eval_limit=2,
)


# The parts in the order they run: each shape's in turn, then the optional ones, last, only if time
# is left (lm-eval is wanted; ZeRO-2 and compile are extras).
SHAPE_PARTS = {
    "llama3-8b": ["build", "generate", "embed_score", "diagnose", "static_cache", "free"],
    "smollm2-135m": ["build", "generate", "embed_score", "diagnose", "static_cache", "train"],
}
LATE_PARTS = [
    "smollm2-135m.evaluate",
    "smollm2-135m.train_zero2",
    "smollm2-135m.compiled",
    "smollm2-135m.vllm",
]
OPTIONAL = {"smollm2-135m.train_zero2", "smollm2-135m.compiled", "smollm2-135m.vllm"}
# Seconds a part is expected to take on an H200 (the package docstring's budget), and on CPU for the
# dry runs (3 s unless named). A part starts only if its estimate fits in what is left; the
# generate sweep also leaves the estimates of every later part that is not optional.
GPU_ESTIMATES = {
    "llama3-8b.build": 30,
    "llama3-8b.generate": 110,
    "llama3-8b.embed_score": 25,
    "llama3-8b.diagnose": 20,
    "llama3-8b.static_cache": 40,
    "llama3-8b.free": 5,
    "smollm2-135m.build": 15,
    "smollm2-135m.generate": 40,
    "smollm2-135m.embed_score": 10,
    "smollm2-135m.diagnose": 10,
    "smollm2-135m.static_cache": 10,
    "smollm2-135m.train": 30,
    "smollm2-135m.evaluate": 60,
    "smollm2-135m.train_zero2": 180,
    "smollm2-135m.compiled": 150,
    "smollm2-135m.vllm": 90,
}
CPU_ESTIMATES = {"train": 10, "evaluate": 25}
