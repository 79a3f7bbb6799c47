"""The ADG selection pipeline: ingest → shard → [generate → score] per shard → merge,
ingest → embed → cluster, → select → (export) → (record_ledger); select → (analyse).
With a curation index: ingest → curation_plan → [generate → score] per shard → merge, embed →
curation_add → curation_select (over the whole index) → (record_ledger).

Only wiring lives here; every stage is a component in `components/` calling the `adg` library,
and where each task runs in a cluster is decided by `pipelines/placement.py`. The parameters'
defaults come from the stages' config dataclasses in `adg.config` (stdlib only), read at compile
time, so the CLI, the library and the pipeline share one source. `select_pipeline.py` wraps this
pipeline, nested, in a selection-only one with a handful of parameters for a first run.
"""

from kfp import dsl

from adg.config import (
    GPU_COUNT_PARAMS,
    GPU_PODS,
    MODEL_FREE_METHODS,
    AnalyseConfig,
    CheckpointConfig,
    ClusterConfig,
    EvaluateConfig,
    GenerateConfig,
    IngestConfig,
    ScoreConfig,
    SelectConfig,
    TrainConfig,
)
from adg_kfp.components.analyse import analyse
from adg_kfp.components.cluster import cluster
from adg_kfp.components.compare import compare, plan_selectors
from adg_kfp.components.curation import curation_add, curation_plan, curation_route, curation_select
from adg_kfp.components.embed import embed
from adg_kfp.components.evaluate import evaluate
from adg_kfp.components.export import export
from adg_kfp.components.generate import generate
from adg_kfp.components.images import family_image
from adg_kfp.components.ingest import ingest
from adg_kfp.components.ledger import nothing_to_do, record_ledger
from adg_kfp.components.merge import merge
from adg_kfp.components.preflight import preflight
from adg_kfp.components.score import score
from adg_kfp.components.select import select
from adg_kfp.components.shard import shard
from adg_kfp.components.train import train
from adg_kfp.pipelines.placement import (
    GPU_RESOURCE,
    MODEL_CACHE_PATH,
    RUN_DEADLINE_SECONDS,
    cpu_task,
    gpu_task,
    use_endpoint_key,
    use_object_store_secret,
)

PIPELINE_NAME = "adg-selection"
PIPELINE_DISPLAY_NAME = "ADG: answer-divergence instruction selection"
PIPELINE_DESCRIPTION = (
    "Selects a small, strong instruction-tuning subset from a pool (a file, or the new files "
    "under a bucket prefix) by the divergence of K sampled answers, inside semantic bins; "
    "optionally fine-tunes and evaluates on it. Set ingest_input (or ingest_pool_prefix), model "
    "and select_budget; everything else has a working default."
)
# Shards generated and scored at once (one GPU pod each); ParallelFor needs a compile-time number.
SHARD_PARALLELISM = 8
# The model-free baseline (adg.config.MODEL_FREE_METHODS), scored by a CPU task of its own.
RANDOM = MODEL_FREE_METHODS[0]
# plan_selectors' `case` -> (baselines with a model, the random one): one branch each.
BASELINE_CASES = {"both": (True, True), "models": (True, False), "random": (False, True)}


def uncached(task):
    """Turn KFP's cache off for a task whose result depends on the world outside its inputs (a
    bucket prefix, the ledger, an export target, the object store): it must run every time, or
    a cache hit would skip new pool files (the cache key is only parameters, input artifacts,
    image and command)."""
    return task.set_caching_options(False)


