"""Where each task runs in a cluster: GPU requests, node selectors, tolerations, resources, retries,
and the object-store Secret.

`gpu_task` is for the stages that need a GPU (generate, embed, score, analyse; later train and
evaluate): an `nvidia.com/gpu` limit, the node selector and tolerations given as pipeline
parameters, a memory-backed /dev/shm (vLLM's tensor-parallel workers and PyTorch data loaders share
memory through it), the model-cache PVC at `MODEL_CACHE_PATH` (the images' ADG_HOME: a model is
downloaded once per cluster, not once per pod; training checkpoints live there too), and retries
with exponential backoff, since GPU capacity is often spot nodes that get preempted (generation
and scoring resume from their checkpoints, training from its own). `cpu_task` is for
everything else: no GPU, no selector, no toleration. Both set CPU and memory requests and limits
from `RESOURCES`, and `use_object_store_secret` injects the S3 credentials from a Kubernetes Secret
as environment variables, so no credential is ever in the image or the compiled pipeline. Under
`kfp.local` the Kubernetes settings are ignored and the retries honoured.
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineChannel

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


# Per stage; the GPU stages' memory also holds the model on the host while it loads.
RESOURCES = {
    "preflight": Resources("100m", "1", "256Mi", "1Gi"),
    "ingest": Resources("500m", "2", "1Gi", "4Gi"),
    "shard": Resources("100m", "500m", "256Mi", "512Mi"),
    "generate": Resources("4", "8", "32Gi", "64Gi"),
    "embed": Resources("2", "8", "16Gi", "32Gi"),
    "score": Resources("2", "8", "16Gi", "32Gi"),
    "merge": Resources("500m", "2", "2Gi", "8Gi"),
    "cluster": Resources("2", "4", "4Gi", "16Gi"),
    "select": Resources("500m", "2", "2Gi", "8Gi"),
    "analyse": Resources("2", "8", "16Gi", "32Gi"),
    "export": Resources("250m", "1", "512Mi", "2Gi"),
    "ledger": Resources("100m", "500m", "256Mi", "512Mi"),
    # Re-clustering the index: a 200K-row float32 sample plus memory-mapped float16 embeddings.
    "curation": Resources("2", "4", "8Gi", "32Gi"),
    "compare": Resources("250m", "1", "1Gi", "4Gi"),
    "train": Resources("8", "16", "64Gi", "128Gi"),
    "evaluate": Resources("4", "8", "32Gi", "64Gi"),
}

# Spot GPU nodes get preempted: retry with backoff 1 min, 2 min, 4 min (capped at 30 min).
GPU_RETRIES = 3
GPU_BACKOFF = "60s"
GPU_BACKOFF_FACTOR = 2.0
GPU_BACKOFF_MAX = "1800s"
SHM_SIZE = "16Gi"
# The images set ADG_HOME to this folder; the PVC named by the pipeline's model_cache_pvc is
# mounted on it in every GPU pod.
MODEL_CACHE_PATH = "/var/cache/adg"

# Secret keys → environment variables. Credentials must be in the Secret; the endpoint (MinIO,
# SeaweedFS) and region are optional keys.
SECRET_REQUIRED_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}
SECRET_OPTIONAL_KEYS = {
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
    "AWS_REGION": "AWS_REGION",
    "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION",
}


def _resources(task: PipelineTask, stage: str) -> None:
    r = RESOURCES[stage]
    task.set_cpu_request(r.cpu_request).set_cpu_limit(r.cpu_limit)
    task.set_memory_request(r.memory_request).set_memory_limit(r.memory_limit)


def gpu_task(
    task: PipelineTask,
    stage: str,
    gpus,
    node_selector,
    tolerations,
    cache_pvc,
    accelerator=GPU_RESOURCE,
) -> PipelineTask:
    """Place a task on a GPU node: `gpus` (an int or a pipeline parameter) × `accelerator` (the
    extended resource name, e.g. nvidia.com/gpu or amd.com/gpu; a string or a parameter), node
    selector (a dict parameter) and tolerations (a list parameter), the model-cache PVC (its
    name, a parameter), resources, retries."""
    task.set_accelerator_type(accelerator).set_accelerator_limit(gpus)
    channels = [c for c in (gpus, accelerator) if isinstance(c, PipelineChannel)]
    if channels:
        # The compiler does not see a channel used only as a resource: without this, a task in a
        # dsl.If / ParallelFor refers to a parameter its enclosing group was never given.
        task.register_pipeline_channels(channels)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=SHM_SIZE
    )
    kubernetes.mount_pvc(task, pvc_name=cache_pvc, mount_path=MODEL_CACHE_PATH)
    _resources(task, stage)
    task.set_retry(
        num_retries=GPU_RETRIES,
        backoff_duration=GPU_BACKOFF,
        backoff_factor=GPU_BACKOFF_FACTOR,
        backoff_max_duration=GPU_BACKOFF_MAX,
    )
    return task


def cpu_task(task: PipelineTask, stage: str) -> PipelineTask:
    """A CPU-only task: requests and limits, nothing that pins it to a GPU node."""
    _resources(task, stage)
    return task


def use_object_store_secret(task: PipelineTask, secret_name) -> PipelineTask:
    """Object-store credentials (and optionally endpoint/region) from a Secret as env vars."""
    kubernetes.use_secret_as_env(task, secret_name, SECRET_REQUIRED_KEYS)
    kubernetes.use_secret_as_env(task, secret_name, SECRET_OPTIONAL_KEYS, optional=True)
    return task


def use_endpoint_key(task: PipelineTask, secret_name) -> PipelineTask:
    """The analyse step's endpoint key: optional key ADG_ENDPOINT_API_KEY of the same Secret."""
    keys = {"ADG_ENDPOINT_API_KEY": "ADG_ENDPOINT_API_KEY"}
    kubernetes.use_secret_as_env(task, secret_name, keys, optional=True)
    return task
