"""Two optimizer steps of DeepSpeed's own engine, on CPU, with the package's ZeRO-3 config.

Run inside the train image by images/image-checks.sh (no GPU, no network). DeepSpeed is installed
there with none of its ops built (DS_BUILD_OPS=0) and no compiler: this shows its engine
initializes from `deepspeed_zero3.json` as shipped (the optimizer taken from torch, `torch_adam`),
partitions a small model (ZeRO stage 3) and steps twice, on its CPU accelerator with the gloo
backend, one process. The "auto" values are filled as transformers' Trainer would fill them for
a batch of 2, fp32 (bf16 needs a GPU). The embedded model's config, with 2 layers and random
weights, keeps it to seconds.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import warnings

os.environ.setdefault("DS_ACCELERATOR", "cpu")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
os.environ.update(
    MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1"
)

import deepspeed
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from adg.io.models import find_embedded_model
from adg.stages.train import configs_dir

logging.basicConfig(level=logging.INFO, format="%(message)s")
# torch's notice, once per collective, that DeepSpeed calls a deprecated reduce_scatter name.
warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
log = logging.getLogger("deepspeed_steps")


def filled(config: dict) -> dict:
    """The shipped config with its "auto" values set as the Trainer sets them (batch 2, fp32)."""
    config = json.loads(json.dumps(config))
    config["bf16"]["enabled"] = config["fp16"]["enabled"] = False
    config["optimizer"]["params"].update(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0)
    zero = config["zero_optimization"]
    zero.update(
        reduce_bucket_size=1_000_000,
        stage3_prefetch_bucket_size=1_000_000,
        stage3_param_persistence_threshold=1_000,
    )
    config.update(
        train_batch_size=2,
        train_micro_batch_size_per_gpu=2,
        gradient_accumulation_steps=1,
        gradient_clipping=1.0,
    )
    return config


def main() -> None:
    # DeepSpeed's CPU accelerator, used only by this check, builds a shared-memory allreduce with
    # c++ when its communication backend starts; the image has no compiler (on a GPU the CUDA
    # accelerator has no such op). Marked unavailable, gloo carries the one-process collectives.
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    shipped = json.loads((configs_dir() / "deepspeed_zero3.json").read_text())
    assert shipped["zero_optimization"]["stage"] == 3
    assert shipped["optimizer"]["params"].get("torch_adam") is True, "FusedAdam needs nvcc"
    config = filled(shipped)
    model_config = AutoConfig.from_pretrained(find_embedded_model())
    model_config.num_hidden_layers = 2
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=model.parameters(), config=config
    )
    log.info(
        "accelerator %s, ZeRO stage %d, optimizer %s",
        deepspeed.get_accelerator().device_name(),
        engine.zero_optimization_stage(),
        type(engine.basic_optimizer).__module__ + "." + type(engine.basic_optimizer).__name__,
    )
    assert engine.zero_optimization_stage() == 3
    assert isinstance(engine.basic_optimizer, torch.optim.AdamW)
    ids = torch.randint(0, model_config.vocab_size, (2, 16))
    losses = []
    for _ in range(2):
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        engine.step()
        losses.append(float(loss.detach()))
    assert engine.global_steps == 2, engine.global_steps
    log.info("2 steps, losses %s", [round(x, 4) for x in losses])
    assert losses[1] < losses[0], losses  # the same batch twice: the step lowered its loss


if __name__ == "__main__":
    main()
