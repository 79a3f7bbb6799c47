"""The one check of a run's parameters (adg.parameters): its quantity parser against apimachinery's
own accepted and refused examples and against the `kubernetes` Python client's parse_quantity, and
the same one-line refusal from the in-cluster preflight, `adg submit` and `adg schedule`."""

from __future__ import annotations

import itertools
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from helpers import yaml_documents

from adg.cli import main
from adg.errors import InputError
from adg.parameters import DICT_CONSTANT_STRINGS, check, decode_toleration, parse_quantity
from adg.stages.preflight import PreflightError, run_preflight
from adg_kfp.pipelines import remote

REPO = Path(__file__).resolve().parents[1]
PACKAGES = [REPO / "pipelines" / "adg_pipeline.yaml", REPO / "pipelines" / "adg_select.yaml"]
KI, MI, GI, TI = 2**10, 2**20, 2**30, 2**40

# k8s.io/apimachinery pkg/api/resource/quantity_test.go, TestQuantityParse (its table's inputs and
# the values they parse to) and the `invalid` list after it (commit eed236ce, lines 268-547).
APIMACHINERY_ACCEPTS = {
    "0": 0,
    "0n": 0,
    "0Ki": 0,
    "0Ti": 0,
    "1Ki": KI,
    "8Ki": 8 * KI,
    "7Mi": 7 * MI,
    "6Gi": 6 * GI,
    "100Ti": 100 * TI,
    "5n": Decimal("5e-9"),
    "4u": Decimal("4e-6"),
    "3m": Decimal("0.003"),
    "50k": 50_000,
    "40T": 40 * 10**12,
    "1E": 10**18,
    "1E-3": Decimal("0.001"),
    "1e3": 1000,
    "1E18": 10**18,
    "100.035k": 100_035,
    "0.0005k": Decimal("0.5"),
    "0.5e-2": Decimal("0.005"),
    "1.3E+6": 1_300_000,
    "1.53E12": 153 * 10**10,
    "6.987654321G": 6_987_654_321,
    "1.01E": 101 * 10**16,
    "3.001n": Decimal("4e-9"),  # rounded up to the nano
    "0.0000000001": Decimal("1e-9"),
    "0.00000012345": Decimal("124e-9"),
    "12E": 12 * 10**18,
    "100.035Ki": Decimal("102435.84"),
    "0.5Mi": MI // 2,
    "0.025Ti": Decimal("27487790694.4"),
    ".001": Decimal("0.001"),
    ".0001k": Decimal("0.1"),
    "1.": 1,
    "1.G": 10**9,
    # TestParseQuantityString: "." and "-." are zero.
    ".": 0,
    "-.": 0,
}
APIMACHINERY_REFUSES = [
    "1.1.M",
    "1+1.0M",
    "0.1mi",
    "0.1am",
    "aoeu",
    ".5i",
    "1i",
    "-3.01i",
    "-3.01e-",
    " 1",  # "trailing whitespace is forbidden"
    "1 ",
    "",
]


