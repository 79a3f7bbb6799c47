"""The compiled pipeline (pipelines/adg_pipeline.yaml) as Kubernetes will see it: GPU limits,
node selectors, tolerations, retries, resources, the object-store Secret, images, the fan-out, and
no credential anywhere in it. The first YAML document is the pipeline spec, the second the
kfp-kubernetes platform spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import yaml_documents

from adg.config import GPU_COUNT_PARAMS
from adg_kfp.components.images import STAGE_FAMILY, family_image, image_for
from adg_kfp.pipelines.adg_pipeline import (
    PIPELINE_DISPLAY_NAME,
    RUN_DEADLINE_SECONDS,
    SHARD_PARALLELISM,
)
from adg_kfp.pipelines.local import compile_pipeline
from adg_kfp.pipelines.placement import GPU_RESOURCE, GPU_RETRIES, MODEL_CACHE_PATH
from adg_kfp.pipelines.remote import pipeline_parameters

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "pipelines" / "adg_pipeline.yaml"


def _numbered(name: str, count: int) -> list[str]:
    return [name] + [f"{name}-{i}" for i in range(2, count + 1)]


# Each GPU executor: the preflight output that is its GPU count (the stage's placement). The
# baseline selectors with a model score in a loop per branch (plan_selectors' case "both" and
# "models", with and without training), the curation branch has its own fan-out and embed.
GPU_COUNTS = {"generate": 2, "embed": 2, "analyse": 1, "train": 5, "evaluate": 5}
GPU_EXECUTORS = {
    f"exec-{label}": f"preflight-{stage}_gpus"
    for stage, count in GPU_COUNTS.items()
    for label in _numbered(stage, count)
}
GPU_EXECUTORS |= {
    f"exec-{label}": "preflight-score_gpus"
    for label in ("score", "score-2", "score-4", "score-6", "score-8", "score-10")
}
# The random baseline scores in a CPU task of its own (one per branch that has it): no GPU, no
# node selector, no tolerations, no model cache, the CPU image.
RANDOM_SCORE = {"exec-score-3", "exec-score-5", "exec-score-7", "exec-score-9"}
CURATION_EXECUTORS = {
    "exec-curation-plan",
    "exec-curation-add",
    "exec-curation-select",
    "exec-curation-select-2",
    "exec-record-ledger-2",
    "exec-record-ledger-3",
}
CPU_EXECUTORS = {
    "exec-preflight",
    "exec-ingest",
    "exec-cluster",
    "exec-export",
    "exec-nothing-to-do",
    "exec-plan-selectors",
    "exec-curation-route",
    "exec-record-ledger",
    *_numbered("exec-shard", 2),
    *_numbered("exec-merge", 2),
    *_numbered("exec-select", 9),
    *_numbered("exec-compare", 6),
    *RANDOM_SCORE,
    *CURATION_EXECUTORS,
}


def executor_stage(label: str) -> str:
    """The stage an executor belongs to (its images and resources), from its component's name."""
    if label in RANDOM_SCORE:
        return "score_random"
    name = re.sub(r"-\d+$", "", label.removeprefix("exec-"))
    aliases = {"record-ledger": "ledger", "nothing-to-do": "ledger", "plan-selectors": "compare"}
    return "curation" if name.startswith("curation-") else aliases.get(name, name)


