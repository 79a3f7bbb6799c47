"""The selection-only pipeline (pipelines/adg_select.yaml): a handful of fields for a first run,
the full pipeline's graph, placement and caching underneath, and a real local run through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import sample_records, write_jsonl, yaml_documents

from adg.cli.kfp import PIPELINE_YAML
from adg_kfp.pipelines import remote
from adg_kfp.pipelines.adg_pipeline import RUN_DEADLINE_SECONDS
from adg_kfp.pipelines.local import PIPELINES, compile_pipeline
from adg_kfp.pipelines.select_pipeline import SELECT_DISPLAY_NAME, SELECT_PIPELINE_NAME

REPO = Path(__file__).resolve().parents[1]
FIELDS = {
    "ingest_input",
    "select_budget",
    "model",
    "shard_count",
    "generate_prompt_format",
    "selectors",
    "export_uri",
    "gpu_node_selector",
    "gpu_tolerations",
    "gpu_accelerator_type",
}


def _docs(path: Path) -> list[dict]:
    return list(yaml_documents(path.read_text()))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, tuple[str, list[dict]]]:
    """{pipeline name: (text, [spec, platform spec])}, compiled now from images.env."""
    out = {}
    folder = tmp_path_factory.mktemp("compiled")
    for name in PIPELINES:
        path = folder / f"{name}.yaml"
        compile_pipeline(path, name)
        out[name] = (path.read_text(), _docs(path))
    return out


def test_the_cli_and_the_compiler_know_the_same_pipelines(compiled):
    assert set(PIPELINE_YAML) == set(PIPELINES) == {"full", "select"}
    for name, (text, _) in compiled.items():
        committed = REPO / PIPELINE_YAML[name]
        assert committed.read_text() == text, f"stale {committed}: run `make compile`"


def test_a_handful_of_fields_named_as_in_the_full_pipeline(compiled):
    spec = compiled["select"][1][0]
    full = compiled["full"][1][0]["root"]["inputDefinitions"]["parameters"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == FIELDS
    for name, param in params.items():
        assert param["parameterType"] == full[name]["parameterType"], name
        assert param.get("description"), f"{name} is not documented"
    # The form asks for the pool and the budget; the rest have defaults.
    path = REPO / PIPELINE_YAML["select"]
    assert remote.required_parameters(path) == ["ingest_input", "select_budget"]
    assert spec["pipelineInfo"]["name"] == SELECT_PIPELINE_NAME
    assert spec["pipelineInfo"]["displayName"] == SELECT_DISPLAY_NAME
    assert "Training" in spec["pipelineInfo"]["description"]


def test_the_same_graph_placement_and_caching_underneath(compiled):
    (select_spec, select_platform), (full_spec, full_platform) = (
        compiled["select"][1],
        compiled["full"][1],
    )
    # One task, the full pipeline as a nested graph; every executor, its image, resources and
    # Kubernetes placement exactly the full pipeline's.
    (task,) = select_spec["root"]["dag"]["tasks"].values()
    nested = select_spec["components"][task["componentRef"]["name"]]
    assert nested["dag"] == full_spec["root"]["dag"]
    assert select_spec["deploymentSpec"] == full_spec["deploymentSpec"]
    assert select_platform["platforms"]["kubernetes"] == full_platform["platforms"]["kubernetes"]
    assert (
        select_platform["platforms"]["kubernetes"]["pipelineConfig"]["activeDeadlineSeconds"]
        == RUN_DEADLINE_SECONDS
    )
    # Every field reaches the nested pipeline's parameter of the same name.
    assert {k: v["componentInputParameter"] for k, v in task["inputs"]["parameters"].items()} == {
        name: name for name in FIELDS
    }
    # The parameters left out keep the full pipeline's defaults inside the nested graph.
    inner = nested["inputDefinitions"]["parameters"]
    full = full_spec["root"]["inputDefinitions"]["parameters"]
    for name in set(full) - FIELDS:
        assert inner[name].get("defaultValue") == full[name].get("defaultValue"), name


def test_submit_refuses_a_missing_required_field():
    path = REPO / PIPELINE_YAML["select"]
    with pytest.raises(remote.RemoteError, match=r"needs --param select_budget=\.\.\."):
        remote.parse_params(["ingest_input=s3://pools/a.jsonl"], path)
    assert remote.parse_params(["ingest_input=s3://p/a.jsonl", "select_budget=5"], path) == {
        "ingest_input": "s3://p/a.jsonl",
        "select_budget": 5,
    }
    # The full pipeline: everything has a default.
    assert remote.required_parameters(REPO / PIPELINE_YAML["full"]) == []


def test_compile_cli_picks_the_pipeline(tmp_path, capsys):
    from adg.cli import main

    out = tmp_path / "select.yaml"
    assert main(["compile", "--pipeline", "select", "--output", str(out)]) == 0
    assert "compiled pipeline (select)" in capsys.readouterr().out
    assert out.read_text() == (REPO / PIPELINE_YAML["select"]).read_text()


@pytest.mark.kfp_local
def test_a_first_run_with_only_the_required_fields(tmp_path, tiny_model_dir):
    """kfp.local runs the nested graph; the parameters not exposed take the full pipeline's
    defaults (no training, no ledger), and select writes the subsets. (A tiny model stands in
    for the embedded one.)"""
    from kfp import local

    from adg_kfp.pipelines.select_pipeline import select_pipeline

    pool = write_jsonl(tmp_path / "pool.jsonl", sample_records(8))
    root = tmp_path / "root"
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
    )
    select_pipeline(ingest_input=str(pool), select_budget=3, model=str(tiny_model_dir))
    (run,) = root.glob("adg-select-*")
    ran = {p.name for p in run.iterdir()}  # a loop's tasks sit in one folder per iteration
    ran |= {p.name for p in run.glob("for-loop-*/*")}
    assert {"preflight", "ingest", "generate", "score", "embed", "cluster", "select"} <= ran
    assert not ran & {"train", "evaluate", "record-ledger", "analyse", "compare"}
    top = json.loads((run / "select" / "top").read_text())
    assert len(top) == 3 and all("dispersion" in r for r in top)


def test_submit_compiles_the_chosen_pipeline_and_turns_caching_off_in_it():
    """`adg submit/schedule --pipeline select` without --package: the selection-only pipeline is
    compiled now; with caching off, the nested graph's tasks are uncached too."""
    with remote._Package(None, cache=False, pipeline="select") as pkg:
        # compiled once: `source` keeps the compiled caching, `send()` is the copy without it
        for path, cache in ((pkg.source, True), (pkg.send(), False)):
            spec = next(yaml_documents(path.read_text()))
            assert set(remote.pipeline_parameters(path)) == FIELDS
            tasks = [
                t
                for c in [spec["root"], *spec["components"].values()]
                for t in c.get("dag", {}).get("tasks", {}).values()
            ]
            cached = [t for t in tasks if t.get("cachingOptions", {}).get("enableCache")]
            assert bool(cached) is cache
