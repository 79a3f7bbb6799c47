"""The GPU stages' pods in a cluster: what each asks Kubernetes for, and whether a typical node of a
GPU type can take it.

A pod is scheduled only on a node whose *allocatable* CPU and memory (its capacity less what the
kubelet and the system reserve) hold the pod's requests, and that has as many GPUs as it asks for.
The requests are the pipeline's parameters (`<stage>_cpu`, `<stage>_memory` and the stage's GPU
count, defaults in `adg.config.GPU_PODS`). The nodes are GKE's machine types for each GPU type
(other clouds sell similar shapes: EC2 g6.2xlarge is 8 vCPU / 32 GiB with one L4), and the
reservations are GKE's published ones:

    memory reserved = 25% of the first 4 GiB + 20% of the next 4 + 10% of the next 8
                      + 6% of the next 112 + 2% of the rest, + 100 MiB eviction threshold
    CPU reserved    = 6% of the first core + 1% of the next + 0.5% of the next 2
                      + 0.25% of the rest

DaemonSets (the GPU device plugin, logging agents) take a little more on a real node.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from adg.config import GPU_COUNT_PARAMS, GPU_PODS
from adg.errors import InputError
from adg.parameters import check, parse_quantity, refusal

__all__ = ["gpu_pods", "misfits", "node_for", "parse_quantity", "pod_parameters"]

GIB = 1024**3
# GKE machine types per GPU type and GPUs per node: (name, vCPUs, memory in GiB; GCE's "GB").
GPU_NODES = {
    "l4": {
        1: ("g2-standard-8", 8, 32),
        2: ("g2-standard-24", 24, 96),
        4: ("g2-standard-48", 48, 192),
        8: ("g2-standard-96", 96, 384),
    },
    "a100": {
        1: ("a2-highgpu-1g", 12, 85),
        2: ("a2-highgpu-2g", 24, 170),
        4: ("a2-highgpu-4g", 48, 340),
        8: ("a2-highgpu-8g", 96, 680),
    },
    "h100": {
        1: ("a3-highgpu-1g", 26, 234),
        2: ("a3-highgpu-2g", 52, 468),
        4: ("a3-highgpu-4g", 104, 936),
        8: ("a3-highgpu-8g", 208, 1872),
    },
    # GKE offers H200 only as a whole 8-GPU machine.
    "h200": {
        8: ("a3-ultragpu-8g", 224, 2952),
    },
}
# (upper bound of the band in GiB or cores, share reserved within the band)
MEMORY_RESERVED = ((4, 0.25), (8, 0.20), (16, 0.10), (128, 0.06), (float("inf"), 0.02))
EVICTION_GIB = 100 / 1024
CPU_RESERVED = ((1, 0.06), (2, 0.01), (4, 0.005), (float("inf"), 0.0025))


@dataclass(frozen=True)
class Pod:
    stage: str
    gpus: int
    cpu: Decimal  # cores
    memory: Decimal  # bytes
    params: dict[str, str]  # the pipeline parameters these come from, with their values


@dataclass(frozen=True)
class Node:
    name: str
    gpus: int
    cpu: float  # vCPUs
    memory_gib: float

    @property
    def allocatable_cpu(self) -> float:
        return self.cpu - _banded(self.cpu, CPU_RESERVED)

    @property
    def allocatable_gib(self) -> float:
        return self.memory_gib - _banded(self.memory_gib, MEMORY_RESERVED) - EVICTION_GIB


def _banded(total: float, bands: tuple[tuple[float, float], ...]) -> float:
    reserved, lower = 0.0, 0.0
    for upper, share in bands:
        reserved += max(0.0, min(total, upper) - lower) * share
        lower = upper
    return reserved


def pod_parameters() -> dict[str, str]:
    """{pipeline parameter: default} of every GPU stage's GPU count, CPU and memory."""
    params = {}
    for stage, pod in GPU_PODS.items():
        params[GPU_COUNT_PARAMS[stage]] = pod.gpus
        params[f"{stage}_cpu"] = pod.cpu
        params[f"{stage}_memory"] = pod.memory
    return params


def gpu_pods(overrides: dict[str, str] | None = None) -> list[Pod]:
    """The GPU stages' pods with the pipeline's defaults, or the run's values in `overrides`
    ({parameter: value}); an unknown parameter or a value that is no quantity is an InputError."""
    values = pod_parameters()
    for name, value in (overrides or {}).items():
        if name not in values:
            raise InputError(f"{name}: not a GPU pod parameter (one of {', '.join(values)})")
        values[name] = value
    problems = check(values)  # the one check of the run's parameters (adg.parameters)
    if problems:
        raise InputError(refusal(problems))
    pods = []
    for stage in GPU_PODS:
        names = (GPU_COUNT_PARAMS[stage], f"{stage}_cpu", f"{stage}_memory")
        gpus, cpu, memory = (parse_quantity(values[n]) for n in names)
        pods.append(Pod(stage, int(gpus), cpu, memory, {n: values[n] for n in names}))
    return pods


def node_for(gpu: str, gpus: int) -> Node | None:
    """The smallest typical node of GPU type `gpu` with at least `gpus` GPUs (None: none has)."""
    for count, (name, cpu, memory) in sorted(GPU_NODES[gpu].items()):
        if count >= gpus:
            return Node(name, count, cpu, memory)
    return None


def misfits(pod: Pod, node: Node | None) -> list[str]:
    """Why `node` cannot take `pod` (empty: it can)."""
    if node is None:
        return [f"{pod.gpus} GPUs: no single node of this type has that many"]
    reasons = []
    if float(pod.cpu) > node.allocatable_cpu:
        reasons.append(f"CPU {pod.cpu} > {node.allocatable_cpu:.2f} allocatable")
    if float(pod.memory) / GIB > node.allocatable_gib:
        reasons.append(f"memory {float(pod.memory) / GIB:.1f} GiB > {node.allocatable_gib:.1f} GiB")
    return reasons
