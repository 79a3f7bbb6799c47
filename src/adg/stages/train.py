"""Supervised fine-tuning on a selected subset: Alpaca prompts, loss on response tokens only.

Every record becomes its prompt followed by its `output` and the EOS token. The prompt is the
subset's one format (`TrainConfig.prompt_format`, adg.method.prompts): the pipeline passes the
format its pool was resolved to, so training sees the prompts generation and scoring saw; `auto`
(the CLI's default) resolves it over the subset by the same rule: the tokenizer's chat template
(`adg.method.prompts.chat_prompt`) for all when any record has a system prompt or earlier turns,
else `alpaca_prompt(record)` for all. Prompt and
response are tokenized separately and concatenated, so the boundary is exact and matches what the
model sees at generation time; labels are -100 on the prompt and on padding, so the loss covers the
response (and EOS) alone. Sequences are cut at `model_max_length`; a record whose prompt alone
fills it has nothing to learn from and is skipped. Training uses the transformers `Trainer` with the
published recipe as defaults (5 epochs, batch 2 x 8 accumulation, lr 1e-5, cosine, 3% warm-up, no
weight decay, 2048 tokens; bf16 and gradient checkpointing on GPU, fp32 on CPU). DeepSpeed (ZeRO-3
configs in deepspeed_configs/, package data) is used only when a config is given; several GPUs in
one pod, or DeepSpeed, are driven by `launch`, which re-runs this module under torchrun.
Checkpoints go to `<output>/checkpoints` (or `checkpoint_dir`) and a restarted run resumes from the
last one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adg import progress
from adg.config import TrainConfig
from adg.errors import InputError
from adg.io.shapes import has_context_turns
from adg.method.prompts import (
    AUTO,
    alpaca_prompt,
    chat_prompt,
    check_prompt_format,
    resolve_prompt_format,
)

IGNORE_INDEX = -100
METRICS_FILE = "training_metrics.json"
# `--deepspeed NAME` picks deepspeed_configs/deepspeed_NAME.json, package data installed with adg
# (so the train image has them); a path to a JSON file works too.
DEEPSPEED_CONFIGS = {
    "zero3": "deepspeed_zero3.json",
    "zero3_offload": "deepspeed_zero3_offload.json",
}


# ----------------------------------------------------------------------------- data


def encode(
    record: dict[str, Any], tokenizer, max_length: int, prompt_format: str = ""
) -> dict[str, list[int]] | None:
    """Token ids and labels of one record; None when the prompt leaves no room for a response.
    `prompt_format` is alpaca or chat (empty: the record's own need, for one record alone).

    input_ids = prompt_ids + response_ids + [eos], cut to max_length;
    labels    = [-100] * len(prompt_ids) + response_ids + [eos], cut the same way.
    """
    prompt_format = prompt_format or ("chat" if has_context_turns(record) else "alpaca")
    if prompt_format == "chat":  # a chat template writes its own special tokens
        text = chat_prompt(record, tokenizer)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        check_prompt_format(record, "alpaca")
        prompt_ids = tokenizer(alpaca_prompt(record), add_special_tokens=True)["input_ids"]
    response_ids = tokenizer(record.get("output") or "", add_special_tokens=False)["input_ids"]
    response_ids = [*response_ids, tokenizer.eos_token_id]
    if len(prompt_ids) >= max_length:
        return None
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def read_subset(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a subset (JSON array or JSONL); a bad record is one error line."""
    from adg.io.reading import read_pool
    from adg.io.records import PoolError

    pool = read_pool(path)
    if pool.rejects:
        first = pool.rejects[0]
        more = f" (and {len(pool.rejects) - 1} more)" if len(pool.rejects) > 1 else ""
        raise PoolError(f"{first.file}:{first.line}: {first.reason}{more}")
    if not pool.records:
        raise PoolError(f"{path}: no records to train on")
    return pool.records


def encode_all(
    records: list[dict[str, Any]],
    tokenizer,
    max_length: int,
    source: str = "data",
    prompt_format: str = AUTO,
) -> tuple[list[dict], int]:
    """Encode every record in the subset's one prompt format (`auto`: resolved over the records,
    adg.method.prompts): (examples, records skipped because the prompt fills max_length)."""
    from adg.io.records import PoolError

    template = lambda: bool(getattr(tokenizer, "chat_template", None))  # noqa: E731
    fmt = resolve_prompt_format(prompt_format, records, template)
    examples = [encode(record, tokenizer, max_length, fmt) for record in records]
    kept = [ex for ex in examples if ex is not None]
    if not kept:
        raise PoolError(f"{source}: every prompt is longer than model_max_length={max_length}")
    return kept, len(examples) - len(kept)


def load_examples(
    path: str | os.PathLike, tokenizer, max_length: int, prompt_format: str = AUTO
) -> tuple[list[dict], int]:
    """read_subset + encode_all."""
    return encode_all(read_subset(path), tokenizer, max_length, str(path), prompt_format)


class SFTCollator:
    """Right-pads a batch: pad id in input_ids, 0 in attention_mask, -100 in labels."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(ex["input_ids"]) for ex in batch)
        ids, labels, mask = [], [], []
        for ex in batch:
            pad = width - len(ex["input_ids"])
            ids.append(ex["input_ids"] + [self.pad_token_id] * pad)
            labels.append(ex["labels"] + [IGNORE_INDEX] * pad)
            mask.append([1] * len(ex["input_ids"]) + [0] * pad)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
        }


# ----------------------------------------------------------------------------- setup


def configs_dir() -> Path:
    """The DeepSpeed configs shipped inside the package."""
    return Path(__file__).resolve().parents[1] / "deepspeed_configs"


def resolve_deepspeed(spec: str) -> str:
    """'' -> '' (no DeepSpeed); a name from DEEPSPEED_CONFIGS or a JSON path -> the file's path.

    'auto' is zero3 on a GPU when DeepSpeed is installed, and no DeepSpeed otherwise. A config
    on a machine without a CUDA GPU is an error.
    """
    import importlib.util

    if spec == "auto":
        spec = "zero3" if _cuda() and importlib.util.find_spec("deepspeed") else ""
    if not spec:
        return ""
    path = configs_dir() / DEEPSPEED_CONFIGS[spec] if spec in DEEPSPEED_CONFIGS else Path(spec)
    if not path.is_file():
        names = ", ".join(DEEPSPEED_CONFIGS)
        raise FileNotFoundError(f"--deepspeed {spec}: no such file (or use a name: {names})")
    if importlib.util.find_spec("deepspeed") is None:
        raise InputError("--deepspeed needs the DeepSpeed package: pip install 'adg[train]'")
    if not _cuda():
        raise InputError("--deepspeed needs a CUDA GPU; on CPU train without it")
    return str(path)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def training_arguments(cfg: TrainConfig, checkpoint_dir: Path):
    """transformers.TrainingArguments for the config (fp32 on CPU; bf16 + checkpointing on GPU)."""
    import torch
    from transformers import TrainingArguments

    on_gpu = _cuda()
    deepspeed = resolve_deepspeed(cfg.deepspeed)
    bf16 = cfg.bf16 if cfg.bf16 is not None else on_gpu and torch.cuda.is_bf16_supported()
    if bf16 and not on_gpu:
        raise InputError("bf16 training needs a GPU; on CPU the model trains in fp32")
    checkpointing = cfg.gradient_checkpointing
    if checkpointing is None:
        checkpointing = on_gpu
    kwargs: dict[str, Any] = {
        "output_dir": str(checkpoint_dir),
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps if cfg.max_steps > 0 else -1,
        "per_device_train_batch_size": cfg.per_device_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler,
        "weight_decay": cfg.weight_decay,
        "bf16": bool(bf16),
        "logging_steps": cfg.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 1,
        "seed": cfg.seed,
        "report_to": "none",
        "remove_unused_columns": False,
        "use_cpu": not on_gpu,
        "deepspeed": deepspeed or None,
        # The Trainer's own bar (steps, s/step) on stderr; ADG_PROGRESS=0 turns it off.
        "disable_tqdm": not progress.enabled(),
    }
    # transformers 5 folded warmup_ratio into a fractional warmup_steps and renamed checkpointing.
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    kwargs["warmup_ratio" if "warmup_ratio" in names else "warmup_steps"] = cfg.warmup_ratio
    checkpointing_name = "activation_checkpointing"
    if checkpointing_name not in names:
        checkpointing_name = "gradient_checkpointing"
    kwargs[checkpointing_name] = bool(checkpointing)
    return TrainingArguments(**kwargs)


def _load_for_training(spec: str, dtype):
    """(tokenizer, model) from a folder or .gguf file, ready for training."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adg.io.models import hf_source, resolve_model

    path, kwargs = hf_source(resolve_model(spec))
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    if tokenizer.eos_token_id is None:
        raise InputError(f"{spec}: the tokenizer has no EOS token to end responses with")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    return tokenizer, model


# ----------------------------------------------------------------------------- training


class _Examples:
    """A list of encoded examples as a map-style dataset."""

    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]