SENTINEL_KEY, SENTINEL_SECRET = "AKIAADGSENTINEL0001", "adg-sentinel-secret-value/0123456789"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[str, dict, dict]:
    """(text, pipeline spec, platform spec), compiled with credentials present in the env."""
    mp = pytest.MonkeyPatch()
    for family in set(STAGE_FAMILY.values()):
        mp.delenv(f"ADG_IMAGE_{family.upper()}", raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", SENTINEL_KEY)
    mp.setenv("AWS_SECRET_ACCESS_KEY", SENTINEL_SECRET)
    try:
        path = tmp_path_factory.mktemp("compiled") / "adg_pipeline.yaml"
        compile_pipeline(path)
    finally:
        mp.undo()
    text = path.read_text()
    spec, platform = yaml_documents(text)
    return text, spec, platform


@pytest.fixture(scope="module")
def executors(compiled):
    return compiled[1]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def k8s(compiled):
    return compiled[2]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def all_tasks(spec: dict) -> dict[str, dict]:
    """Every task of every DAG (the root and the If / ParallelFor sub-DAGs), by component name."""
    tasks = {}
    for component in [spec["root"], *spec["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            tasks[task["componentRef"]["name"]] = task
    return tasks


def test_committed_yaml_is_current(compiled):
    assert COMMITTED.is_file(), "run `make compile` and commit pipelines/adg_pipeline.yaml"
    assert COMMITTED.read_text() == compiled[0], "stale: run `make compile` and commit the YAML"


def test_every_executor_is_placed(executors):
    assert set(executors) == set(GPU_EXECUTORS) | CPU_EXECUTORS


def test_gpu_limits_only_on_gpu_tasks(executors):
    for name, executor in executors.items():
        resources = executor["container"]["resources"]
        if name in GPU_EXECUTORS:
            accel = resources["accelerator"]
            assert "gpu_accelerator_type" in accel["resourceType"]
            assert GPU_EXECUTORS[name] in accel["resourceCount"]
        else:
            assert "accelerator" not in resources, name


def test_cpu_and_memory_requests_and_limits_everywhere(executors):
    for name, executor in executors.items():
        resources = executor["container"]["resources"]
        for key in (
            "resourceCpuRequest",
            "resourceCpuLimit",
            "resourceMemoryRequest",
            "resourceMemoryLimit",
        ):
            assert resources.get(key), f"{name} lacks {key}"
        if name in GPU_EXECUTORS:  # the stage's parameters, each both request and limit
            stage = executor_stage(name)
            for kind in ("Cpu", "Memory"):
                want = f"{{{{$.inputs.parameters['pipelinechannel--{stage}_{kind.lower()}']}}}}"
                assert resources[f"resource{kind}Request"] == want, name
                assert resources[f"resource{kind}Limit"] == want, name


def test_every_pod_resource_reaches_the_driver_as_a_string(compiled):
    """The driver reads a placeholder in a pod's resources or image with GetStringValue(): a
    number would give no GPU limit, or an unparsable CPU or memory (docs/kubernetes.md). So
    every value such a placeholder names arrives as a string: declared STRING by the DAG it
    comes from, or by the task whose output it is; and the run parameters are strings."""
    spec = compiled[1]
    channel = re.compile(r"\$\.inputs\.parameters\['([^']+)'\]")
    components = spec["components"]
    checked = 0
    for dag in [spec["root"], *components.values()]:
        tasks = dag.get("dag", {}).get("tasks", {})
        for task in tasks.values():
            component = components[task["componentRef"]["name"]]
            if "executorLabel" not in component:
                continue
            container = spec["deploymentSpec"]["executors"][component["executorLabel"]]
            container = container["container"]
            resources = container.get("resources", {})
            fields = [container["image"], *resources.values()]
            fields += resources.get("accelerator", {}).values()
            for name in {m for f in fields if isinstance(f, str) for m in channel.findall(f)}:
                source = task["inputs"]["parameters"][name]
                if "componentInputParameter" in source:
                    params = dag["inputDefinitions"]["parameters"]
                    declared = params[source["componentInputParameter"]]
                else:
                    ref = source["taskOutputParameter"]
                    producer = components[tasks[ref["producerTask"]]["componentRef"]["name"]]
                    declared = producer["outputDefinitions"]["parameters"][
                        ref["outputParameterKey"]
                    ]
                assert declared["parameterType"] == "STRING", f"{task['taskInfo']}: {name}"
                checked += 1
    assert checked >= 4 * len(GPU_EXECUTORS)
    params = pipeline_parameters(COMMITTED)
    for stage, count in GPU_COUNT_PARAMS.items():
        for name in (count, f"{stage}_cpu", f"{stage}_memory"):
            assert params[name] == "STRING", name


def test_selectors_tolerations_and_shm_only_on_gpu_tasks(k8s):
    for name in GPU_EXECUTORS:
        cfg = k8s[name]
        selector = cfg["nodeSelector"]["nodeSelectorJson"]
        (toleration,) = cfg["tolerations"]
        toleration = toleration["tolerationJson"]
        # The preflight's placement of the stage (none for a GPU count of "0"); a task output
        # reaches a nested group as its pipelinechannel--<task>-<output> input.
        assert selector["componentInputParameter"].startswith("pipelinechannel--preflight-")
        assert selector["componentInputParameter"].endswith("_node_selector")
        assert toleration["componentInputParameter"].endswith("_tolerations")
        assert cfg["emptyDirMounts"][0]["mountPath"] == "/dev/shm"
    for name in CPU_EXECUTORS:
        cfg = k8s.get(name, {})
        assert "nodeSelector" not in cfg and "tolerations" not in cfg, name


def test_model_cache_pvc_only_on_gpu_tasks(k8s):
    for name in GPU_EXECUTORS:
        (mount,) = k8s[name]["pvcMount"]
        assert mount["mountPath"] == MODEL_CACHE_PATH
        assert mount["pvcNameParameter"]["componentInputParameter"].endswith("model_cache_pvc")
    for name in CPU_EXECUTORS:
        assert "pvcMount" not in k8s.get(name, {}), name


def test_train_checkpoints_default_to_the_cache_pvc(compiled):
    params = compiled[1]["root"]["inputDefinitions"]["parameters"]
    assert params["model_cache_pvc"]["defaultValue"] == "adg-model-cache"
    assert params["train_checkpoint_dir"]["defaultValue"].startswith(MODEL_CACHE_PATH + "/")


def test_retries_with_backoff_only_on_gpu_tasks(compiled):
    tasks = all_tasks(compiled[1])
    for name in GPU_EXECUTORS:
        policy = tasks[name.replace("exec-", "comp-")]["retryPolicy"]
        assert policy["maxRetryCount"] == GPU_RETRIES
        assert policy["backoffDuration"] and policy["backoffFactor"] > 1
        # Argo counts maxDuration from the first attempt's start: a shard preempted after
        # hours of work must still be retried, until the run's own deadline.
        assert policy["backoffMaxDuration"] == f"{RUN_DEADLINE_SECONDS}s"
    for name in CPU_EXECUTORS:
        assert "retryPolicy" not in tasks[name.replace("exec-", "comp-")], name


def test_object_store_secret_as_env(executors, k8s):
    """Every task: the launcher in each pod reads an s3:// pipeline root with these credentials
    when no kfp-launcher ConfigMap names a Secret (docs/kubernetes.md)."""
    for name in executors:
        envs = k8s[name]["secretAsEnv"]
        for entry in envs:
            param = entry["secretNameParameter"]["componentInputParameter"]
            assert param.endswith("storage_secret")
        required = next(e for e in envs if not e["optional"])
        optional = next(e for e in envs if e["optional"])
        assert {m["envVar"] for m in required["keyToEnv"]} == {
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        }
        assert "AWS_ENDPOINT_URL" in {m["envVar"] for m in optional["keyToEnv"]}


def test_no_credentials_in_the_compiled_pipeline(compiled, executors):
    text = compiled[0]
    assert SENTINEL_KEY not in text and SENTINEL_SECRET not in text
    for name, executor in executors.items():
        env = {e["name"] for e in executor["container"].get("env", [])}
        assert not env & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, name


def test_images_come_from_images_env(executors):
    for name, executor in executors.items():
        stage = executor_stage(name)
        if name in RANDOM_SCORE:  # model-free: the CPU image, not the GPU one
            assert executor["container"]["image"] == family_image("cpu"), name
            continue
        assert executor["container"]["image"] == image_for(stage), name


def test_the_random_baseline_mounts_no_model_cache(k8s):
    for name in RANDOM_SCORE:
        cfg = k8s.get(name, {})
        assert "pvcMount" not in cfg and "nodeSelector" not in cfg and "tolerations" not in cfg
        assert "emptyDirMounts" not in cfg, name
        assert [e["secretNameParameter"] for e in cfg["secretAsEnv"]]  # the object store only


def test_fan_out_shape(compiled):
    spec = compiled[1]
    tasks = all_tasks(spec)
    loop = tasks["comp-for-loop-2"]
    assert loop["iteratorPolicy"]["parallelismLimit"] == SHARD_PARALLELISM
    loop_tasks = set(spec["components"]["comp-for-loop-2"]["dag"]["tasks"])
    assert loop_tasks == {"generate", "score"}
    merge_inputs = spec["components"]["comp-merge"]["inputDefinitions"]["artifacts"]
    assert merge_inputs["shards"]["isArtifactList"] is True
    # embed and cluster run once, outside the loop.
    assert {"embed", "cluster", "merge", "select"} <= set(
        next(
            c for c in spec["components"].values() if "embed" in c.get("dag", {}).get("tasks", {})
        )["dag"]["tasks"]
    )


def test_nothing_new_branch_and_ledger_after_select(compiled):
    spec = compiled[1]
    tasks = all_tasks(spec)
    conditions = [t["triggerPolicy"]["condition"] for t in tasks.values() if "triggerPolicy" in t]
    # New files and no curation index: the batch branch; none: nothing_to_do.
    assert any("curation-route-route'] == 'batch'" in c for c in conditions)
    route = tasks["comp-curation-route"]["inputs"]["parameters"]["new_files"]
    assert route["taskOutputParameter"]["producerTask"] == "ingest"
    assert "comp-nothing-to-do" in tasks
    # record_ledger sits in its own dsl.If, which waits for export, which waits for select.
    (group,) = [
        name
        for name, comp in spec["components"].items()
        if "record-ledger" in comp.get("dag", {}).get("tasks", {})
    ]
    assert tasks[group]["dependentTasks"] == ["export"]
    assert tasks["comp-export"]["dependentTasks"] == ["select"]


def test_analyse_writes_the_task_mix_into_selects_report(compiled):
    # In a cluster the report with the task mix is the analyse task's HTML / Markdown artifact.
    # (Inside its dsl.If, select's outputs arrive as channels of the enclosing group.)
    artifacts = all_tasks(compiled[1])["comp-analyse"]["inputs"]["artifacts"]
    for name, output in (("report_html", "html"), ("report_markdown", "markdown")):
        assert artifacts[name]["componentInputArtifact"] == f"pipelinechannel--select-{output}"


def test_parameters_are_documented(compiled):
    params = compiled[1]["root"]["inputDefinitions"]["parameters"]
    for name, param in params.items():
        assert param.get("description"), f"pipeline parameter {name} is not documented"
    for name in ("shard_count", "gpu_node_selector", "gpu_tolerations", "storage_secret"):
        assert name in params


# --- first real run: caching, preflight, deadline, UI ----------------------------------------

# Tasks whose result depends on the world outside their inputs: a KFP cache hit would skip new
# pool files under the prefix, re-record the ledger, skip an export or a check.
OUTSIDE_WORLD = {"preflight", "ingest", "export", "record-ledger", "nothing-to-do"}


def test_tasks_with_outside_effects_are_never_cached(compiled):
    tasks = all_tasks(compiled[1])
    for name in OUTSIDE_WORLD:
        options = tasks[f"comp-{name}"].get("cachingOptions", {})
        assert not options.get("enableCache"), f"{name} is cached"
    # The pure, artifact-keyed tasks stay cacheable.
    for name in ("merge", "cluster", "select"):
        assert tasks[f"comp-{name}"]["cachingOptions"]["enableCache"] is True, name


def test_preflight_runs_first_and_everything_waits_for_it(compiled):
    spec = compiled[1]
    root = spec["root"]["dag"]["tasks"]
    assert "dependentTasks" not in root["preflight"]
    assert root["ingest"]["dependentTasks"] == ["preflight"]
    # Every other root task (the branches) depends on ingest, so on preflight.
    for name, task in root.items():
        if name not in ("preflight", "ingest"):
            assert "ingest" in task.get("dependentTasks", []), name
    # The GPU tasks' checkpoint prefix is preflight's output (resolved under the pipeline root).
    for name in ("generate", "score"):
        param = all_tasks(spec)[f"comp-{name}"]["inputs"]["parameters"]["checkpoint_uri"]
        assert param["componentInputParameter"] == "pipelinechannel--preflight-checkpoint_uri"


def test_accelerator_resource_is_a_parameter(compiled):
    params = compiled[1]["root"]["inputDefinitions"]["parameters"]
    assert params["gpu_accelerator_type"]["defaultValue"] == GPU_RESOURCE


def test_run_deadline_fails_a_run_that_cannot_schedule(compiled):
    config = compiled[2]["platforms"]["kubernetes"]["pipelineConfig"]
    assert config["activeDeadlineSeconds"] == RUN_DEADLINE_SECONDS


def test_ui_names(compiled):
    spec = compiled[1]
    assert spec["pipelineInfo"]["displayName"] == PIPELINE_DISPLAY_NAME
    assert spec["pipelineInfo"]["description"]
    names = {t["taskInfo"]["name"] for t in all_tasks(spec).values()}
    assert {"shards", "baseline-selectors"} <= names


def test_curation_branch(compiled):
    """With a curation index: plan → [generate → score] → merge, embed → add → select over the
    index → ledger; the tasks that read or write the index are never cached."""
    spec = compiled[1]
    tasks = all_tasks(spec)
    conditions = [t["triggerPolicy"]["condition"] for t in tasks.values() if "triggerPolicy" in t]
    assert any("curation-route-route'] == 'curate'" in c for c in conditions)
    assert any("curation-plan-records']) > 0" in c for c in conditions)
    for name in CURATION_EXECUTORS:
        assert tasks[name.replace("exec-", "comp-")]["cachingOptions"] == {}, name
    assert sorted(tasks["comp-curation-add"]["dependentTasks"]) == ["embed-2", "merge-2"]
    assert tasks["comp-curation-select"]["dependentTasks"] == ["curation-add"]
    ledger_groups = {
        name: comp
        for name, comp in spec["components"].items()
        if {"record-ledger-2", "record-ledger-3"} & set(comp.get("dag", {}).get("tasks", {}))
    }
    assert {tasks[g]["dependentTasks"][0] for g in ledger_groups} == {
        "curation-select",
        "curation-select-2",
    }
    loop = next(
        c for c in spec["components"].values() if "generate-2" in c.get("dag", {}).get("tasks", {})
    )
    assert set(loop["dag"]["tasks"]) == {"generate-2", "score-10"}
