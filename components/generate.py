"""generate: K sampled answers per instruction of one shard (vLLM on GPU, transformers on CPU)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("generate"), install_kfp_package=False)
def generate(
    pool: Input[Dataset],
    generated: Output[Dataset],
    model: str,
    num_samples: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int,
    backend: str,
    prompt_format: str,
    tensor_parallel_size: str,
    gpu_memory_utilization: float,
    shard_index: int,
    shard_count: int,
    checkpoint_uri: str,
    checkpoint_every: int,
    run_id: str,
):
    """Append `generated_answers` (K strings) to every record of the shard; resumes a half-done
    output, from the shard's object-store checkpoint when `checkpoint_uri` is set.
    `tensor_parallel_size` is also the pod's GPU count, a string as every pod resource."""
    import os

    from adg.io.checkpoint import shard_uri
    from adg.io.models import require_gpu
    from adg.parameters import asks_gpus, parse_quantity
    from adg.stages.generate import SamplingConfig, generate_file

    # A task pod of a cluster run (the KFP backend sets KFP_POD_NAME, kfp.local does not) was
    # placed with a GPU: without usable CUDA, fail now rather than crawl on the CPU. A GPU count
    # of "0" placed it on CPU on purpose: no check.
    require_gpu("generate", "KFP_POD_NAME" in os.environ and asks_gpus(tensor_parallel_size))

    cfg = SamplingConfig(
        num_samples=num_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
        prompt_format=prompt_format,
    )
    summary = generate_file(
        pool.path,
        generated.path,
        model=model,
        cfg=cfg,
        backend=backend,
        shard_index=shard_index,
        shard_count=shard_count,
        checkpoint_uri=shard_uri(checkpoint_uri, run_id, "generate", shard_index),
        checkpoint_every=checkpoint_every,
        tensor_parallel_size=int(parse_quantity(tensor_parallel_size)),
        gpu_memory_utilization=gpu_memory_utilization,
    )
    print(summary.line())
    generated.metadata.update(records=summary.total, backend=summary.backend, shard=shard_index)