def loss_curve(log_history: list[dict]) -> list[dict[str, float]]:
    """The training-loss points of a Trainer's log history: step, epoch, loss, learning rate."""
    return [
        {
            "step": int(e["step"]),
            "epoch": float(e.get("epoch", 0.0)),
            "loss": float(e["loss"]),
            "learning_rate": float(e.get("learning_rate", 0.0)),
        }
        for e in log_history
        if "loss" in e and "step" in e
    ]


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Fine-tune and save a HF model folder (tokenizer included) to cfg.output_dir.

    Returns the metrics also written to `<output_dir>/training_metrics.json`: the loss curve,
    first / final / mean training loss, steps, examples, skipped records and wall time.
    """
    import torch
    from transformers import Trainer
    from transformers.trainer_utils import get_last_checkpoint

    started = time.time()
    records = read_subset(cfg.data)  # bad data fails before any model is loaded
    out = Path(cfg.output_dir)
    checkpoint_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else out / "checkpoints"
    # Arguments first: with ZeRO-3 they must exist before the model is built so it loads sharded.
    args = training_arguments(cfg, checkpoint_dir)
    dtype = torch.bfloat16 if args.bf16 and args.deepspeed else torch.float32
    tokenizer, model = _load_for_training(cfg.model, dtype)
    examples, skipped = encode_all(
        records, tokenizer, cfg.model_max_length, source=cfg.data, prompt_format=cfg.prompt_format
    )
    tokenizer.model_max_length = cfg.model_max_length  # saved with the model
    if getattr(args, "activation_checkpointing", None) or getattr(
        args, "gradient_checkpointing", 0
    ):
        model.config.use_cache = False
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_Examples(examples),
        data_collator=SFTCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
    )
    resume = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
    result = trainer.train(resume_from_checkpoint=resume)
    model.config.use_cache = True
    # Gathers the ZeRO-3 shards (see deepspeed_configs/); saves the tokenizer too.
    trainer.save_model(str(out))
    curve = loss_curve(trainer.state.log_history)
    metrics = {
        "train_loss": float(result.training_loss),
        "first_loss": curve[0]["loss"] if curve else math.nan,
        "final_loss": curve[-1]["loss"] if curve else math.nan,
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "examples": len(examples),
        "skipped": skipped,
        "runtime_s": round(time.time() - started, 1),
        "resumed_from": resume or "",
        "loss_curve": curve,
    }
    if trainer.is_world_process_zero():
        (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        if not cfg.keep_checkpoints:  # a finished run must not be 'resumed' by the next one
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return metrics


def run_checkpoint_dir(base: str, run_id: str, selector: str) -> str:
    """`base/run_id/selector` ('' when no base): a retried pod of the same run finds its own
    checkpoints, while other runs and the other selectors' trainings never touch them."""
    return str(Path(base) / run_id / selector) if base else ""


