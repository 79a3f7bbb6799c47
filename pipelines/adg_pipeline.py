"""The ADG selection pipeline: ingest → generate → score, ingest → embed → cluster, → select.

Only wiring lives here; every stage is a component in `components/` calling the `adg` library.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset

from components.cluster import cluster
from components.embed import embed
from components.evaluate import evaluate
from components.generate import generate
from components.ingest import ingest
from components.score import score
from components.select import select
from components.train import train

PIPELINE_NAME = "adg-selection"


class Subsets(NamedTuple):
    top: Dataset
    middle: Dataset
    bottom: Dataset
    report: Dataset


@dsl.pipeline(name=PIPELINE_NAME)
def adg_pipeline(
    ingest_input: str,
    model: str = "",
    ingest_limit: int = 0,
    generate_num_samples: int = 5,
    generate_temperature: float = 1.4,
    generate_top_p: float = 0.9,
    generate_max_new_tokens: int = 256,
    generate_seed: int = 0,
    generate_batch_size: int = 8,
    generate_backend: str = "auto",
    generate_prompt_format: str = "alpaca",
    cluster_count: int = 1000,
    cluster_seed: int = 42,
    score_dispersion_weight: float = 0.6,
    score_anisotropy_weight: float = 0.4,
    score_all_metrics: bool = False,
    select_budget: int = 10000,
    select_strategy: str = "exact",
    # --- train and evaluate (run only when train_enabled) ---
    train_enabled: bool = False,
    train_epochs: float = 5.0,
    train_max_steps: int = 0,
    train_batch_size: int = 2,
    train_gradient_accumulation_steps: int = 8,
    train_learning_rate: float = 1e-5,
    train_lr_scheduler: str = "cosine",
    train_warmup_ratio: float = 0.03,
    train_weight_decay: float = 0.0,
    train_model_max_length: int = 2048,
    train_seed: int = 42,
    train_deepspeed: str = "auto",
    train_num_gpus: int = 1,
    train_checkpoint_dir: str = "",
    evaluate_tasks: str = "",
    evaluate_num_fewshot: str = "",
    evaluate_limit: float = 0.0,
    evaluate_include_path: str = "",
    evaluate_baseline: str = "",
    evaluate_backend: str = "auto",
    evaluate_batch_size: str = "auto",
) -> Subsets:
    """Answer Divergence-Guided Selection of an instruction pool.

    Args:
        ingest_input: the pool, a JSON array or JSONL file (local path or s3:// URI).
        model: backbone model: a HF folder or .gguf path (or s3:// prefix); empty = the embedded
            SmolLM2-135M-Instruct.
        ingest_limit: keep only the first N valid records (0 = all).
        generate_num_samples: K, answers sampled per instruction.
        generate_temperature: sampling temperature.
        generate_top_p: nucleus sampling threshold.
        generate_max_new_tokens: longest answer, in tokens.
        generate_seed: sampling seed.
        generate_batch_size: instructions per generation batch.
        generate_backend: auto (vLLM when a GPU and vLLM are present), hf or vllm.
        generate_prompt_format: alpaca or chat.
        cluster_count: number of k-means bins (clamped to the pool size).
        cluster_seed: k-means seed.
        score_dispersion_weight: weight of dispersion D in the score.
        score_anisotropy_weight: weight of anisotropy I in the score.
        score_all_metrics: also write the diagnostic metrics per record.
        select_budget: number of records to select.
        select_strategy: exact (fills the budget) or reference (the published procedure).
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
        train_checkpoint_dir: where checkpoints go so a restarted pod resumes (e.g. on a PVC);
            empty = inside the model output.
        evaluate_tasks: comma-separated lm-eval tasks; empty = BBH, GSM8K, MMLU, TruthfulQA-MC2,
            MBPP, HumanEval.
        evaluate_num_fewshot: empty = the published shots; N for all tasks; or task=N,task=N.
        evaluate_limit: examples per task (0 = all; below 1 = a fraction).
        evaluate_include_path: comma-separated folders of extra lm-eval task YAMLs.
        evaluate_baseline: results JSON (e.g. of the base model) shown side by side in the table.
        evaluate_backend: auto (vLLM when a GPU and vLLM are present), hf or vllm.
        evaluate_batch_size: an integer or auto.
    """
    pool = ingest(pool_uri=ingest_input, limit=ingest_limit).set_display_name("ingest")
    gen = generate(
        pool=pool.outputs["pool"],
        model=model,
        num_samples=generate_num_samples,
        temperature=generate_temperature,
        top_p=generate_top_p,
        max_new_tokens=generate_max_new_tokens,
        seed=generate_seed,
        batch_size=generate_batch_size,
        backend=generate_backend,
        prompt_format=generate_prompt_format,
    ).set_display_name("generate")
    emb = embed(pool=pool.outputs["pool"], model=model).set_display_name("embed")
    bins = cluster(
        embeddings=emb.outputs["embeddings"], count=cluster_count, seed=cluster_seed
    ).set_display_name("cluster")
    scored = score(
        generated=gen.outputs["generated"],
        model=model,
        dispersion_weight=score_dispersion_weight,
        anisotropy_weight=score_anisotropy_weight,
        all_metrics=score_all_metrics,
    ).set_display_name("score")
    chosen = select(
        scored=scored.outputs["scored"],
        clusters=bins.outputs["clusters"],
        budget=select_budget,
        strategy=select_strategy,
    ).set_display_name("select")
    # --- train and evaluate ------------------------------------------------------------------
    with dsl.If(train_enabled == True, name="train-enabled"):  # noqa: E712
        tuned = train(
            data=chosen.outputs["top"],
            base_model=model,
            epochs=train_epochs,
            max_steps=train_max_steps,
            batch_size=train_batch_size,
            gradient_accumulation_steps=train_gradient_accumulation_steps,
            learning_rate=train_learning_rate,
            lr_scheduler=train_lr_scheduler,
            warmup_ratio=train_warmup_ratio,
            weight_decay=train_weight_decay,
            model_max_length=train_model_max_length,
            seed=train_seed,
            deepspeed=train_deepspeed,
            num_gpus=train_num_gpus,
            checkpoint_dir=train_checkpoint_dir,
        ).set_display_name("train")
        evaluate(
            model=tuned.outputs["model"],
            tasks=evaluate_tasks,
            num_fewshot=evaluate_num_fewshot,
            limit=evaluate_limit,
            include_path=evaluate_include_path,
            baseline=evaluate_baseline,
            backend=evaluate_backend,
            batch_size=evaluate_batch_size,
        ).set_display_name("evaluate")
    # --- end of train and evaluate -----------------------------------------------------------
    return Subsets(
        top=chosen.outputs["top"],
        middle=chosen.outputs["middle"],
        bottom=chosen.outputs["bottom"],
        report=chosen.outputs["report"],
    )
