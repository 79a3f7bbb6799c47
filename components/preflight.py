"""preflight: the CPU check that runs first, so a run that cannot work fails in seconds, before
any GPU pod is requested."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("preflight"), install_kfp_package=False)
def preflight(parameters: dict, selectors: list, run_id: str, report: Output[Artifact]) -> str:
    """Check the parameters, the object store (reachable, inputs present, targets writable) and
    the model; fail with a one-line reason. Returns the checkpoint prefix the GPU tasks use.
    Uploading `report` is the launcher's own proof that the pipeline root is writable."""
    import json
    import logging

    from adg.preflight import PreflightError, run_preflight

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        params = {**parameters, "selectors": selectors}
        result = run_preflight(params, artifact_uri=report.uri, run_id=run_id)
    except PreflightError as err:
        print(err)
        raise SystemExit(2) from None
    with open(report.path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    return result["checkpoint_uri"]
