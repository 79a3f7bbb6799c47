"""The train parts (135M shape): a few optimizer steps of `adg.stages.train.train` (the published
recipe's batch, bf16 on a GPU), and the same through `adg.stages.train.launch` under torchrun with a
ZeRO-2 config derived from the shipped ZeRO-3 one, where DeepSpeed is importable.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from bench.gpu.models import pool_records, save_model
from bench.gpu.run import Run
from bench.gpu.timing import peak_memory, timed
from bench.gpu.wheels import CARRY_HINT


def train_config(run: Run, shape: str, name: str, deepspeed: str):
    from adg.config import TrainConfig
    from adg.io.jsonl import write_jsonl

    data = run.work / "train.jsonl"
    write_jsonl(data, pool_records(200))
    return TrainConfig(
        data=str(data),
        output_dir=str(run.work / f"{shape}-{name}"),
        model=str(save_model(run, shape)),
        max_steps=run.sizes.train_steps,
        gradient_accumulation_steps=run.sizes.train_accumulation,
        deepspeed=deepspeed,
        save_steps=10**6,
        logging_steps=1,
    )


def train_summary(run: Run, cfg, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
    from adg.stages.train import encode_all

    tok = run.objects["smollm2-135m"]["tokenizer"]
    examples, _ = encode_all(pool_records(200), tok, cfg.model_max_length)
    mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)
    sequences = metrics["steps"] * cfg.per_device_batch_size * cfg.gradient_accumulation_steps
    return {
        "steps": metrics["steps"],
        "sequences": sequences,
        "mean_example_tokens": mean_len,
        "tokens_per_s_approx": mean_len * sequences / seconds,
        "seconds": round(seconds, 2),
        "runtime_s_with_load": metrics.get("runtime_s"),
        "first_loss": metrics.get("first_loss"),
        "final_loss": metrics.get("final_loss"),
        "batch": f"{cfg.per_device_batch_size} x {cfg.gradient_accumulation_steps}",
        "output_dir": cfg.output_dir,
    }


def train(run: Run, shape: str) -> None:
    from adg.stages import train as training

    res = run.shape_results(shape)
    cfg = train_config(run, shape, "trained", deepspeed="")
    entry: dict[str, Any] = {
        "deepspeed": None,
        "precision": "bf16 autocast" if run.device == "cuda" else "fp32",
    }
    with peak_memory(entry):
        metrics, seconds = timed(lambda: training.train(cfg))
    entry.update(train_summary(run, cfg, metrics, seconds))
    res["train"] = entry
    run.objects[shape]["trained"] = Path(cfg.output_dir)


def train_zero2(run: Run, shape: str) -> str | None:
    """The train stage under torchrun + DeepSpeed ZeRO-2 (the shipped ZeRO-3 config with stage
    2), when DeepSpeed is importable on a GPU."""
    from adg.stages import train as training

    if run.device != "cuda":
        return "DeepSpeed needs a CUDA GPU"
    if importlib.util.find_spec("deepspeed") is None:
        return f"DeepSpeed is not installed: {CARRY_HINT}"
    shipped = json.loads((training.configs_dir() / training.DEEPSPEED_CONFIGS["zero3"]).read_text())
    zero = {
        k: v
        for k, v in shipped["zero_optimization"].items()
        if not k.startswith(("stage3", "sub_group"))
    }
    zero["stage"] = 2
    config = {**shipped, "zero_optimization": zero}
    path = run.work / "deepspeed_zero2.json"
    path.write_text(json.dumps(config, indent=2))
    os.environ.setdefault("DS_ACCELERATOR", "cuda")
    cfg = train_config(run, shape, "trained-zero2", deepspeed=str(path))
    metrics, seconds = timed(lambda: training.launch(cfg))
    entry = {
        "deepspeed": "ZeRO-2 (shipped zero3 config with stage 2)",
        "deepspeed_version": importlib.metadata.version("deepspeed"),
        "config": config,
        "peak_bytes": None,
        "note": "torchrun worker: its memory is not seen by this process; time includes the "
        "worker's start and DeepSpeed's init (torch's fused AdamW: nothing is JIT-built)",
    }
    entry.update(train_summary(run, cfg, metrics, seconds))
    run.shape_results(shape)["train_zero2"] = entry
    return None
