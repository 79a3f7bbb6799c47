"""preflight: the CPU check that runs first, so a run that cannot work fails in seconds, before
any GPU pod is requested; it also places each GPU stage's pod (a GPU count of "0": on CPU)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("preflight"), install_kfp_package=False)
def preflight(
    parameters: dict,
    selectors: list,
    gpu_node_selector: dict,
    gpu_tolerations: list,
    ingest_input: str,
    ingest_pool_prefix: str,
    ingest_ledger_uri: str,
    model: str,
    generate_backend: str,
    generate_prompt_format: str,
    select_strategy: str,
    evaluate_backend: str,
    gpu_accelerator_type: str,
    storage_secret: str,
    model_cache_pvc: str,
    checkpoint_uri: str,
    export_uri: str,
    generate_tensor_parallel_size: str,
    generate_cpu: str,
    generate_memory: str,
    embed_gpu_count: str,
    embed_cpu: str,
    embed_memory: str,
    score_gpu_count: str,
    score_cpu: str,
    score_memory: str,
    analyse_gpu_count: str,
    analyse_cpu: str,
    analyse_memory: str,
    train_num_gpus: str,
    train_cpu: str,
    train_memory: str,
    evaluate_gpu_count: str,
    evaluate_cpu: str,
    evaluate_memory: str,
    run_id: str,
    report: Output[Artifact],
) -> NamedTuple(
    "Preflight",
    [("checkpoint_uri", str)]
    + [
        (f"{stage}_{what}", kind)
        for stage in ("generate", "embed", "score", "analyse", "train", "evaluate")
        for what, kind in (("gpus", str), ("node_selector", dict), ("tolerations", list))
    ],
):
    """Check the parameters, the object store (reachable, inputs present, targets writable) and
    the model; fail with a one-line reason. Returns the checkpoint prefix the GPU tasks use and
    each GPU stage's placement. Uploading `report` is the launcher's own proof that the pipeline
    root is writable.

    `parameters` holds numbers and flags only: every string parameter comes as its own input,
    since the launcher writes a dict's values into the task's JSON by plain text replacement
    (a quote in a string would break this very task before it could name the parameter)."""
    import json
    import logging
    from collections import namedtuple

    from adg.stages.preflight import PreflightError, placements, run_preflight

    given = dict(locals())
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = {k: v for k, v in given.items() if k not in ("parameters", "run_id", "report")}
    params = {**parameters, **params}
    try:
        result = run_preflight(params, artifact_uri=report.uri, run_id=run_id)
    except PreflightError as err:
        print(err)
        raise SystemExit(2) from None
    placed = placements(params)
    result["placements"] = placed
    with open(report.path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    names, values = ["checkpoint_uri"], [result["checkpoint_uri"]]
    for stage, (gpus, selector, tolerations) in placed.items():
        names += [f"{stage}_gpus", f"{stage}_node_selector", f"{stage}_tolerations"]
        values += [gpus, selector, tolerations]
        print(f"{stage}: {gpus + ' GPU(s)' if gpus else 'on CPU'}")
    return namedtuple("Preflight", names)(*values)
