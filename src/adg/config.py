"""Every stage's settings: one dataclass per stage, the one source of each default and its help.

The library takes these dataclasses (or their defaults), the CLI builds its flags from them
(`adg.cli.flags.add_flags`), and the pipeline's parameters take their defaults from them at compile
time (`pipelines/adg_pipeline.py` reads e.g. `GenerateConfig.temperature`). A pipeline parameter is
`<stage>_<field>` unless the field's metadata names it (`param`; empty: no parameter derived from
the field, for the reason given at the field); a CLI flag is `--<field>` with dashes unless the
metadata names it (`flag`). `tests/test_config.py` checks that the CLI, the library and the
compiled YAML agree; `tests/test_settings.py` that every field reaches each place it must
(docs/architecture.md, "Where a new setting goes").

This module imports only the standard library: the KFP side (components/, pipelines/) imports it
when compiling, where torch and transformers need not be installed.
"""

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args


def setting(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with its default and help text (and optional `choices`, `flag`,
    `param`, `at_least` metadata: `at_least` is the smallest value the parameter check,
    adg.parameters, lets through)."""
    return field(default=default, metadata={"help": help, **meta})


def adg_home() -> Path:
    """Where adg keeps its files between runs (the converted embedded model, the s3:// model
    cache, task-type vectors): `$ADG_HOME`, default `~/.cache/adg`."""
    return Path(os.environ.get("ADG_HOME") or Path.home() / ".cache" / "adg")


# --- ingest --------------------------------------------------------------------------------

# The pool shapes ingest reads (adg.io.shapes holds their table); "auto" detects each file's.
POOL_FORMATS = ("auto", "alpaca", "dolly", "prompt-completion", "sharegpt", "messages")


@dataclass
class IngestConfig:
    """How a pool's records map onto ADG's (instruction, input, output)."""

    format: str = setting(
        "auto", "pool shape (auto: detected per file from its fields)", choices=POOL_FORMATS
    )
    columns: str = setting(
        "",
        "the pool's names for ADG's fields, e.g. instruction=question,input=context,output=answer",
    )


# --- generate ------------------------------------------------------------------------------

# How a record becomes a prompt (adg.method.prompts): auto resolves to alpaca or chat once per pool.
PROMPT_FORMATS = ("auto", "alpaca", "chat")


@dataclass
class SamplingConfig:
    """How the K answers per instruction are sampled (the paper's settings)."""

    num_samples: int = setting(5, "K, answers sampled per instruction", at_least=2)
    temperature: float = setting(1.4, "sampling temperature", at_least=0)
    top_p: float = setting(0.9, "nucleus sampling threshold")
    max_new_tokens: int = setting(256, "longest answer, in tokens", at_least=1)
    seed: int = setting(0, "sampling seed")
    batch_size: int = setting(8, "instructions per generation batch", at_least=1)
    prompt_format: str = setting(
        "auto",
        "prompt template: auto (the model's chat template for a pool with any system prompt or "
        "earlier turn, else the Alpaca prompt; resolved once per pool), alpaca or chat",
        choices=PROMPT_FORMATS,
    )


@dataclass
class GenerateConfig(SamplingConfig):
    """The generate stage: sampling plus where it runs."""

    backend: str = setting(
        "auto",
        "auto (vLLM when a GPU and vLLM are present), hf or vllm",
        choices=("auto", "hf", "vllm"),
    )
    tensor_parallel_size: int = setting(
        1, "vLLM: GPUs one model copy spans (GPUs per generate pod)"
    )
    gpu_memory_utilization: float = setting(
        0.9, "vLLM: share of each GPU's memory for weights and KV cache (0-1)"
    )


@dataclass
class CheckpointConfig:
    """Object-store checkpoints of generate and score, so a preempted pod's retry resumes."""

    checkpoint_uri: str = setting(
        "", "s3:// object (CLI) or prefix (pipeline) mirroring the output; empty = none", param=""
    )
    checkpoint_every: int = setting(
        64, "records between two checkpoint uploads", param="checkpoint_every", at_least=1
    )


# --- embed, cluster, score, select ---------------------------------------------------------


@dataclass
class ClusterConfig:
    """k-means bins over the instruction vectors."""

    count: int = setting(1000, "number of k-means bins (clamped to the pool size)", at_least=1)
    seed: int = setting(42, "k-means seed")
    pca_dims: int = setting(
        0, "k-means on this many principal components (0 = off, the published method)", at_least=0
    )


# `adg score --method`: ADG's divergence score or a baseline selector's (adg.stages.score).
SCORE_METHODS = ("adg", "ifd", "superfiltering", "random")
# Methods that score without a model (on CPU, in seconds): a pipeline branch of one asks no GPU.
MODEL_FREE_METHODS = ("random",)


@dataclass
class ScoreConfig:
    """The score: 0.6·dispersion + 0.4·anisotropy by default."""

    dispersion_weight: float = setting(0.6, "weight of dispersion D in the score")
    anisotropy_weight: float = setting(0.4, "weight of anisotropy I in the score")
    all_metrics: bool = setting(False, "also write the diagnostic metrics per record")


@dataclass
class SelectConfig:
    """Bin-wise top / middle / bottom within the budget."""

    strategy: str = setting(
        "exact",
        "exact (fills the budget) or reference (the published procedure)",
        choices=("exact", "reference"),
    )
    fail_on_collapse: bool = setting(
        False, "fail when the scores cannot rank the pool (for recurring runs)"
    )


# --- train, evaluate, analyse --------------------------------------------------------------


@dataclass
class TrainConfig:
    """One fine-tuning run; the defaults are the published recipe."""

    # The pipeline trains on its select task's top subset, writes the train task's Model artifact
    # and trains the run's one `model`: no parameters of their own.
    data: str = setting(MISSING, "top.json or any subset (JSON array or JSONL)", param="")
    output_dir: str = setting(MISSING, "HF model folder to write", param="")
    model: str = setting("", "base model (default: the embedded SmolLM2-135M-Instruct)", param="")
    epochs: float = setting(5.0, "training epochs")
    max_steps: int = setting(0, "stop after this many optimizer steps (0 = all epochs)", at_least=0)
    per_device_batch_size: int = setting(
        2, "per-GPU batch size", flag="batch-size", param="train_batch_size"
    )
    gradient_accumulation_steps: int = setting(8, "micro-batches per optimizer step")
    learning_rate: float = setting(1e-5, "peak learning rate")
    lr_scheduler: str = setting("cosine", "learning-rate schedule (a transformers name)")
    warmup_ratio: float = setting(0.03, "fraction of the steps spent warming up")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    model_max_length: int = setting(2048, "longest training sequence, in tokens")
    seed: int = setting(42, "training seed")
    deepspeed: str = setting(
        "auto",
        "auto (zero3 on GPU when DeepSpeed is installed, none on CPU), zero3, zero3_offload, "
        "a DeepSpeed JSON path, or empty for none",
    )
    # Decided by where the train pod runs (None: on GPU), as in the CLI's default: no parameter.
    bf16: bool | None = setting(None, "None: on when training on a GPU that supports it", param="")
    gradient_checkpointing: bool | None = setting(None, "None: on GPU only", param="")
    # Not (yet) pipeline parameters: the pipeline trains with these defaults.
    logging_steps: int = setting(1, "optimizer steps between two loss log lines", param="")
    save_steps: int = setting(500, "optimizer steps between two checkpoints", param="")
    # The pipeline's train_checkpoint_dir defaults to the model-cache PVC instead, so a restarted
    # pod finds the checkpoints (they would be lost with the pod's own disk).
    checkpoint_dir: str = setting(
        "", "folder for checkpoints (default: OUTPUT_DIR/checkpoints)", param=""
    )
    # The pipeline keeps none: its checkpoints are on the shared model-cache PVC.
    keep_checkpoints: bool = setting(False, "keep the checkpoints after training", param="")
    num_gpus: int = setting(1, "GPUs: > 1 runs one torchrun worker per GPU")
    # The pipeline hands train the format its pool was resolved to (curation_route), so no
    # parameter of its own: training sees the prompts generation and scoring saw.
    prompt_format: str = setting(
        "auto",
        "prompt template: auto (chat template when any record has a system prompt or earlier "
        "turn, else Alpaca), alpaca or chat",
        choices=PROMPT_FORMATS,
        param="",
    )


@dataclass
class EvaluateConfig:
    """lm-evaluation-harness settings as the user gives them (strings are parsed by
    `adg.stages.evaluate`)."""

    tasks: str = setting("", "comma-separated lm-eval tasks (empty = the published six)")
    num_fewshot: str = setting("", "empty = the published shots; N for all; or task=N,task=N")
    limit: float = setting(0.0, "examples per task (0 = all; below 1 = a fraction)", at_least=0)
    backend: str = setting(
        "auto",
        "auto (vLLM when a GPU and vLLM are present), hf or vllm",
        choices=("auto", "hf", "vllm"),
    )
    batch_size: str = setting("auto", "an integer, or auto (lm-eval's detection on GPU, 8 on CPU)")


@dataclass
class AnalyseConfig:
    """Task-type labels of the pool and the selected subset."""

    endpoint: str = setting("", "OpenAI-compatible URL, e.g. http://vllm:8000/v1 (empty = model)")
    endpoint_model: str = setting("", "model name sent to the endpoint")
    batch_size: int = setting(
        8, "instructions per forward pass of the backbone classifier", at_least=1
    )
    # Not (yet) pipeline parameters: the pipeline's analyse task uses these defaults.
    timeout: float = setting(60.0, "seconds per endpoint request", param="")
    retries: int = setting(2, "endpoint retries per request", param="")
    classifier: str = setting(
        "vectors",
        "local classifier: backbone vectors + seed-set regression, or label likelihood",
        choices=("vectors", "likelihood"),
        param="",
    )


# --- the GPU stages' pods in a cluster -----------------------------------------------------


@dataclass(frozen=True)
class PodResources:
    """What one GPU stage's pod asks Kubernetes for, in Kubernetes quantity notation: GPUs, CPU
    cores and memory. CPU and memory are each both the request and the limit: the scheduler then
    reserves everything the pod may use, so a GPU pod is never OOM-killed or evicted after hours
    of work for memory its node could not give. Strings, because the KFP driver reads a pod's
    resources from run parameters as strings only (a number parameter resolves to nothing:
    docs/kubernetes.md)."""

    gpus: str
    cpu: str
    memory: str


# Each GPU stage's pipeline parameter of its GPU count; its CPU and memory are `<stage>_cpu` and
# `<stage>_memory`. generate's count is vLLM's tensor parallelism (one model copy spans them),
# train's its torchrun workers.
GPU_COUNT_PARAMS = {
    "generate": "generate_tensor_parallel_size",
    "embed": "embed_gpu_count",
    "score": "score_gpu_count",
    "analyse": "analyse_gpu_count",
    "train": "train_num_gpus",
    "evaluate": "evaluate_gpu_count",
}
# The defaults fit one GPU of a typical L4 node (8 vCPU, 32 GB: GKE g2-standard-8, EC2
# g6.2xlarge) and hold a model of up to ~8B parameters on the host while it loads (bf16: 2 bytes
# a parameter); train fits an A100 node (a2-highgpu-1g: 12 vCPU, 85 GB). `adg plan` prints them
# against the nodes of a GPU type; raise them for larger models or several GPUs per pod.
GPU_PODS = {
    "generate": PodResources(str(GenerateConfig.tensor_parallel_size), "4", "24Gi"),
    "embed": PodResources("1", "4", "24Gi"),
    "score": PodResources("1", "4", "24Gi"),
    "analyse": PodResources("1", "4", "24Gi"),
    "train": PodResources(str(TrainConfig.num_gpus), "8", "64Gi"),
    "evaluate": PodResources("1", "4", "24Gi"),
}


# --- run parameters, as the select stage receives them and the report shows them ------------

# Each pipeline parameter prefix's dataclass, in pipeline order (the report's order).
STAGE_CONFIGS = {
    "ingest": IngestConfig,
    "generate": GenerateConfig,
    "score": ScoreConfig,
    "cluster": ClusterConfig,
    "select": SelectConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "analyse": AnalyseConfig,
}


def parameter_fields() -> dict[str, tuple[str, str, type]]:
    """Every stage field's pipeline parameter -> (stage, field, its type), in pipeline order."""
    out = {}
    for stage, cls in STAGE_CONFIGS.items():
        for f in fields(cls):
            name = f.metadata.get("param", f"{stage}_{f.name}")
            if name:
                out[name] = (stage, f.name, f.type)
    return out


def parameter_metadata(key: str) -> dict[str, Any]:
    """Every pipeline parameter whose field has the metadata `key` (`at_least`, `choices`: the
    ranges adg.parameters checks) -> that value, in pipeline order."""
    out = {}
    for stage, cls in {**STAGE_CONFIGS, "": CheckpointConfig}.items():
        for f in fields(cls):
            name = f.metadata.get("param", f"{stage}_{f.name}")
            if name and key in f.metadata:
                out[name] = f.metadata[key]
    return out


def typed_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """`params` with every number and flag setting of its own type again. A dict argument built
    from pipeline parameters is compiled as a constant whose values are placeholder strings
    (`'{{$.inputs.parameters['pipelinechannel--cluster_count']}}'`); the runner substitutes text
    into them, so `cluster_count` 2 arrives as "2.0" from kfp.local (and as a Struct double 2.0
    where a number is passed whole). Values that do not parse stay as given; the model and other
    text settings stay strings."""
    known = parameter_fields()
    out = dict(params)
    for name, value in params.items():
        if name in known:
            out[name] = _typed_value(value, known[name][2])
    return out


def _typed_value(value: Any, field_type: Any) -> Any:
    """`value` as a field of `field_type` (`int`, `float`, `bool | None`, ...) takes it."""
    kinds = set(get_args(field_type)) or {field_type}
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return value
    if bool in kinds and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not kinds & {int, float}:
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    if int in kinds and number.is_integer():
        return int(number)
    return number if float in kinds else value
