"""export: the selected subsets and a run manifest (parameters, counts, sha256) to S3."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("export"), install_kfp_package=False)
def export(
    top: Input[Dataset],
    middle: Input[Dataset],
    bottom: Input[Dataset],
    report: Input[Dataset],
    export_uri: str,
    run_id: str,
    model: str,
    parameters: dict,
) -> str:
    """Upload top/middle/bottom.json, selection_report.json, then manifest.json (returns its
    URI); does nothing when `export_uri` is empty."""
    from adg.storage import export_selection

    subsets = {"top": top.path, "middle": middle.path, "bottom": bottom.path}
    manifest_uri = export_selection(subsets, report.path, export_uri, run_id, model, parameters)
    print(f"export: subsets and manifest -> {manifest_uri}" if manifest_uri else "export: skipped")
    return manifest_uri
