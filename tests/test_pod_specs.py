"""The pods a KFP backend gives the compiled pipelines' tasks, rendered with the driver's own rules
(tests/kfp_driver.py, transcribed from backend/src/v2/driver/ of the minimum backend we claim) for
realistic runs: the defaults, and a run that asks for 2 GPUs per pod on a tainted, labelled AMD or
NVIDIA node pool with baselines side by side. Every GPU stage's pod gets its GPU limit, CPU and
memory, node selector, tolerations, the object-store Secret, the model cache and its image;
every other pod gets no GPU and nothing that pins it to a GPU node; `random`'s scoring pod none
either."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import yaml_documents
from kfp_driver import Driver, DriverError, parse_quantity

from adg.config import GPU_COUNT_PARAMS, GPU_PODS, MODEL_FREE_METHODS
from adg_kfp.components.compare import plan_selectors
from adg_kfp.components.images import family_image, image_for
from adg_kfp.components.shard import shard
from adg_kfp.pipelines.placement import GPU_RESOURCE, MODEL_CACHE_PATH, SECRET_REQUIRED_KEYS

REPO = Path(__file__).resolve().parents[1]
FULL = REPO / "pipelines" / "adg_pipeline.yaml"
SELECT = REPO / "pipelines" / "adg_select.yaml"
GPU_STAGES = set(GPU_PODS)
# Components whose Python function is not named after its stage (components/images.py).
STAGE_OF = {
    "record_ledger": "ledger",
    "nothing_to_do": "ledger",
    "plan_selectors": "compare",
    "curation_route": "curation",
    "curation_plan": "curation",
    "curation_add": "curation",
    "curation_select": "curation",
}
RUNNABLE = {
    "shard": shard,
    "plan_selectors": plan_selectors,
}


def preflight_placement(inputs: dict) -> dict:
    """What the preflight answers, by the rule the pipeline documents (not by its code): each GPU
    stage on the run's GPUs, node selector and tolerations; a GPU count of "0" on CPU: no
    accelerator count (so no limit at all), no selector, no tolerations."""
    out = {"checkpoint_uri": ""}
    for stage, param in GPU_COUNT_PARAMS.items():
        count = inputs[param]
        on_cpu = parse_quantity(count if isinstance(count, str) else str(count)) == 0
        out[f"{stage}_gpus"] = "" if on_cpu else count
        out[f"{stage}_node_selector"] = {} if on_cpu else inputs["gpu_node_selector"]
        out[f"{stage}_tolerations"] = [] if on_cpu else inputs["gpu_tolerations"]
    return out


# What the world answers at run time: ingest read 40 records from one file; the curation index
# has 12 records to score; the route and the pool's prompt format.
KNOWN = {
    "preflight": preflight_placement,
    "ingest": {"records": 40, "new_files": 1, "sources": ["s3://pools/a.jsonl"]},
    "curation_route": {"route": "batch", "prompt_format": "chat"},
    "curation_plan": {"records": 12, "supersedes": []},
}
SELECTOR = {"cloud.google.com/gke-accelerator": "nvidia-l4"}
TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
TWO_GPUS = {
    **{param: "2" for param in GPU_COUNT_PARAMS.values()},
    "score_memory": "48Gi",
    "train_cpu": "16",
    "gpu_node_selector": SELECTOR,
    "gpu_tolerations": TOLERATIONS,
    "selectors": ["adg", "random", "ifd"],
    "storage_secret": "team-a-s3",
    "model_cache_pvc": "team-a-models",
}


def docs(path: Path) -> list[dict]:
    return list(yaml_documents(path.read_text()))


def render(path: Path, arguments: dict, spec_docs: list[dict] | None = None):
    return Driver(spec_docs or docs(path), RUNNABLE, KNOWN).pods(arguments)


def expected(arguments: dict) -> dict:
    """The run's effective pod parameters: its arguments over the pipeline's defaults."""
    params = {
        "gpu_node_selector": {},
        "gpu_tolerations": [],
        "gpu_accelerator_type": GPU_RESOURCE,
        "storage_secret": "adg-object-store",
        "model_cache_pvc": "adg-model-cache",
    }
    for stage, pod in GPU_PODS.items():
        params |= {GPU_COUNT_PARAMS[stage]: pod.gpus, f"{stage}_cpu": pod.cpu}
        params[f"{stage}_memory"] = pod.memory
    return params | arguments


def method(pod) -> str:
    return pod.inputs.get("method", "adg")


def check_pods(pods, arguments: dict) -> None:
    want = expected(arguments)
    accelerator = want["gpu_accelerator_type"]
    secret_env = {(env, want["storage_secret"], env) for env in SECRET_REQUIRED_KEYS}
    stages_seen = set()
    for pod in pods:
        env = {(e, s, k) for e, s, k, optional in pod.secret_env if optional is False}
        assert secret_env <= env, f"{pod.task}: the object-store Secret"
        if pod.function in GPU_STAGES and method(pod) not in MODEL_FREE_METHODS:
            stage = pod.function
            stages_seen.add(stage)
            gpus = parse_quantity(want[GPU_COUNT_PARAMS[stage]])
            if gpus == 0:  # on CPU: no accelerator limit, no selector, no tolerations
                assert accelerator not in pod.limits, pod.task
                assert pod.node_selector == {} and pod.tolerations == [], pod.task
            else:
                assert pod.limits[accelerator] == gpus > 0, pod.task
                assert pod.node_selector == want["gpu_node_selector"], pod.task
                assert pod.tolerations == want["gpu_tolerations"], pod.task
            for resource in ("cpu", "memory"):
                value = parse_quantity(want[f"{stage}_{resource}"])
                assert pod.requests[resource] == pod.limits[resource] == value, pod.task
            assert pod.pvcs == {MODEL_CACHE_PATH: want["model_cache_pvc"]}, pod.task
            assert pod.empty_dirs["/dev/shm"]["medium"] == "Memory", pod.task
            assert pod.image == image_for(stage), pod.task
        elif pod.function == "score":  # the model-free baseline: a CPU task, CPU image
            assert set(pod.limits) == set(pod.requests) == {"cpu", "memory"}, pod.task
            assert not pod.node_selector and not pod.tolerations, pod.task
            assert not pod.pvcs and not pod.empty_dirs, pod.task  # no model cache: no model
            assert pod.image == family_image("cpu"), pod.task
        else:
            assert set(pod.limits) == set(pod.requests) == {"cpu", "memory"}, pod.task
            assert pod.requests["memory"] <= pod.limits["memory"], pod.task
            assert not pod.node_selector and not pod.tolerations and not pod.pvcs, pod.task
            assert pod.image == image_for(STAGE_OF.get(pod.function, pod.function)), pod.task
    return stages_seen


@pytest.mark.parametrize("arguments", [{}, TWO_GPUS], ids=["defaults", "two-gpus"])
def test_full_pipeline_pods(arguments):
    pods = render(FULL, arguments)
    seen = check_pods(pods, arguments)
    assert seen == GPU_STAGES  # every GPU stage was rendered (all branches are)
    gpu_pods = [p for p in pods if p.function in GPU_STAGES]
    count = "2" if arguments else "1"
    assert {p.limits.get(GPU_RESOURCE) for p in gpu_pods if method(p) == "adg"} == {Decimal(count)}
    if arguments:  # the baselines: random on CPU, ifd on the GPU
        baselines = {method(p): p for p in pods if p.function == "score" and method(p) != "adg"}
        assert set(baselines) == {"random", "ifd"}
        assert GPU_RESOURCE not in baselines["random"].limits and not baselines["random"].pvcs
        assert baselines["ifd"].limits[GPU_RESOURCE] == 2
        assert baselines["ifd"].node_selector == SELECTOR


ALL_CPU = {
    **{param: "0" for param in GPU_COUNT_PARAMS.values()},
    "gpu_node_selector": SELECTOR,
    "gpu_tolerations": TOLERATIONS,
    "selectors": ["adg", "random", "ifd", "superfiltering"],
    "train_cpu": "16",
    "score_memory": "8Gi",
}


def test_an_all_cpu_run_asks_no_gpu_anywhere():
    """Every GPU count "0": the way to try the pipeline on a cluster without GPUs. No pod asks for
    a GPU or carries the GPU node selector or tolerations; each GPU stage keeps its image, its CPU
    and memory and the model cache."""
    pods = render(FULL, ALL_CPU)
    seen = check_pods(pods, ALL_CPU)
    assert seen == GPU_STAGES
    for pod in pods:
        assert not any("gpu" in resource for resource in pod.limits), pod.task
        assert not pod.node_selector and not pod.tolerations, pod.task
    embed = next(p for p in pods if p.function == "embed")
    assert embed.pvcs == {MODEL_CACHE_PATH: "adg-model-cache"} and embed.requests["cpu"] == 4


def test_select_pipeline_pods_with_an_amd_accelerator():
    arguments = {
        "ingest_input": "s3://pools/a.jsonl",
        "select_budget": 10,
        "gpu_accelerator_type": "amd.com/gpu",
        "gpu_node_selector": {"amd.com/gpu.present": "true"},
        "gpu_tolerations": [{"key": "amd.com/gpu", "operator": "Exists"}],
        "selectors": ["adg", "random"],
    }
    pods = render(SELECT, arguments)
    seen = check_pods(pods, {k: v for k, v in arguments.items() if k.startswith("gpu_")})
    assert seen == GPU_STAGES
    assert not any(GPU_RESOURCE in p.limits for p in pods)


def test_a_number_parameter_gives_no_cpu():
    """The failure the string parameters prevent: the driver reads a number as "", an unparsable
    CPU quantity that fails the task. (A GPU count reaches the pods through the preflight's
    string outputs, its text either way.)"""
    spec_docs = docs(FULL)
    numbered = copy.deepcopy(spec_docs)
    for component in [numbered[0]["root"], *numbered[0]["components"].values()]:
        params = component.get("inputDefinitions", {}).get("parameters", {})
        for name, param in params.items():
            if name.removeprefix("pipelinechannel--") in ("score_gpu_count", "score_cpu"):
                param["parameterType"] = "NUMBER_INTEGER"
                if "defaultValue" in param:
                    param["defaultValue"] = int(param["defaultValue"])
    with pytest.raises(DriverError, match="resourceCpu"):
        render(FULL, {}, numbered)
    score_cpu = numbered[0]["root"]["inputDefinitions"]["parameters"]["score_cpu"]
    score_cpu["parameterType"] = "STRING"
    score_cpu["defaultValue"] = "4"
    for component in numbered[0]["components"].values():
        param = component.get("inputDefinitions", {}).get("parameters", {})
        for name in ("pipelinechannel--score_cpu", "score_cpu"):  # the latter: preflight's
            if name in param:
                param[name]["parameterType"] = "STRING"
    pods = render(FULL, {}, numbered)
    scores = [p for p in pods if p.function == "score" and method(p) != "random"]
    assert scores and all(p.limits[GPU_RESOURCE] == 1 for p in scores)
    assert all(p.requests["cpu"] == 4 for p in scores)


def test_a_number_for_a_string_parameter_is_refused_like_the_api_server():
    with pytest.raises(DriverError, match="refuses score_gpu_count=2"):
        render(FULL, {"score_gpu_count": 2})


def test_a_bad_quantity_fails_like_the_driver():
    with pytest.raises(DriverError, match=r"resourceMemory\w+: 'lots'"):
        render(FULL, {"generate_memory": "lots"})


# --- the transcription's own rules, each against the driver's source ----------------------------


def test_the_transcriptions_quantity_parser_is_apimachinerys():
    """Its own parser (not the product's): apimachinery's examples (quantity_test.go
    TestQuantityParse and its invalid list), and the same verdict and value as the product's
    parser on a grammar-built corpus (two transcriptions of quantity.go that share no code)."""
    from adg.errors import InputError
    from adg.parameters import parse_quantity as product_parse

    accepted = {"0": 0, "1Ki": 1024, "100.035k": 100035, "1.3E+6": 1300000, ".": 0, "-.": 0}
    accepted |= {"1.G": 10**9, "3.001n": Decimal("4e-9"), "0.5Mi": 2**19, "Gi": 0, "12E": 12e18}
    for text, value in accepted.items():
        assert parse_quantity(text) == Decimal(value), text
    for text in ["1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01e-", " 1", "1 "]:
        with pytest.raises(DriverError):
            parse_quantity(text)
    for number in ["", "0", "7", "-2", "+0.5", "1.", ".25", "00012.500"]:
        for suffix in ["", "n", "m", "k", "E", "Ki", "Ei", "e3", "E-12", "e+2", "ki", "e", "Mi5"]:
            text = number + suffix
            try:
                ours = parse_quantity(text)
            except DriverError:
                with pytest.raises(InputError):
                    product_parse(text)
                continue
            assert product_parse(text) == ours, text


def test_an_empty_secret_name_fails_every_task():
    """resolveInputParameterStr (resolve.go 501-525, called at k8s.go 367): the real backend fails
    the task on an empty Secret name; no pod is rendered with name ''."""
    with pytest.raises(DriverError, match="secret name: expected a non-empty string"):
        render(FULL, {"storage_secret": ""})
    with pytest.raises(DriverError, match="pvc name: expected a non-empty string"):
        render(FULL, {"model_cache_pvc": ""})


def test_tolerations_are_decoded_as_kubernetes_tolerations():
    """k8s.go 256/271: json.Unmarshal into k8score.Toleration."""
    odd = [{"KEY": "nvidia.com/gpu", "Operator": "Exists", "colour": "blue", "effect": None}]
    pods = render(FULL, {"gpu_tolerations": odd})
    embed = next(p for p in pods if p.function == "embed")
    assert embed.tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    bad = [{"key": "nvidia.com/gpu", "effect": "NoExecute", "tolerationSeconds": "60"}]
    with pytest.raises(DriverError, match="tolerationSeconds"):
        render(FULL, {"gpu_tolerations": bad})


def test_a_quantity_with_a_space_fails_the_task():
    with pytest.raises(DriverError, match="resourceCpu"):
        render(FULL, {"embed_cpu": " 4"})
