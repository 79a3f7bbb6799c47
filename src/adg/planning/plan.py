"""Cost plan: tokens, FLOPs, wall time, GPU-hours and storage of a run, before it starts.

A sample of the pool is tokenized with the model's tokenizer and scaled to the pool size. With P
the parameters a token passes through (all decoder blocks + LM head for generation; the blocks up
to the deepest hidden layer read, no head, for embed and score), per stage:

    tokens   generate prefill = N · prompt        (the K samples share one prompt: vLLM n=K)
             generate decode  = N · K · max_new_tokens   (an upper bound: at temperature 1.4
                                                           most samples run to the limit)
             embed            = N · instruction
             score            = N · K · (instruction + 1 + answer),  answer = max_new_tokens
    FLOPs    = 2 · P · tokens
    seconds  = FLOPs / (peak · efficiency · GPUs)
    GPU-h    = seconds · GPUs / 3600

`peak` is the accelerator's dense bf16 matmul peak (or, for `cpu`, an fp32 matmul measured here);
`efficiency` is the fraction of it a phase reaches. The CPU factors were measured by bench/ on the
2-core reference machine (docs/benchmarks.md); a GPU's factors are assumptions until a run of
bench.gpu on that card measures them (`adg.planning.gpu_factors`), and `plan` says which is
which.

For a GPU type it also lists what each GPU stage's pod asks Kubernetes for (the pipeline's
defaults, or the run's `<stage>_cpu`, `<stage>_memory` and GPU counts) and whether a typical node
of that type can take it (`adg.planning.pods`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from adg.errors import InputError
from adg.io.reading import read_sources
from adg.io.records import ReadResult
from adg.method.prompts import alpaca_prompt
from adg.planning import gpu_factors

# Dense bf16 matmul peak, FLOP/s (vendor figures for the SXM/PCIe parts named).
GPU_PEAK = {"h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12}
# Fraction of peak per phase: (prefill-like forward passes, decode).
EFFICIENCY = {
    # Measured on the 2-core reference machine by bench/pipeline.py (its MFU lines, 32 records,
    # 64-token answers: score 72%, generate 18%); see docs/benchmarks.md.
    "cpu": {
        "forward": 0.65,
        "decode": 0.18,
        "source": "measured by bench/pipeline.py (2-core CPU)",
    },
    # Not measured: typical published vLLM/HF figures for small batches of short sequences. A card
    # that bench.gpu has measured takes its own factors from adg.planning.gpu_factors instead.
    "gpu": {"forward": 0.35, "decode": 0.05, "source": "assumed, not measured"},
}
CPU_PEAK_FALLBACK = 100e9


@dataclass
class StagePlan:
    stage: str
    tokens: float
    flops: float
    seconds: float


def count_parameters(model_path: str) -> tuple[int, int, int, int]:
    """(per-block parameters, blocks, LM-head parameters, hidden size) from the config alone."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    blocks = model.get_decoder().layers
    per_block = sum(p.numel() for p in blocks[0].parameters())
    head = model.get_output_embeddings().weight.numel()
    return per_block, len(blocks), head, int(config.get_text_config().hidden_size)


def measure_cpu_peak(n: int = 1024, reps: int = 8) -> float:
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def _prompt_text(record: dict[str, Any]) -> str:
    """The prompt's text for counting: a conversation's system prompt and earlier turns count
    too (whatever template renders them adds a few tokens per turn)."""
    turns = [record.get("system") or ""] + [t["content"] for t in record.get("history") or []]
    return "\n".join([*(t for t in turns if t), alpaca_prompt(record)])


def sample_lengths(pool: str, tokenizer, sample: int, seed: int = 0) -> dict[str, float]:
    """Mean token counts (prompt, instruction, record bytes) over a seeded sample, and N."""
    rng = random.Random(seed)
    reservoir: list[dict[str, Any]] = []
    n = 0

    def keep(rec: dict[str, Any], _origin: Any) -> None:
        # Reservoir sampling: one pass over the pool (any shape, adg.io.shapes), bounded memory.
        nonlocal n
        n += 1
        if len(reservoir) < sample:
            reservoir.append(rec)
        else:
            j = rng.randrange(n)
            if j < sample:
                reservoir[j] = rec

    read_sources([pool], result=ReadResult(on_accept=keep, on_reject=lambda _r: None))
    if not n:
        raise InputError(f"{pool}: no records")
    prompts = tokenizer([_prompt_text(r) for r in reservoir], add_special_tokens=True)
    instr = tokenizer([r["instruction"] for r in reservoir], add_special_tokens=True)
    answers = tokenizer([r.get("output") or "x" for r in reservoir], add_special_tokens=False)
    answer_chars = sum(len(r.get("output") or "") for r in reservoir)
    answer_tokens = sum(len(x) for x in answers["input_ids"])
    m = len(reservoir)
    return {
        "records": n,
        "prompt": sum(len(x) for x in prompts["input_ids"]) / m,
        "instruction": sum(len(x) for x in instr["input_ids"]) / m,
        "bytes_per_record": sum(len(json.dumps(r, ensure_ascii=False)) + 1 for r in reservoir) / m,
        "chars_per_token": answer_chars / max(1, answer_tokens),
    }


