"""cluster: seeded k-means bins over the instruction vectors."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("cluster"), install_kfp_package=False)
def cluster(
    embeddings: Input[Dataset], clusters: Output[Dataset], count: int, seed: int, pca_dims: int = 0
) -> int:
    """Write int32 [N] bin ids as .npy; returns the number of bins used."""
    from adg.stages.cluster import cluster_file

    used = cluster_file(embeddings.path, clusters.path, count=count, seed=seed, pca_dims=pca_dims)
    print(f"cluster: {used} bins")
    clusters.metadata["bins"] = used
    return used