@pytest.mark.parametrize(("text", "value"), APIMACHINERY_ACCEPTS.items())
def test_apimachinery_accepted_examples(text, value):
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", APIMACHINERY_REFUSES)
def test_apimachinery_refused_examples(text):
    with pytest.raises(InputError, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_same_values_as_the_kubernetes_python_client():
    """Every quantity of a grammar-built corpus: where the Python client parses it, the value is
    the same. The client is laxer than apimachinery (Python's Decimal accepts surrounding spaces,
    "NaN", "1_0" and a number before an exponent suffix); those, refused here, are listed."""
    from kubernetes.utils.quantity import parse_quantity as client_parse

    numbers = ["0", "1", "12", "007", "1.5", ".5", "2.", "+3", "-4", "0.25"]
    suffixes = ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti", "e3", "E-2", "e+1"]
    compared = 0
    for number, suffix in itertools.product(numbers, suffixes):
        text = number + suffix
        ours = parse_quantity(text)
        try:
            theirs = client_parse(text)
        except ValueError:
            continue  # the client refuses "1e3"-style exponents after some numbers
        assert ours == theirs, text
        compared += 1
    assert compared > 100
    for laxer in (" 4", "4 ", "NaN", "1_0", "1e3k", "Infinity"):
        with pytest.raises(InputError):
            parse_quantity(laxer)
        client_parse(laxer)  # the client takes it; the driver would fail the task on it


REFUSED = {
    "1.5": "a whole number of GPUs",
    "-1": "a whole number of GPUs",
    "24 GB": "not a whole number of GPUs",
    "4 cores": "not a whole number of GPUs",
    " 4": "not a whole number of GPUs",
}
ACCEPTED = ["500m", "24Gi", "1e3", "0"]


def _preflight_problem(arguments: dict) -> str:
    with pytest.raises(PreflightError) as err:
        run_preflight(arguments)
    line = str(err.value)
    assert "\n" not in line and line.startswith("preflight: ")
    return line.removeprefix("preflight: ")


def _submit_problem(pairs: list[str], package: Path) -> str:
    with pytest.raises(remote.RemoteError) as err:
        remote.parse_params(pairs, package)
    assert "\n" not in str(err.value)
    return str(err.value)


def _schedule_problem(pairs: list[str], capsys) -> str:
    args = ["schedule", "--host", "http://127.0.0.1:9", "--package", str(PACKAGES[0])]
    args += ["--cron", "0 3 * * *", "--name", "n"]
    for pair in pairs:
        args += ["--param", pair]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    return err


@pytest.mark.parametrize(("value", "reason"), REFUSED.items())
def test_gpu_count_refusals_are_worded_alike_everywhere(value, reason, capsys):
    problem = f"score_gpu_count={value!r}: {reason}"
    assert _preflight_problem({"score_gpu_count": value}).startswith(problem)
    for package in PACKAGES[:1]:  # the select form has no GPU counts
        assert _submit_problem([f"score_gpu_count={value}"], package).startswith(problem)
    assert problem in _schedule_problem([f"score_gpu_count={value}"], capsys)


@pytest.mark.parametrize("value", ["1.5", "-1", "24 GB", "4 cores", " 4"])
def test_cpu_and_memory_refusals_are_worded_alike(value, capsys):
    if value in ("1.5",):  # 1.5 cores and 1.5 bytes are quantities
        assert check({"score_cpu": value, "score_memory": value}) == []
        return
    want = f"score_memory={value!r}: "
    assert _preflight_problem({"score_memory": value}).startswith(want)
    assert _submit_problem([f"score_memory={value}"], PACKAGES[0]).startswith(want)
    assert want in _schedule_problem([f"score_memory={value}"], capsys)


@pytest.mark.parametrize("value", ACCEPTED)
def test_accepted_quantities(value):
    assert check({"score_cpu": value, "score_memory": value}) == []
    pairs = [f"score_cpu={value}", f"score_memory={value}", f"embed_memory={value}"]
    assert remote.parse_params(pairs, PACKAGES[0])["score_cpu"] == value
    if value == "500m":  # half a GPU
        assert check({"score_gpu_count": value})
    else:  # whole numbers: GPU counts too
        assert check({"score_gpu_count": value}) == []


def test_secret_and_claim_names_must_be_non_empty_strings(capsys):
    want = "storage_secret='': the name of a Kubernetes object, not empty"
    assert _preflight_problem({"storage_secret": ""}) == want
    assert _submit_problem(["storage_secret="], PACKAGES[0]) == want
    assert _schedule_problem(["storage_secret="], capsys).endswith(want)
    assert check({"storage_secret": 3}) and check({"model_cache_pvc": None})


def test_tolerations_decode_as_kubernetes_decodes_them(capsys):
    """Go's encoding/json into a k8s Toleration (the driver, k8s.go 256 and 271): keys matched
    without regard to case, unknown keys dropped, a wrong type fails."""
    assert decode_toleration(
        {"KEY": "nvidia.com/gpu", "Operator": "Exists", "colour": "blue", "value": None}
    ) == {"key": "nvidia.com/gpu", "operator": "Exists"}
    assert decode_toleration({"effect": "NoExecute", "tolerationseconds": 60.0}) == {
        "effect": "NoExecute",
        "tolerationSeconds": 60,
    }
    for bad in ({"tolerationSeconds": "60"}, {"tolerationSeconds": 1.5}, {"key": 5}, "key"):
        with pytest.raises(ValueError):
            decode_toleration(bad)
    bad = '[{"key": "nvidia.com/gpu", "effect": "NoExecute", "tolerationSeconds": "60"}]'
    want = "gpu_tolerations[0]: tolerationSeconds='60': must be a whole number of seconds"
    assert _preflight_problem({"gpu_tolerations": yaml.safe_load(bad)}).startswith(want)
    assert _submit_problem([f"gpu_tolerations={bad}"], PACKAGES[0]).startswith(want)
    assert want in _schedule_problem([f"gpu_tolerations={bad}"], capsys)
    assert check({"gpu_node_selector": {"pool": 1}})


def _dict_constant_strings(package: Path) -> set[str]:
    """The root's STRING parameters whose placeholders sit inside a dict or list constant."""
    spec = next(yaml_documents(package.read_text()))
    roots = {
        name
        for name, p in spec["root"]["inputDefinitions"]["parameters"].items()
        if p.get("parameterType") == "STRING"
    }
    found = set()
    for component in [spec["root"], *spec["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            for param in task.get("inputs", {}).get("parameters", {}).values():
                constant = param.get("runtimeValue", {}).get("constant")
                if isinstance(constant, dict | list):
                    text = json.dumps(constant)
                    for name in re.findall(r"pipelinechannel--([\w-]+)'\]", text):
                        if name in roots:
                            found.add(name)
    return found


def test_the_dict_constant_strings_are_the_compiled_ones(capsys):
    """The launcher fills a dict constant's placeholders by plain text into the executor input's
    JSON (launcher_v2.go 1051-1073): the strings that reach one are exactly the listed ones, and a
    quote in them is refused."""
    full = _dict_constant_strings(PACKAGES[0])
    assert full == set(DICT_CONSTANT_STRINGS)
    assert _dict_constant_strings(PACKAGES[1]) <= full
    want = "model='s3://models/a\"b': contains a quote"
    assert _preflight_problem({"model": 's3://models/a"b'}).startswith(want)
    assert _submit_problem(['model=s3://models/a"b'], PACKAGES[0]).startswith(want)
    assert want in _schedule_problem(['model=s3://models/a"b'], capsys)
