"""Where each task runs in a cluster: GPU requests, node selectors, tolerations, resources, retries,
the run's deadline and the object-store Secret.

`gpu_task` is for the stages that need a GPU (generate, embed, score, analyse, train, evaluate):
a limit of `gpus` on the accelerator resource, CPU and memory (each both request and limit),
the node selector and tolerations, all given as pipeline parameters, a memory-backed /dev/shm
(vLLM's tensor-parallel workers and PyTorch data loaders share memory through it), the
model-cache PVC at `MODEL_CACHE_PATH` (the images' ADG_HOME: a model is downloaded once per
cluster, not once per pod; training checkpoints live there too), and retries with exponential
backoff, since GPU capacity is often spot nodes that get preempted (generation and scoring resume
from their checkpoints, training from its own). `cpu_task` is for everything else: requests and
limits from `RESOURCES`, no GPU, no selector, no toleration. `use_object_store_secret` injects the
S3 credentials from a Kubernetes Secret as environment variables (every task gets them: the KFP
launcher in each pod reads an `s3://` pipeline root with them), so no credential is ever in the
image or the compiled pipeline. Under `kfp.local` the Kubernetes settings are ignored and the
retries honoured.

The KFP driver reads every value it puts into a pod spec from a run parameter (GPU count,
accelerator type, CPU, memory, image) as a string: `resolvePodSpecInputRuntimeParameter` in
backend/src/v2/driver/resolve.go returns `GetStringValue()`, which is empty for a number. So
each of these parameters is a string (docs/kubernetes.md lists the rules and their sources).
"""

from __future__ import annotations

from dataclasses import dataclass

from kfp import kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineChannel

from adg_kfp.pipelines.setter_caller import use_cheap_caller_names

# The setters below would otherwise read the source of the whole stack on every call (5-9 s per
# process of building the graphs); see setter_caller.
use_cheap_caller_names()

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


# The CPU stages, fixed at compile time. The GPU stages' CPU and memory are pipeline parameters
# (`<stage>_cpu`, `<stage>_memory`, defaults in adg.config.GPU_PODS), to fit the GPU nodes at hand.
RESOURCES = {
    "preflight": Resources("100m", "1", "256Mi", "1Gi"),
    "ingest": Resources("500m", "2", "1Gi", "4Gi"),
    "shard": Resources("100m", "500m", "256Mi", "512Mi"),
    "merge": Resources("500m", "2", "2Gi", "8Gi"),
    "cluster": Resources("2", "4", "4Gi", "16Gi"),
    "select": Resources("500m", "2", "2Gi", "8Gi"),
    "export": Resources("250m", "1", "512Mi", "2Gi"),
    "ledger": Resources("100m", "500m", "256Mi", "512Mi"),
    # Re-clustering the index: a 200K-row float32 sample plus memory-mapped float16 embeddings.
    "curation": Resources("2", "4", "8Gi", "32Gi"),
    "compare": Resources("250m", "1", "1Gi", "4Gi"),
    # The model-free random baseline's scoring: hashes of the pool's ids, seconds on CPU.
    "score_random": Resources("250m", "1", "1Gi", "4Gi"),
}

# The whole run's deadline (Argo's workflow activeDeadlineSeconds, from
# PipelineConfig.active_deadline_seconds): a pod that can never be scheduled (no GPU node, a
# Pending PVC) fails the run after this instead of holding it forever. Generous, since a large
# pool with training legitimately runs for days.
RUN_DEADLINE_SECONDS = 7 * 24 * 3600

# Spot GPU nodes get preempted: retry with backoff 1 min, 2 min, 4 min. KFP compiles
# backoff_max_duration into Argo's retryStrategy.backoff.maxDuration, which Argo counts from the
# *first* attempt's start: no retry starts after it, and a retry's pod gets the time left as its
# deadline (workflow/controller/operator.go, processNodeRetries). The SDK always writes one
# (3600s when not given), so it is the run's deadline: a shard preempted after hours of work is
# still retried and resumes from its checkpoint.
GPU_RETRIES = 3
GPU_BACKOFF = "60s"
GPU_BACKOFF_FACTOR = 2.0
GPU_BACKOFF_MAX = f"{RUN_DEADLINE_SECONDS}s"
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
    *,
    gpus,
    cpu,
    memory,
    node_selector,
    tolerations,
    cache_pvc,
    accelerator=GPU_RESOURCE,
) -> PipelineTask:
    """Place a task on a GPU node: `gpus` × `accelerator` (the extended resource name, e.g.
    nvidia.com/gpu or amd.com/gpu), `cpu` and `memory` (each request and limit), all strings
    or string pipeline parameters; node selector (a dict parameter) and tolerations (a list
    parameter), the model-cache PVC (its name, a parameter), retries."""
    task.set_accelerator_type(accelerator).set_accelerator_limit(gpus)
    task.set_cpu_request(cpu).set_cpu_limit(cpu)
    task.set_memory_request(memory).set_memory_limit(memory)
    channels = [c for c in (gpus, accelerator, cpu, memory) if isinstance(c, PipelineChannel)]
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
