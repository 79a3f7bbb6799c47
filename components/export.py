"""export: the selected records in the pool's own shape (`selected`: Parquet with the pool's
schema, or JSONL), and with `export_uri`, the subsets, that file and a run manifest (parameters,
counts, sha256) to S3."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from adg_kfp.components.images import image_for


@dsl.component(base_image=image_for("export"), install_kfp_package=False)
def export(
    top: Input[Dataset],
    middle: Input[Dataset],
    bottom: Input[Dataset],
    report: Input[Dataset],
    pool: Input[Dataset],
    originals: Input[Dataset],
    selected: Output[Dataset],
    export_uri: str,
    run_id: str,
    model: str,
    parameters: dict,
) -> str:
    """Write `selected` (top's records as the pool has them, plus adg_score, adg_dispersion,
    adg_anisotropy); upload top/middle/bottom.json, selection_report.json, selected.parquet or
    selected.jsonl, then manifest.json (returns its URI; "" when `export_uri` is empty)."""
    from adg.stages.export import export_selection, selected_name, write_selected

    n = write_selected(top.path, pool.path, originals.path, selected.path)
    name = selected_name(originals.path)
    selected.metadata.update(records=n, file=name)
    subsets = {"top": top.path, "middle": middle.path, "bottom": bottom.path}
    extra = {name: selected.path}
    manifest_uri = export_selection(
        subsets, report.path, export_uri, run_id, model, parameters, extra
    )
    print(f"export: {n} selected records in the pool's shape ({name})")
    print(f"export: subsets and manifest -> {manifest_uri}" if manifest_uri else "export: no URI")
    return manifest_uri