def launch(cfg: TrainConfig, num_gpus: int | None = None) -> dict[str, Any]:
    """Train in this process, or under torchrun (one process per GPU) with num_gpus > 1 or
    DeepSpeed: DeepSpeed reads its rank and rendezvous from the launcher's environment, even for
    one GPU. `num_gpus` defaults to `cfg.num_gpus`.

    Without a GPU the workers are CPU processes talking over gloo: the same code path, slower.
    """
    num_gpus = cfg.num_gpus if num_gpus is None else num_gpus
    deepspeed = resolve_deepspeed(cfg.deepspeed)  # fails here, not in a worker, on a CPU
    if num_gpus <= 1 and not deepspeed:
        return train(cfg)
    if not cfg.deepspeed:
        progress.log.info("train: %d GPUs without --deepspeed: plain data parallel (DDP)", num_gpus)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", prefix="adg-train-", delete=False, encoding="utf-8"
    ) as fh:
        json.dump(dataclasses.asdict(cfg), fh)
        config_file = fh.name
    try:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={num_gpus}",
            "-m",
            "adg.stages.train",
            config_file,
        ]
        subprocess.run(cmd, check=True)
    finally:
        os.unlink(config_file)
    return json.loads((Path(cfg.output_dir) / METRICS_FILE).read_text(encoding="utf-8"))


def curve_points(curve: list[dict], most: int = 100) -> list[dict]:
    """At most `most` evenly spaced points of a loss curve, the last one always kept."""
    if len(curve) <= most:
        return list(curve)
    stride = math.ceil(len(curve) / most)
    picked = curve[::stride]
    if picked[-1] is not curve[-1]:
        picked.append(curve[-1])
    return picked


if __name__ == "__main__":  # one torchrun worker: python -m adg.stages.train CONFIG.json
    with open(sys.argv[1], encoding="utf-8") as _fh:
        train(TrainConfig(**json.load(_fh)))
