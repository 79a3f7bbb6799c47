"""embed: instruction vectors from the model's hidden states, for binning."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("embed"), install_kfp_package=False)
def embed(pool: Input[Dataset], embeddings: Output[Dataset], model: str, gpus: str = "1"):
    """Write float32 [N, hidden] unit-norm instruction vectors as .npy. `gpus`: the pod's GPU count
    ("0": on CPU)."""
    import os

    from adg.io.models import require_gpu
    from adg.parameters import asks_gpus
    from adg.stages.embed import embed_file

    # A task pod of a cluster run (the KFP backend sets KFP_POD_NAME, kfp.local does not) was
    # placed with a GPU: without usable CUDA, fail now rather than crawl on the CPU. A GPU count
    # of "0" placed it on CPU on purpose: no check.
    require_gpu("embed", "KFP_POD_NAME" in os.environ and asks_gpus(gpus))

    shape = embed_file(pool.path, embeddings.path, model=model)
    print(f"embed: {shape[0]} x {shape[1]}")
    embeddings.metadata.update(rows=shape[0], dim=shape[1])