def make_plan(
    pool: str,
    model_path: str,
    gpu: str = "h100",
    gpus: int = 1,
    num_samples: int = 5,
    max_new_tokens: int = 256,
    sample: int = 512,
    budget: int = 0,
    cpu_peak: float | None = None,
    pod_params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Plan a run; returns {"stages": [StagePlan...], "storage": {...}, "assumptions": {...},
    "pods": [(Pod, Node or None, [reasons it does not fit])...]}; `pod_params` are the run's
    GPU pod parameters ({"train_memory": "48Gi"}), the pipeline's defaults for the rest."""
    from transformers import AutoTokenizer

    from adg.planning.pods import gpu_pods, misfits, node_for

    if gpu != "cpu" and gpu not in GPU_PEAK:
        raise InputError(f"unknown --gpu {gpu!r}; choose one of {['cpu', *sorted(GPU_PEAK)]}")
    pods = []
    for pod in gpu_pods(pod_params):  # checked first: a bad value fails before tokenizing
        node = None if gpu == "cpu" else node_for(gpu, pod.gpus)
        pods.append((pod, node, [] if gpu == "cpu" else misfits(pod, node)))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    lengths = sample_lengths(pool, tokenizer, sample)
    per_block, n_blocks, head, hidden = count_parameters(model_path)
    n, k = lengths["records"], num_samples
    p_full = per_block * n_blocks + head
    p_read = per_block * (n_blocks - 1)  # hidden_states[-2] is block L-1's output: no head
    if gpu == "cpu":
        peak, eff, units = cpu_peak or measure_cpu_peak(), EFFICIENCY["cpu"], 1
    else:
        peak, eff, units = GPU_PEAK[gpu], gpu_factors.lookup(gpu) or EFFICIENCY["gpu"], gpus

    def stage(name: str, tokens: float, params: int, phase: str) -> StagePlan:
        flops = 2.0 * params * tokens
        return StagePlan(name, tokens, flops, flops / (peak * eff[phase] * units))

    answer = max_new_tokens
    stages = [
        stage("generate (prefill)", n * lengths["prompt"], p_full, "forward"),
        stage("generate (decode)", n * k * answer, p_full, "decode"),
        stage("embed", n * lengths["instruction"], p_read, "forward"),
        stage("score", n * k * (lengths["instruction"] + 1 + answer), p_read, "forward"),
    ]
    answer_bytes = answer * lengths["chars_per_token"] * k + 8 * k
    budget = budget or round(0.2 * n)
    scored_bytes = lengths["bytes_per_record"] + answer_bytes + 80
    storage = {
        "pool.jsonl": n * lengths["bytes_per_record"],
        "generated.jsonl": n * (lengths["bytes_per_record"] + answer_bytes),
        "embeddings.npy": n * hidden * 4 + 128,
        "clusters.npy": n * 4 + 128,
        "scored.jsonl": n * scored_bytes,
        "top/middle/bottom.json": 3 * budget * scored_bytes * 1.1,  # indented JSON
    }
    return {
        "records": n,
        "lengths": lengths,
        "parameters": {"full": p_full, "read": p_read},
        "stages": stages,
        "storage": storage,
        "pods": pods,
        "assumptions": {
            "device": gpu,
            "units": units,
            "peak_flops": peak,
            "efficiency_forward": eff["forward"],
            "efficiency_decode": eff["decode"],
            "efficiency_source": eff["source"],
        },
    }


def format_plan(plan: dict[str, Any]) -> list[str]:
    a = plan["assumptions"]
    unit = "GPU" if a["device"] != "cpu" else "CPU"
    lines = [
        f"{plan['records']} records; mean prompt {plan['lengths']['prompt']:.0f} tokens, "
        f"instruction {plan['lengths']['instruction']:.0f} tokens",
        f"device {a['device']} x{a['units']}, peak {a['peak_flops'] / 1e12:.3g} TFLOP/s per "
        f"{unit}, efficiency forward {a['efficiency_forward']:.0%} / decode "
        f"{a['efficiency_decode']:.0%} ({a['efficiency_source']})",
        "",
        f"| stage | tokens | FLOPs | wall time | {unit}-hours |",
        "|---|---|---|---|---|",
    ]
    total_s = 0.0
    for s in plan["stages"]:
        total_s += s.seconds
        lines.append(
            f"| {s.stage} | {s.tokens:.3g} | {s.flops:.3g} | {_duration(s.seconds)} | "
            f"{s.seconds * a['units'] / 3600:.3g} |"
        )
    lines.append(f"| total | | | {_duration(total_s)} | {total_s * a['units'] / 3600:.3g} |")
    lines += ["", "| artifact | size |", "|---|---|"]
    for name, size in plan["storage"].items():
        lines.append(f"| {name} | {_size(size)} |")
    lines.append(f"| total | {_size(sum(plan['storage'].values()))} |")
    if a["device"] != "cpu":
        lines += ["", *_format_pods(plan["pods"], a["device"])]
    return lines


def _format_pods(pods: list, gpu: str) -> list[str]:
    lines = [
        f"GPU pods in a cluster (CPU and memory: request = limit) on GKE's {gpu} nodes; "
        "allocatable = capacity less GKE's reservations (adg.planning.pods):",
        "",
        "| stage | parameters | GPUs | CPU | memory | node | allocatable | fits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pod, node, reasons in pods:
        names = ", ".join(f"{k}={v}" for k, v in pod.params.items())
        where = (
            (node.name, f"{node.allocatable_cpu:.2f} CPU, {node.allocatable_gib:.1f} GiB")
            if node
            else ("-", "-")
        )
        fits = "yes" if not reasons else "no: " + "; ".join(reasons)
        lines.append(
            f"| {pod.stage} | {names} | {pod.gpus} | {pod.cpu} | "
            f"{_size(float(pod.memory))} | {where[0]} | {where[1]} | {fits} |"
        )
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
