"""generate: K sampled answers per instruction (vLLM on GPU, transformers on CPU)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.images import image_for


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
):
    """Append `generated_answers` (K strings) to every record; resumes a half-done output."""
    from adg.generation import SamplingConfig, generate_file

    cfg = SamplingConfig(
        num_samples=num_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
        prompt_format=prompt_format,
    )
    summary = generate_file(pool.path, generated.path, model=model, cfg=cfg, backend=backend)
    print(summary.line())
    generated.metadata.update(records=summary.total, backend=summary.backend)