@dsl.pipeline(
    name=PIPELINE_NAME,
    display_name=PIPELINE_DISPLAY_NAME,
    description=PIPELINE_DESCRIPTION,
    pipeline_config=dsl.PipelineConfig(active_deadline_seconds=RUN_DEADLINE_SECONDS),
)
def adg_pipeline(
    ingest_input: str = "",
    ingest_pool_prefix: str = "",
    ingest_ledger_uri: str = "",
    model: str = "",
    ingest_limit: int = 0,
    ingest_format: str = IngestConfig.format,
    ingest_columns: str = IngestConfig.columns,
    shard_count: int = 1,
    generate_num_samples: int = GenerateConfig.num_samples,
    generate_temperature: float = GenerateConfig.temperature,
    generate_top_p: float = GenerateConfig.top_p,
    generate_max_new_tokens: int = GenerateConfig.max_new_tokens,
    generate_seed: int = GenerateConfig.seed,
    generate_batch_size: int = GenerateConfig.batch_size,
    generate_backend: str = GenerateConfig.backend,
    generate_prompt_format: str = GenerateConfig.prompt_format,
    generate_tensor_parallel_size: str = GPU_PODS["generate"].gpus,
    generate_gpu_memory_utilization: float = GenerateConfig.gpu_memory_utilization,
    generate_cpu: str = GPU_PODS["generate"].cpu,
    generate_memory: str = GPU_PODS["generate"].memory,
    embed_gpu_count: str = GPU_PODS["embed"].gpus,
    embed_cpu: str = GPU_PODS["embed"].cpu,
    embed_memory: str = GPU_PODS["embed"].memory,
    cluster_count: int = ClusterConfig.count,
    cluster_seed: int = ClusterConfig.seed,
    cluster_pca_dims: int = ClusterConfig.pca_dims,
    score_dispersion_weight: float = ScoreConfig.dispersion_weight,
    score_anisotropy_weight: float = ScoreConfig.anisotropy_weight,
    score_all_metrics: bool = ScoreConfig.all_metrics,
    score_gpu_count: str = GPU_PODS["score"].gpus,
    score_cpu: str = GPU_PODS["score"].cpu,
    score_memory: str = GPU_PODS["score"].memory,
    select_budget: int = 10000,
    select_strategy: str = SelectConfig.strategy,
    select_fail_on_collapse: bool = SelectConfig.fail_on_collapse,
    selectors: list = ["adg"],  # noqa: B006
    gpu_node_selector: dict = {},  # noqa: B006 - KFP parameter defaults are literals
    gpu_tolerations: list = [],  # noqa: B006
    gpu_accelerator_type: str = GPU_RESOURCE,
    model_cache_pvc: str = "adg-model-cache",
    storage_secret: str = "adg-object-store",
    checkpoint_uri: str = "",
    checkpoint_every: int = CheckpointConfig.checkpoint_every,
    export_uri: str = "",
    curation_index_uri: str = "",
    curation_rescore_mismatched: bool = False,
    # --- train and evaluate (run only when train_enabled) ---
    train_enabled: bool = False,
    train_epochs: float = TrainConfig.epochs,
    train_max_steps: int = TrainConfig.max_steps,
    train_batch_size: int = TrainConfig.per_device_batch_size,
    train_gradient_accumulation_steps: int = TrainConfig.gradient_accumulation_steps,
    train_learning_rate: float = TrainConfig.learning_rate,
    train_lr_scheduler: str = TrainConfig.lr_scheduler,
    train_warmup_ratio: float = TrainConfig.warmup_ratio,
    train_weight_decay: float = TrainConfig.weight_decay,
    train_model_max_length: int = TrainConfig.model_max_length,
    train_seed: int = TrainConfig.seed,
    train_deepspeed: str = TrainConfig.deepspeed,
    train_num_gpus: str = GPU_PODS["train"].gpus,
    train_cpu: str = GPU_PODS["train"].cpu,
    train_memory: str = GPU_PODS["train"].memory,
    train_checkpoint_dir: str = MODEL_CACHE_PATH + "/checkpoints",
    evaluate_tasks: str = EvaluateConfig.tasks,
    evaluate_num_fewshot: str = EvaluateConfig.num_fewshot,
    evaluate_limit: float = EvaluateConfig.limit,
    evaluate_include_path: str = "",
    evaluate_baseline: str = "",
    evaluate_backend: str = EvaluateConfig.backend,
    evaluate_batch_size: str = EvaluateConfig.batch_size,
    evaluate_gpu_count: str = GPU_PODS["evaluate"].gpus,
    evaluate_cpu: str = GPU_PODS["evaluate"].cpu,
    evaluate_memory: str = GPU_PODS["evaluate"].memory,
    analyse_enabled: bool = False,
    analyse_endpoint: str = AnalyseConfig.endpoint,
    analyse_endpoint_model: str = AnalyseConfig.endpoint_model,
    analyse_batch_size: int = AnalyseConfig.batch_size,
    analyse_gpu_count: str = GPU_PODS["analyse"].gpus,
    analyse_cpu: str = GPU_PODS["analyse"].cpu,
    analyse_memory: str = GPU_PODS["analyse"].memory,
) -> None:
    """Answer Divergence-Guided Selection of an instruction pool.

    The subsets are the `select` task's outputs (top, middle, bottom, report); when recurring
    curation finds no new pool files, `nothing_to_do` ends the run with empty ones instead. (No
    pipeline-level outputs: they would need `dsl.OneOf` over artifacts, which kfp.local lacks.)

    Args:
        ingest_input: the pool (local path or s3:// URI): a JSON array or JSONL file (.gz,
            .zst), a Parquet file, a folder (an s3:// prefix ending in "/") of Parquet shards or
            pool files, or a local datasets folder; ignored when ingest_pool_prefix is set.
        ingest_pool_prefix: recurring curation: an s3:// prefix of pool files; only the files not
            yet in the ledger are curated. With none new the run ends with "nothing to do".
        ingest_ledger_uri: s3:// URI of the ledger (JSON) of pool files already curated; the
            files of this run are added to it after select succeeds.
        model: backbone model: a HF folder or .gguf path, or an s3:// prefix (downloaded once into
            the model cache); empty = the embedded SmolLM2-135M-Instruct.
        ingest_limit: keep only the first N valid records (0 = all).
        ingest_format: the pools' shape: auto (detected per file), alpaca, dolly,
            prompt-completion, sharegpt or messages.
        ingest_columns: the pool's names for ADG's fields, e.g.
            "instruction=question,input=context,output=answer" (alone: alpaca's fields).
        shard_count: split the pool into this many shards (at most one per record); generate and
            score run once per shard, up to SHARD_PARALLELISM at a time.
        generate_num_samples: K, answers sampled per instruction.
        generate_temperature: sampling temperature.
        generate_top_p: nucleus sampling threshold.
        generate_max_new_tokens: longest answer, in tokens.
        generate_seed: sampling seed.
        generate_batch_size: instructions per generation batch.
        generate_backend: auto (vLLM when a GPU and vLLM are present), hf or vllm.
        generate_prompt_format: auto (the model's chat template for a pool with any system
            prompt or earlier turn, else the Alpaca prompt, as the paper; resolved once per pool
            right after ingest, for generate, the baselines, training and the curation index),
            alpaca or chat.
        generate_tensor_parallel_size: GPUs per generate pod; vLLM splits the model over them
            ("0": generate on CPU with transformers).
            A string, as every GPU count, CPU and memory here: the KFP driver reads a pod's
            resources from run parameters as strings only.
        generate_gpu_memory_utilization: share of each GPU's memory vLLM may use (0-1).
        generate_cpu: CPU cores of each generate pod, its request and its limit ("4", "500m").
        generate_memory: memory of each generate pod, its request and its limit ("24Gi"; `adg
            plan` shows the pods against the nodes of a GPU type).
        embed_gpu_count: GPUs for the embed pod. Every GPU count: a whole number; "0" runs the
            stage on CPU (no GPU limit, node selector, tolerations or CUDA check; the same
            image), the way to try the pipeline on a cluster without GPUs.
        embed_cpu: CPU cores of the embed pod, its request and its limit ("4", "500m").
        embed_memory: memory of the embed pod, its request and its limit ("24Gi"; `adg
            plan` shows the pods against the nodes of a GPU type).
        cluster_count: number of k-means bins (clamped to the pool size).
        cluster_seed: k-means seed.
        cluster_pca_dims: project the instruction vectors onto this many principal components
            before k-means (0 = off, the published method; 256 is 12x faster on 52K x 4096).
        score_dispersion_weight: weight of dispersion D in the score.
        score_anisotropy_weight: weight of anisotropy I in the score.
        score_all_metrics: also write the diagnostic metrics per record.
        score_gpu_count: GPUs per score pod (and per baseline selector's scoring pod).
        score_cpu: CPU cores of each score pod (and baseline scoring pod), its request and its
            limit ("4", "500m").
        score_memory: memory of each score pod (and baseline scoring pod), its request and its
            limit ("24Gi"; `adg plan` shows the pods against the nodes of a GPU type).
        select_budget: number of records to select.
        select_strategy: exact (fills the budget) or reference (the published procedure).
        select_fail_on_collapse: fail the run when the scores cannot rank the pool (NaNs, no
            spread, most records at one value) instead of only warning; for recurring runs.
        selectors: the selectors to compare side by side, e.g. ["adg", "random", "ifd"] (methods
            of `adg score --method`). ADG always runs as now; every other one gets its own branch
            that scores the pool with its method (random on CPU, the others on a GPU), selects
            with the same budget and bins and, with train_enabled, trains and evaluates with the
            same settings; then `compare` writes the comparison table. ["adg"] = no comparison.
        gpu_node_selector: node labels GPU pods must match, e.g. {"nvidia.com/gpu.present": "true"}.
        gpu_tolerations: tolerations of GPU pods, a list of Kubernetes toleration objects, e.g.
            [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}].
        gpu_accelerator_type: the extended resource a GPU pod asks for (nvidia.com/gpu,
            amd.com/gpu, gpu.intel.com/i915, ...).
        model_cache_pvc: PersistentVolumeClaim mounted at /var/cache/adg (ADG_HOME) in every GPU
            pod: models from s3:// (and the embedded one) are fetched once into it, and training
            checkpoints live on it (manifests/ creates adg-model-cache; ReadWriteMany for
            parallel shards on several nodes).
        storage_secret: name of the Kubernetes Secret with AWS_ACCESS_KEY_ID and
            AWS_SECRET_ACCESS_KEY (optionally AWS_ENDPOINT_URL, AWS_REGION) for s3:// URIs;
            every task gets them, so the KFP launcher can also read an s3:// pipeline root
            with them when no kfp-launcher ConfigMap names a Secret.
        checkpoint_uri: s3:// prefix for checkpoints of generate/score shards, so a preempted pod's
            retry resumes (empty = under the run's pipeline root when that is on S3 and writable
            with storage_secret; "none" = no remote checkpoints).
        checkpoint_every: records between two checkpoint uploads.
        export_uri: s3:// prefix to export top/middle/bottom.json, the report, the selected
            records in the pool's own shape (selected.parquet or selected.jsonl: the export
            task's `selected` artifact) and a run manifest to (empty = no upload).
        curation_index_uri: continuous curation: a curation index (s3:// prefix) that keeps every
            batch scored so far; only the pool records not in it are generated, embedded and
            scored, then the select_budget is selected over all indexed records into a new
            version of the curated set under <index>/versions/ (with a manifest and a diff
            against the previous version). Empty = select within this run's pool only. Batch
            selection, baselines, training and export do not run in this mode.
        curation_rescore_mismatched: entries of the index scored with another model or other
            sampling/score settings are re-scored with this run's (off: the run refuses them).
        train_enabled: fine-tune `model` on the top subset and evaluate it (off: curation only).
        train_epochs: training epochs.
        train_max_steps: stop after this many optimizer steps (0 = run all epochs).
        train_batch_size: per-GPU batch size.
        train_gradient_accumulation_steps: micro-batches per optimizer step.
        train_learning_rate: peak learning rate.
        train_lr_scheduler: learning-rate schedule (a transformers scheduler name).
        train_warmup_ratio: fraction of the steps spent warming up.
        train_weight_decay: AdamW weight decay.
        train_model_max_length: longest training sequence, in tokens.
        train_seed: training seed.
        train_deepspeed: auto (zero3 on GPU when DeepSpeed is installed, none on CPU), zero3,
            zero3_offload, a DeepSpeed JSON path, or empty for none.
        train_num_gpus: GPUs in the training pod (one torchrun worker each).
        train_cpu: CPU cores of the training pod, its request and its limit ("4", "500m").
        train_memory: memory of the training pod, its request and its limit ("24Gi"; `adg
            plan` shows the pods against the nodes of a GPU type).
        train_checkpoint_dir: folder for training checkpoints, so a restarted pod resumes; each
            training gets <folder>/<run id>/<selector> (default: on the model-cache PVC; empty =
            inside the model output, lost with the pod).
        evaluate_tasks: comma-separated lm-eval tasks; empty = BBH, GSM8K, MMLU, TruthfulQA-MC2,
            MBPP, HumanEval.
        evaluate_num_fewshot: empty = the published shots; N for all tasks; or task=N,task=N.
        evaluate_limit: examples per task (0 = all; below 1 = a fraction).
        evaluate_include_path: comma-separated folders of extra lm-eval task YAMLs.
        evaluate_baseline: results JSON (e.g. of the base model) shown side by side in the table.
        evaluate_backend: auto (vLLM when a GPU and vLLM are present), hf or vllm.
        evaluate_batch_size: an integer or auto.
        evaluate_gpu_count: GPUs of the evaluate pod.
        evaluate_cpu: CPU cores of the evaluate pod, its request and its limit ("4", "500m").
        evaluate_memory: memory of the evaluate pod, its request and its limit ("24Gi"; `adg
            plan` shows the pods against the nodes of a GPU type).
        analyse_enabled: also label every instruction with its task type and compare the task mix
            of the pool with the selected subset's (the analyse task's HTML / Markdown artifacts
            are the selection report with that task mix in it).
        analyse_endpoint: OpenAI-compatible URL to classify with, e.g. http://vllm:8000/v1
            (empty = the backbone model); its key is the optional key ADG_ENDPOINT_API_KEY of
            the storage_secret Secret.
        analyse_endpoint_model: model name sent to the endpoint.
        analyse_batch_size: instructions per forward pass of the backbone classifier.
        analyse_gpu_count: GPUs for the analyse pod.
        analyse_cpu: CPU cores of the analyse pod, its request and its limit ("4", "500m").
        analyse_memory: memory of the analyse pod, its request and its limit ("24Gi"; `adg
            plan` shows the pods against the nodes of a GPU type).
    """
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER

    # Each GPU stage's pod: GPUs, CPU, memory (strings: the driver reads a pod's resources so).
    pods = {
        "generate": (generate_tensor_parallel_size, generate_cpu, generate_memory),
        "embed": (embed_gpu_count, embed_cpu, embed_memory),
        "score": (score_gpu_count, score_cpu, score_memory),
        "analyse": (analyse_gpu_count, analyse_cpu, analyse_memory),
        "train": (train_num_gpus, train_cpu, train_memory),
        "evaluate": (evaluate_gpu_count, evaluate_cpu, evaluate_memory),
    }

    def on_gpu(task, stage: str, gpus=None, node_selector=None, tolerations=None):
        """A GPU stage's task: its pod (`gpu_task`; GPUs, node selector and tolerations default to
        the stage's placement by the preflight: the run's, or none at all for a GPU count of "0",
        which runs the stage on CPU) and the object-store Secret (models and checkpoints on S3)."""
        _, cpu, memory = pods[stage]
        placed = check.outputs
        gpu_task(
            task,
            gpus=placed[f"{stage}_gpus"] if gpus is None else gpus,
            cpu=cpu,
            memory=memory,
            node_selector=placed[f"{stage}_node_selector"]
            if node_selector is None
            else node_selector,
            tolerations=placed[f"{stage}_tolerations"] if tolerations is None else tolerations,
            cache_pvc=model_cache_pvc,
            accelerator=gpu_accelerator_type,
        )
        return use_object_store_secret(task, storage_secret)

    def on_cpu(task, stage: str):
        """A CPU stage's task: its requests and limits (`cpu_task`) and the object-store Secret,
        which the KFP launcher in the pod reads an s3:// pipeline root with (docs/kubernetes.md)."""
        return use_object_store_secret(cpu_task(task, stage), storage_secret)

    # First, on CPU: everything that can be known to fail before a GPU is asked for. Every other
    # task depends on it (through ingest and the checkpoint prefix), so none starts when it fails.
    # Numbers and flags in the dict; every string as its own input (components/preflight.py).
    check = preflight(
        parameters={
            "ingest_limit": ingest_limit,
            "shard_count": shard_count,
            "generate_num_samples": generate_num_samples,
            "generate_temperature": generate_temperature,
            "generate_top_p": generate_top_p,
            "generate_max_new_tokens": generate_max_new_tokens,
            "generate_batch_size": generate_batch_size,
            "generate_gpu_memory_utilization": generate_gpu_memory_utilization,
            "cluster_count": cluster_count,
            "cluster_pca_dims": cluster_pca_dims,
            "score_dispersion_weight": score_dispersion_weight,
            "score_anisotropy_weight": score_anisotropy_weight,
            "select_budget": select_budget,
            "checkpoint_every": checkpoint_every,
            "train_max_steps": train_max_steps,
            "evaluate_limit": evaluate_limit,
            "analyse_batch_size": analyse_batch_size,
        },
        # A list inside the dict would not survive kfp.local's placeholder substitution.
        selectors=selectors,
        gpu_node_selector=gpu_node_selector,
        gpu_tolerations=gpu_tolerations,
        ingest_input=ingest_input,
        ingest_pool_prefix=ingest_pool_prefix,
        ingest_ledger_uri=ingest_ledger_uri,
        model=model,
        generate_backend=generate_backend,
        generate_prompt_format=generate_prompt_format,
        select_strategy=select_strategy,
        evaluate_backend=evaluate_backend,
        gpu_accelerator_type=gpu_accelerator_type,
        storage_secret=storage_secret,
        model_cache_pvc=model_cache_pvc,
        checkpoint_uri=checkpoint_uri,
        export_uri=export_uri,
        **{
            name: value
            for stage, (count, cpu, memory) in pods.items()
            for name, value in (
                (GPU_COUNT_PARAMS[stage], count),
                (f"{stage}_cpu", cpu),
                (f"{stage}_memory", memory),
            )
        },
        run_id=run_id,
    ).set_display_name("preflight")
    on_cpu(uncached(check), "preflight")
    checkpoints = check.outputs["checkpoint_uri"]

    ing = ingest(
        pool_uri=ingest_input,
        pool_prefix=ingest_pool_prefix,
        ledger_uri=ingest_ledger_uri,
        limit=ingest_limit,
        pool_format=ingest_format,
        columns=ingest_columns,
    ).set_display_name("ingest")
    on_cpu(uncached(ing), "ingest")
    ing.after(check)

    def generate_and_score(pool, records, loop_name: str):
        """shard → ParallelFor [generate → score] (one GPU pod per shard) → merge."""
        shards = shard(records=records, shard_count=shard_count)
        on_cpu(shards.set_display_name("shard"), "shard")
        with dsl.ParallelFor(shards.output, parallelism=SHARD_PARALLELISM, name=loop_name) as index:
            gen = generate(
                pool=pool,
                model=model,
                num_samples=generate_num_samples,
                temperature=generate_temperature,
                top_p=generate_top_p,
                max_new_tokens=generate_max_new_tokens,
                seed=generate_seed,
                batch_size=generate_batch_size,
                backend=generate_backend,
                prompt_format=prompt_format,
                tensor_parallel_size=generate_tensor_parallel_size,
                gpu_memory_utilization=generate_gpu_memory_utilization,
                shard_index=index,
                shard_count=shard_count,
                checkpoint_uri=checkpoints,
                checkpoint_every=checkpoint_every,
                run_id=run_id,
            ).set_display_name("generate")
            on_gpu(gen, "generate")

            scored_shard = score(
                generated=gen.outputs["generated"],
                model=model,
                dispersion_weight=score_dispersion_weight,
                anisotropy_weight=score_anisotropy_weight,
                all_metrics=score_all_metrics,
                shard_index=index,
                checkpoint_uri=checkpoints,
                checkpoint_every=checkpoint_every,
                run_id=run_id,
                gpus=score_gpu_count,
            ).set_display_name("score")
            on_gpu(scored_shard, "score")

        merged = merge(pool=pool, shards=dsl.Collected(scored_shard.outputs["scored"]))
        on_cpu(merged.set_display_name("merge"), "merge")
        return merged

    # After ingest, before any GPU: nothing new, curate over the index, or a batch (whose
    # budget must fit the records ingest kept); and the pool's one prompt format
    # (adg.method.prompts: `auto` resolved once, so every shard, baseline, training and index
    # entry uses the same).
    routed = curation_route(
        pool=ing.outputs["pool"],
        new_files=ing.outputs["new_files"],
        records=ing.outputs["records"],
        budget=select_budget,
        index_uri=curation_index_uri,
        prompt_format=generate_prompt_format,
        model=model,
    )
    on_cpu(routed.set_display_name("curation_route"), "shard")
    route = routed.outputs["route"]
    prompt_format = routed.outputs["prompt_format"]

    with dsl.If(route == "batch", name="new-pool-files"):
        pool = ing.outputs["pool"]
        scored = generate_and_score(pool, ing.outputs["records"], "shards")

        emb = embed(pool=pool, model=model, gpus=embed_gpu_count).set_display_name("embed")
        on_gpu(emb, "embed")

        bins = cluster(
            embeddings=emb.outputs["embeddings"],
            count=cluster_count,
            seed=cluster_seed,
            pca_dims=cluster_pca_dims,
        ).set_display_name("cluster")
        on_cpu(bins, "cluster")

        select_args = {
            "clusters": bins.outputs["clusters"],
            "budget": select_budget,
            "strategy": select_strategy,
            "fail_on_collapse": select_fail_on_collapse,
            "rejects": ing.outputs["rejects"],
        }
        run_parameters = {
            "model": model,
            "generate_num_samples": generate_num_samples,
            "generate_temperature": generate_temperature,
            "score_dispersion_weight": score_dispersion_weight,
            "score_anisotropy_weight": score_anisotropy_weight,
            "cluster_count": cluster_count,
        }
        chosen = select(
            scored=scored.outputs["merged"], run_parameters=run_parameters, **select_args
        ).set_display_name("select")
        on_cpu(chosen, "select")

        # --- other selectors, side by side with ADG (only when `selectors` names any) ---------
        plan = plan_selectors(selectors=selectors).set_display_name("plan_selectors")
        on_cpu(plan, "compare")

        # A baseline scores the pool itself (no generated answers), in the pool's prompt format.
        baseline_score_args = {
            "generated": pool,
            "model": model,
            "dispersion_weight": score_dispersion_weight,
            "anisotropy_weight": score_anisotropy_weight,
            "all_metrics": False,
            "shard_index": 0,
            "checkpoint_uri": checkpoints,
            "checkpoint_every": checkpoint_every,
            "run_id": run_id,
            "prompt_format": prompt_format,
        }

        def model_baselines(trained: bool):
            """Score the pool with each baseline method that needs a model, on the score stage's
            placement, select (and train, evaluate). A baseline needs no generated answers, so
            it starts when the bins exist, beside ADG's generate and score."""
            with dsl.ParallelFor(
                plan.outputs["model_baselines"], name="baseline-selectors"
            ) as method:
                rescored = score(
                    **baseline_score_args, method=method, gpus=score_gpu_count
                ).set_display_name("score_baseline")
                on_gpu(rescored, "score")
                picked = select(
                    scored=rescored.outputs["scored"],
                    run_parameters={**run_parameters, "selector": method},
                    **select_args,
                ).set_display_name("select_baseline")
                on_cpu(picked, "select")
                if not trained:
                    return picked, None
                model_b = train(data=picked.outputs["top"], selector=method, **train_args)
                model_b.set_display_name("train_baseline")
                on_gpu(model_b, "train")
                evaluated_b = evaluate(model=model_b.outputs["model"], **evaluate_args)
                evaluated_b.set_display_name("evaluate_baseline")
                on_gpu(evaluated_b, "evaluate")
                return picked, evaluated_b

        def random_baseline(trained: bool):
            """The model-free baseline: its own CPU task (`cpu_task`, the CPU image), with no GPU,
            nothing that pins it to a GPU node and no model cache, which it never reads (a
            ReadWriteOnce claim would pin it to the claim's node or keep it Pending). The driver
            fails a task whose claim name resolves empty (k8s.go 1144-1153), so a pod without the
            claim must be a task of its own, not the GPU baselines' task with other inputs."""
            rescored = score(**baseline_score_args, method=RANDOM, gpus="0").set_display_name(
                "score_random"
            )
            on_cpu(rescored, "score_random").set_container_image(family_image("cpu"))
            picked = select(
                scored=rescored.outputs["scored"],
                run_parameters={**run_parameters, "selector": RANDOM},
                **select_args,
            ).set_display_name("select_random")
            on_cpu(picked, "select")
            if not trained:
                return picked, None
            model_r = train(data=picked.outputs["top"], selector=RANDOM, **train_args)
            on_gpu(model_r.set_display_name("train_random"), "train")
            evaluated_r = evaluate(model=model_r.outputs["model"], **evaluate_args)
            on_gpu(evaluated_r.set_display_name("evaluate_random"), "evaluate")
            return picked, evaluated_r

        def side_by_side(trained: bool) -> None:
            """The baselines and the comparison, in one branch per mix the `selectors` ask for
            (plan_selectors' `case`): a task outside a condition may read another's output only
            when both sit in it (KFP has dsl.OneOf for that, which kfp.local lacks for
            artifacts), so each mix has its own compare."""
            suffix = "-trained" if trained else ""
            for case, (models, free) in BASELINE_CASES.items():
                with dsl.If(plan.outputs["case"] == case, name=f"compare-{case}{suffix}"):
                    inputs = {}
                    if models:
                        picked, evaluated_b = model_baselines(trained)
                        inputs["baseline_tops"] = dsl.Collected(picked.outputs["top"])
                        if trained:
                            inputs["baseline_results"] = dsl.Collected(
                                evaluated_b.outputs["results"]
                            )
                    if free:
                        picked_r, evaluated_r = random_baseline(trained)
                        inputs["random_top"] = picked_r.outputs["top"]
                        if trained:
                            inputs["random_results"] = evaluated_r.outputs["results"]
                    if trained:
                        inputs["adg_results"] = evaluated.outputs["results"]
                    table = compare(
                        selectors=selectors,
                        model_baselines=plan.outputs["model_baselines"],
                        adg_top=chosen.outputs["top"],
                        adg_scored=scored.outputs["merged"],
                        **inputs,
                    ).set_display_name("compare")
                    on_cpu(table, "compare")

        # Identical settings for ADG's model and every baseline's.
        train_args = {
            "base_model": model,
            "epochs": train_epochs,
            "max_steps": train_max_steps,
            "batch_size": train_batch_size,
            "gradient_accumulation_steps": train_gradient_accumulation_steps,
            "learning_rate": train_learning_rate,
            "lr_scheduler": train_lr_scheduler,
            "warmup_ratio": train_warmup_ratio,
            "weight_decay": train_weight_decay,
            "model_max_length": train_model_max_length,
            "seed": train_seed,
            "deepspeed": train_deepspeed,
            "num_gpus": train_num_gpus,
            "checkpoint_dir": train_checkpoint_dir,
            "run_id": run_id,
            "prompt_format": prompt_format,
        }
        evaluate_args = {
            "tasks": evaluate_tasks,
            "num_fewshot": evaluate_num_fewshot,
            "limit": evaluate_limit,
            "include_path": evaluate_include_path,
            "baseline": evaluate_baseline,
            "backend": evaluate_backend,
            "batch_size": evaluate_batch_size,
            "gpus": evaluate_gpu_count,
        }

        # --- train and evaluate (only when train_enabled) ------------------------------------
        with dsl.If(train_enabled == True, name="train-enabled"):  # noqa: E712
            tuned = train(data=chosen.outputs["top"], selector="adg", **train_args)
            tuned.set_display_name("train")
            on_gpu(tuned, "train")
            evaluated = evaluate(model=tuned.outputs["model"], **evaluate_args)
            evaluated.set_display_name("evaluate")
            on_gpu(evaluated, "evaluate")
            side_by_side(trained=True)
        with dsl.Else(name="train-disabled"):
            side_by_side(trained=False)

        # The selected records in the pool's own shape; uploaded only with an export_uri. The
        # ledger is written only after it.
        exported = export(
            top=chosen.outputs["top"],
            middle=chosen.outputs["middle"],
            bottom=chosen.outputs["bottom"],
            report=chosen.outputs["report"],
            pool=pool,
            originals=ing.outputs["originals"],
            export_uri=export_uri,
            run_id=run_id,
            model=model,
            parameters={
                "shard_count": shard_count,
                "generate_num_samples": generate_num_samples,
                "generate_temperature": generate_temperature,
                "generate_top_p": generate_top_p,
                "generate_max_new_tokens": generate_max_new_tokens,
                "generate_seed": generate_seed,
                "cluster_count": cluster_count,
                "cluster_seed": cluster_seed,
                "score_dispersion_weight": score_dispersion_weight,
                "score_anisotropy_weight": score_anisotropy_weight,
                "select_budget": select_budget,
                "select_strategy": select_strategy,
            },
        ).set_display_name("export")
        on_cpu(uncached(exported), "export")

        with dsl.If(ingest_ledger_uri != "", name="ledger-given"):
            ledger = record_ledger(
                ledger_uri=ingest_ledger_uri, sources=ing.outputs["sources"], run_id=run_id
            ).set_display_name("record_ledger")
            on_cpu(uncached(ledger), "ledger")
            ledger.after(exported)

        # Optional: the task-type mix of the pool versus the selected subset.
        with dsl.If(analyse_enabled == True, name="analyse-enabled"):  # noqa: E712
            tasks = analyse(
                pool=pool,
                selected=chosen.outputs["top"],
                report_html=chosen.outputs["html"],
                report_markdown=chosen.outputs["markdown"],
                model=model,
                endpoint=analyse_endpoint,
                endpoint_model=analyse_endpoint_model,
                batch_size=analyse_batch_size,
                gpus=analyse_gpu_count,
            ).set_display_name("analyse")
            on_gpu(tasks, "analyse")
            use_endpoint_key(tasks, storage_secret)

    with dsl.Elif(route == "curate", name="curate"):
        # What decides a score; the index refuses to rank entries that differ in any of it.
        settings = {
            "generate_num_samples": generate_num_samples,
            "generate_temperature": generate_temperature,
            "generate_top_p": generate_top_p,
            "generate_max_new_tokens": generate_max_new_tokens,
            "generate_seed": generate_seed,
            "generate_prompt_format": prompt_format,
            "score_dispersion_weight": score_dispersion_weight,
            "score_anisotropy_weight": score_anisotropy_weight,
        }
        index_args = {"index_uri": curation_index_uri, "model": model, "settings": settings}
        plan = curation_plan(
            pool=ing.outputs["pool"],
            rescore_mismatched=curation_rescore_mismatched,
            budget=select_budget,
            **index_args,
        ).set_display_name("curation_plan")
        on_cpu(plan, "curation")
        plan.set_caching_options(False)
        select_args = {
            "index_uri": curation_index_uri,
            "budget": select_budget,
            "cluster_count": cluster_count,
            "cluster_seed": cluster_seed,
            "cluster_pca_dims": cluster_pca_dims,
            "strategy": select_strategy,
            "run_id": run_id,
        }

        def curated_version(after=None):
            """Select over the whole index (after this run's entry, if any), then the ledger."""
            version = curation_select(**select_args).set_display_name("curation_select")
            on_cpu(version, "curation")
            version.set_caching_options(False)
            if after is not None:
                version.after(after)
            with dsl.If(ingest_ledger_uri != "", name="curation-ledger-given"):
                ledger = record_ledger(
                    ledger_uri=ingest_ledger_uri, sources=ing.outputs["sources"], run_id=run_id
                ).set_display_name("record_ledger")
                on_cpu(ledger, "ledger")
                ledger.after(version).set_caching_options(False)

        with dsl.If(plan.outputs["records"] > 0, name="curation-new-records"):
            todo = plan.outputs["todo"]
            scored = generate_and_score(todo, plan.outputs["records"], "curation-shards")
            emb = embed(pool=todo, model=model, gpus=embed_gpu_count).set_display_name("embed")
            on_gpu(emb, "embed")
            added = curation_add(
                scored=scored.outputs["merged"],
                embeddings=emb.outputs["embeddings"],
                run_id=run_id,
                supersedes=plan.outputs["supersedes"],
                sources=ing.outputs["sources"],
                **index_args,
            ).set_display_name("curation_add")
            on_cpu(added, "curation")
            added.set_caching_options(False)
            curated_version(after=added)
        with dsl.Else(name="curation-all-indexed"):
            curated_version()

    with dsl.Else(name="nothing-new"):
        idle = nothing_to_do(
            pool_prefix=ingest_pool_prefix,
            ledger_uri=ingest_ledger_uri,
            sources=ing.outputs["sources"],
            run_id=run_id,
        ).set_display_name("nothing_to_do")
        on_cpu(uncached(idle), "ledger")
