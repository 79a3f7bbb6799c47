"""The ADG selection pipeline: ingest → generate → score, ingest → embed → cluster, → select.

Only wiring lives here; every stage is a component in `components/` calling the `adg` library.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset

from components.cluster import cluster
from components.embed import embed
from components.generate import generate
from components.ingest import ingest
from components.score import score
from components.select import select

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
    return Subsets(
        top=chosen.outputs["top"],
        middle=chosen.outputs["middle"],
        bottom=chosen.outputs["bottom"],
        report=chosen.outputs["report"],
    )
