"""The export stage (adg.stages.export) against a real S3 API (moto's server on loopback): the
subsets and the selection report copied under the export prefix, with a manifest of their sha256.
The selected records handed back in the pool's own shape (`write_selected`) are in
test_handback.py."""

from __future__ import annotations

import hashlib
import json

from helpers import sample_records

from adg.io import storage
from adg.stages import export


def test_export_selection_writes_files_and_manifest(bucket, tmp_path):
    subsets = {}
    for name, n in (("top", 2), ("middle", 1), ("bottom", 2)):
        path = tmp_path / name
        path.write_text(json.dumps(sample_records(n)))
        subsets[name] = path
    report = tmp_path / "report"
    report.write_text(json.dumps({"records": 9, "top": {"count": 2}, "middle": {"count": 1}}))
    prefix = f"s3://{bucket}/exports/run-1"
    manifest_uri = export.export_selection(
        subsets, report, prefix, "run-1", "s3://m/model", {"select_budget": 2}
    )
    manifest = storage.read_json(manifest_uri)
    assert manifest["run_id"] == "run-1" and manifest["model"] == "s3://m/model"
    assert manifest["parameters"] == {"select_budget": 2}
    assert manifest["counts"] == {"records": 9, "top": 2, "middle": 1}
    for name in ("top.json", "middle.json", "bottom.json", "selection_report.json"):
        data = storage.read_bytes(f"{prefix}/{name}")
        assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    assert export.export_selection(subsets, report, "", "r", "m", {}) == ""
