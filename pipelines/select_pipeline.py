"""The selection-only pipeline: the first run's form, with a handful of fields.

The Kubeflow UI's run form lists a pipeline's parameters by name and type, alphabetically, with no
description; the full pipeline (`adg_pipeline`, selection + train + evaluate + recurring and
continuous curation) has more than sixty. This pipeline exposes only what a first selection run
needs, under the same names as the full pipeline's (so `--param` and docs carry over), and runs
the full pipeline as a nested graph with everything else at its defaults: training, evaluation,
task-type analysis, recurring curation (prefix and ledger) and the curation index stay off. The
GPU placement a cluster needs (node selector, tolerations, the accelerator's resource name) is
exposed too, since on a tainted GPU node pool the GPU pods would otherwise never schedule, and on
AMD or Intel nodes they would ask for a resource no node has. The prompt format is here too (default
auto), so a ShareGPT or messages pool with system prompts is curated from this form as it is. The
pool and the budget have no default: the form asks for them.

Same graph, same components, same placement and caching settings: only the form is smaller. For
anything else, use the full pipeline (`adg compile --pipeline full`).
"""

from kfp import dsl

from adg.config import GenerateConfig
from adg_kfp.pipelines.adg_pipeline import RUN_DEADLINE_SECONDS, adg_pipeline
from adg_kfp.pipelines.placement import GPU_RESOURCE

SELECT_PIPELINE_NAME = "adg-select"
SELECT_DISPLAY_NAME = "ADG: select a subset (first run)"
SELECT_DESCRIPTION = (
    "Selection only, in a handful of fields: the pool (ingest_input: an s3:// file), the backbone "
    "model (empty = the embedded SmolLM2-135M-Instruct) and how many records to select "
    "(select_budget). The subsets are the select task's top/middle/bottom artifacts (and under "
    "export_uri when set). Training, evaluation and recurring curation: the full adg-selection "
    "pipeline."
)


@dsl.pipeline(
    name=SELECT_PIPELINE_NAME,
    display_name=SELECT_DISPLAY_NAME,
    description=SELECT_DESCRIPTION,
    pipeline_config=dsl.PipelineConfig(active_deadline_seconds=RUN_DEADLINE_SECONDS),
)
def select_pipeline(
    ingest_input: str,
    select_budget: int,
    model: str = "",
    shard_count: int = 1,
    generate_prompt_format: str = GenerateConfig.prompt_format,
    selectors: list = ["adg"],  # noqa: B006 - KFP parameter defaults are literals
    export_uri: str = "",
    gpu_node_selector: dict = {},  # noqa: B006
    gpu_tolerations: list = [],  # noqa: B006
    gpu_accelerator_type: str = GPU_RESOURCE,
) -> None:
    """ADG selection of one pool, with the full pipeline's defaults for everything not here.

    Args:
        ingest_input: the pool (an s3:// URI in a cluster): JSON, JSONL, a Parquet file or a
            prefix ending in "/" of Parquet shards, in any shape (alpaca, dolly,
            prompt-completion, sharegpt, messages; detected per file).
        select_budget: number of records to select (at most the pool's valid records).
        model: backbone model: an s3:// prefix of a HF folder (fetched once into the model
            cache), or empty for the embedded SmolLM2-135M-Instruct.
        shard_count: split the pool into this many shards, one GPU pod each for generate/score.
        generate_prompt_format: auto (conversations and records with a system prompt in the
            model's chat template, plain single-turn pools in the Alpaca prompt; one format per
            pool), alpaca or chat.
        selectors: ["adg"], or with baselines to compare, e.g. ["adg", "random", "ifd"].
        export_uri: s3:// prefix to export top/middle/bottom.json and the report to (empty =
            only the run's artifacts).
        gpu_node_selector: node labels GPU pods must match, e.g. {"nvidia.com/gpu.present": "true"}.
        gpu_tolerations: tolerations of GPU pods, e.g.
            [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}].
        gpu_accelerator_type: the extended resource a GPU pod asks for (nvidia.com/gpu,
            amd.com/gpu, gpu.intel.com/i915, ...).
    """
    adg_pipeline(
        ingest_input=ingest_input,
        select_budget=select_budget,
        model=model,
        shard_count=shard_count,
        generate_prompt_format=generate_prompt_format,
        selectors=selectors,
        export_uri=export_uri,
        gpu_node_selector=gpu_node_selector,
        gpu_tolerations=gpu_tolerations,
        gpu_accelerator_type=gpu_accelerator_type,
    ).set_display_name("adg-selection")
