"""score: dispersion, anisotropy and the ADG score of each record's K answers (one shard), or a
baseline method's score (ifd, superfiltering, random) of every record of the pool (a baseline
needs no generated answers)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("score"), install_kfp_package=False)
def score(
    generated: Input[Dataset],
    scored: Output[Dataset],
    model: str,
    dispersion_weight: float,
    anisotropy_weight: float,
    all_metrics: bool,
    shard_index: int,
    checkpoint_uri: str,
    checkpoint_every: int,
    run_id: str,
    method: str = "adg",
    prompt_format: str = "auto",
    gpus: str = "1",
):
    """Append `dispersion`, `anisotropy`, `score` (or the `method`'s fields) to each record;
    resumes a half-done output, from the object-store checkpoint when `checkpoint_uri` is set.
    `prompt_format`: the prompt ifd and superfiltering condition on (the pool's, resolved once by
    curation_route); `gpus`: the pod's GPU count ("0": on CPU)."""
    import os

    from adg.config import MODEL_FREE_METHODS
    from adg.io.checkpoint import shard_uri
    from adg.io.models import require_gpu
    from adg.method.divergence import ScoreWeights
    from adg.parameters import asks_gpus
    from adg.stages.score import score_file

    # A task pod of a cluster run (the KFP backend sets KFP_POD_NAME, kfp.local does not) was
    # placed with a GPU: without usable CUDA, fail now rather than crawl on the CPU (but
    # a model-free method needs no GPU).
    require_gpu(
        "score",
        "KFP_POD_NAME" in os.environ and method not in MODEL_FREE_METHODS and asks_gpus(gpus),
    )

    stage = "score" if method == "adg" else f"score-{method}"  # separate checkpoints
    weights = ScoreWeights(dispersion=dispersion_weight, anisotropy=anisotropy_weight)
    summary = score_file(
        generated.path,
        scored.path,
        model=model,
        weights=weights,
        all_metrics=all_metrics,
        method=method,
        checkpoint_uri=shard_uri(checkpoint_uri, run_id, stage, shard_index),
        checkpoint_every=checkpoint_every,
        prompt_format=prompt_format,
    )
    print(summary.line())
    scored.metadata.update(records=summary.total, shard=shard_index, method=method)
