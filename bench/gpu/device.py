"""The `env` part: what the machine is (Python, torch, CUDA, packages, the card and its memory) and
its ceilings measured in the same run (a large matmul's rate, a device copy's bandwidth), the
denominators of every MFU and decode bound; the card's `adg plan --gpu` name.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from typing import Any

from bench.gpu.run import Run
from bench.gpu.timing import free_memory, timed


def vendor_key(name: str) -> str | None:
    """`adg plan --gpu` name of a device name (its GPU_PEAK key), or None."""
    lowered = name.lower()
    for key in ("h200", "h100", "a100", "l4"):
        if re.search(rf"\b{key}\b", lowered):
            return key
    return None


def env(run: Run) -> None:
    import numpy
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "packages": {},
    }
    for name in (
        "accelerate",
        "tokenizers",
        "pydantic",
        "lm-eval",
        "datasets",
        "pyarrow",
        "fsspec",
        "huggingface-hub",
        "deepspeed",
    ):
        try:
            info["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info["packages"][name] = None
    if run.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info()
        info.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            memory_total_bytes=total,
            memory_free_bytes=free,
            plan_gpu=vendor_key(props.name),
        )
    else:
        info.update(name=f"cpu ({platform.machine()})", plan_gpu=None)
    run.results["device"] = info
    run.results["ceilings"] = ceilings(run)
    free_memory()


def ceilings(run: Run) -> dict[str, float]:
    """A large matmul's rate (bf16 on GPU, fp32 on CPU) and a device copy's bandwidth (bytes
    read + written), measured here: the MFU and decode-bound denominators."""
    import torch

    on_gpu = run.device == "cuda"
    n, reps = (8192, 20) if on_gpu else (512, 4)
    dtype = torch.bfloat16 if on_gpu else torch.float32
    a = torch.randn(n, n, device=run.device, dtype=dtype)
    b = torch.randn(n, n, device=run.device, dtype=dtype)
    for _ in range(3):
        a @ b
    _, t = timed(lambda: [a @ b for _ in range(reps)])
    matmul = 2 * n**3 * reps / t
    size = (2 << 30) if on_gpu else (64 << 20)
    src = torch.empty(size, dtype=torch.uint8, device=run.device)
    src.fill_(1)
    dst = torch.empty_like(src)
    dst.copy_(src)
    _, t = timed(lambda: [dst.copy_(src) for _ in range(reps)])
    copy = 2 * size * reps / t
    peak = None
    key = vendor_key(torch.cuda.get_device_name()) if on_gpu else None
    if key:
        from adg.planning.plan import GPU_PEAK

        peak = GPU_PEAK.get(key)
    return {"matmul_flops": matmul, "copy_bytes_per_s": copy, "vendor_peak_flops": peak}
