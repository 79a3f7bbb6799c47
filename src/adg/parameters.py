"""The one check of a run's parameter values, by their pipeline names: the in-cluster preflight
(`adg.stages.preflight`, the only check a run started from the Kubeflow UI goes through), `adg
submit` and `adg schedule` (`adg_kfp.pipelines.remote`) all call `check` and word a refusal alike:
one problem is `name=value: reason`, and `refusal` joins them on one line.

Beyond the pipeline's own rules (sizes, shares, choices, s3:// targets), it refuses every value
the KFP 2.17.0 driver or launcher would fail a task on, later, in the cluster:

- GPU counts, CPU and memory: Kubernetes quantities, parsed by `parse_quantity`, apimachinery's
  own grammar (the driver parses them with `k8sres.ParseQuantity`, backend/src/v2/driver/
  driver.go 191 and 441); a GPU count is a whole number >= 0 ("0": the stage runs on CPU), CPU and
  memory are not negative (the API server refuses a negative request).
- The storage Secret's and the model cache's names: non-empty strings (the driver resolves them
  with `resolveInputParameterStr`, backend/src/v2/driver/resolve.go 501-525, called from k8s.go
  367-373 and 1144-1148).
- GPU tolerations: each decodes into a Kubernetes `Toleration` as Go's encoding/json does it
  (k8s.go 256 and 271): field names matched without regard to case, unknown ones dropped, a
  value of the wrong type fails the task (`tolerationSeconds: "60"`).
- The GPU node selector: a map of strings (resolve.go `resolveK8sJsonParameter` into
  map[string]string).
- A string that reaches a dict constant: the launcher fills placeholders into the executor
  input's JSON by plain text replacement (backend/src/v2/component/launcher_v2.go 1051-1073, the
  string case at 1142-1143), so a `"`, a backslash or a control character in it corrupts or
  alters that JSON. Such values are refused, not escaped: the same parameter reaches other tasks
  whole, so no single escaped spelling is right everywhere. `DICT_CONSTANT_STRINGS` lists these
  parameters (tests/test_parameters.py reads them from the compiled pipelines).

Standard library only: the KFP side imports it when submitting.
"""

from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any

from adg.config import GPU_COUNT_PARAMS, SCORE_METHODS, parameter_metadata
from adg.errors import InputError

NO_CHECKPOINTS = "none"
# The smallest values and the choices of the stages' settings come from their `at_least` and
# `choices` in adg.config; generate_num_samples (at least 2) has a check of its own below, with
# its reason.
_MINIMUMS = parameter_metadata("at_least")
# Sizes that must be >= 1 (GPU counts are whole numbers >= 0: `check_gpu_count`).
AT_LEAST_ONE = ("shard_count", "select_budget", *(n for n, low in _MINIMUMS.items() if low == 1))
AT_LEAST_ZERO = ("ingest_limit", *(n for n, low in _MINIMUMS.items() if low == 0))
CHOICES = parameter_metadata("choices")
S3_ONLY = ("ingest_pool_prefix", "ingest_ledger_uri", "export_uri")
# Each GPU stage's CPU and memory parameter.
QUANTITY_PARAMS = tuple(
    f"{stage}_{what}" for stage in GPU_COUNT_PARAMS for what in ("cpu", "memory")
)
# Names the driver resolves with resolveInputParameterStr: a non-empty string, or the task fails.
NAME_PARAMS = ("storage_secret", "model_cache_pvc")
# String parameters the compiled pipelines put into a dict constant (see the module doc).
DICT_CONSTANT_STRINGS = ("model", "select_strategy")
JSON_UNSAFE = '"\\'

# --- Kubernetes quantities: k8s.io/apimachinery/pkg/api/resource ----------------------------

_DIGITS = "0123456789"
_SUFFIX_CHARS = "eEinumkKMGTP"  # quantity.go 248
# suffix.go 113-132 (newSuffixer): the decimal and binary suffixes, as (base, exponent).
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15}
_DECIMAL_SUFFIXES["E"] = 18
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_INT64 = 2**63
_NANO = Decimal("1e-9")


def parse_quantity(text: Any) -> Decimal:
    """A Kubernetes quantity as a number (cores, bytes, GPUs), by apimachinery's ParseQuantity
    (pkg/api/resource/quantity.go 161-275 `parseQuantityString`, 277-... `ParseQuantity`;
    suffix.go 180-198 `interpret`): an optional sign, digits with an optional fraction, then a
    decimal suffix (n u m k M G T P E), a binary one (Ki ... Ei) or an exponent (e3, E-3).
    Nothing around it, not even a space. Values round up to the nano as apimachinery rounds them
    (quantity.go, `amount.Round(..., Nano, RoundUp)`). InputError when it is not a quantity."""
    if not isinstance(text, str) or not text:
        raise InputError(f"{text!r}: not a Kubernetes quantity (e.g. 4, 500m, 24Gi)")
    s, pos, end, negative = text, 0, len(text), False
    if s == "0":
        return Decimal(0)
    if s[0] in "+-":
        negative, pos = s[0] == "-", 1
    while pos < end and s[pos] == "0":  # leading zeros; nothing else left reads as 0
        pos += 1
    if pos >= end:
        return Decimal(0)
    start = pos
    while pos < end and s[pos] in _DIGITS:
        pos += 1
    num, denom = s[start:pos] or "0", ""
    if pos < end and s[pos] == ".":
        pos += 1
        start = pos
        while pos < end and s[pos] in _DIGITS:
            pos += 1
        denom = s[start:pos]
    suffix_start = pos
    while pos < end and s[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and s[pos] in "+-":
        pos += 1
    while pos < end and s[pos] in _DIGITS:
        pos += 1
    if pos < end:  # ErrFormatWrong
        raise InputError(f"{text!r}: not a Kubernetes quantity (e.g. 4, 500m, 24Gi)")
    suffix = s[suffix_start:]
    with decimal.localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = 200, 10**6, -(10**6)
        number = Decimal(f"{'-' if negative else ''}{num}" + (f".{denom}" if denom else ""))
        if suffix in _DECIMAL_SUFFIXES:
            value = number.scaleb(_DECIMAL_SUFFIXES[suffix])
        elif suffix in _BINARY_SUFFIXES:
            value = number * (2 ** _BINARY_SUFFIXES[suffix])
        elif len(suffix) > 1 and suffix[0] in "eE" and _go_int64(suffix[1:]) is not None:
            value = number.scaleb(_go_int64(suffix[1:]))
        else:  # ErrSuffix
            raise InputError(f"{text!r}: not a Kubernetes quantity (unknown suffix {suffix!r})")
        if value and value.as_tuple().exponent < -9 and value.adjusted() < 150:
            value = value.quantize(_NANO, rounding=decimal.ROUND_UP)
        return +value


def _go_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64): an optional sign and ASCII digits within int64."""
    body = text[1:] if text[:1] in "+-" else text
    if not body or any(c not in _DIGITS for c in body):
        return None
    value = int(text)
    return value if -_INT64 <= value < _INT64 else None


# --- the checks ---------------------------------------------------------------------------


def show(value: Any) -> str:
    """A value as the user typed it: a pipeline dict parameter turns 3 into 3.0 on the way."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _text(value: Any) -> Any:
    """A number as its text (a dict parameter's value may arrive as one); anything else as is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return show(value)
    return value


def check_gpu_count(name: str, value: Any) -> str | None:
    """None, or why `value` is no GPU count: a whole number >= 0 in quantity notation."""
    try:
        count = parse_quantity(_text(value))
    except InputError:
        return f"{name}={show(value)}: not a whole number of GPUs (e.g. 0, 1, 2)"
    if count < 0 or count != count.to_integral_value():
        return f"{name}={show(value)}: a whole number of GPUs, 0 or more (0 = this stage on CPU)"
    return None


def check_quantity(name: str, value: Any) -> str | None:
    """None, or why `value` is no CPU or memory quantity Kubernetes takes."""
    try:
        amount = parse_quantity(_text(value))
    except InputError:
        return f"{name}={show(value)}: not a Kubernetes quantity (e.g. 4, 500m, 24Gi)"
    if amount < 0:
        return f"{name}={show(value)}: must not be negative"
    return None


# Toleration's fields (k8s.io/api/core/v1 types.go) by their JSON names, as Go's encoding/json
# matches them: without regard to case.
_TOLERATION_FIELDS = {
    "key": "key",
    "operator": "operator",
    "value": "value",
    "effect": "effect",
    "tolerationseconds": "tolerationSeconds",
}


def decode_toleration(item: Any) -> dict[str, Any]:
    """One toleration as the driver's json.Unmarshal into a k8s Toleration leaves it: keys
    matched without regard to case (a later one wins), unknown keys dropped, `null` left unset;
    a value of the wrong type is a ValueError, as it fails the task. The result has the
    canonical field names and only the fields set."""
    if not isinstance(item, dict):
        raise ValueError(f"{item!r} is not a toleration object")
    out: dict[str, Any] = {}
    for key, value in item.items():
        field = _TOLERATION_FIELDS.get(str(key).lower())
        if field is None or value is None:
            continue
        if field == "tolerationSeconds":
            whole = isinstance(value, int | float) and not isinstance(value, bool)
            if not whole or value != int(value) or not -_INT64 <= int(value) < _INT64:
                raise ValueError(f"{key}={value!r}: must be a whole number of seconds (int64)")
            out[field] = int(value)
        elif isinstance(value, str):
            out[field] = value
        else:
            raise ValueError(f"{key}={value!r}: must be a string")
    return out


def _check_tolerations(value: Any) -> list[str]:
    if not isinstance(value, list):
        return [f"gpu_tolerations={value!r}: a list of Kubernetes tolerations"]
    problems = []
    for i, item in enumerate(value):
        try:
            decode_toleration(item)
        except ValueError as err:
            problems.append(f"gpu_tolerations[{i}]: {err} (a Kubernetes Toleration)")
    return problems


def _check_selectors(selectors: Any) -> list[str]:
    if not isinstance(selectors, list) or not selectors:
        return [f'selectors={selectors!r}: a non-empty list, e.g. ["adg", "random"]']
    unknown = [s for s in selectors if s not in SCORE_METHODS]
    if unknown:
        return [f"selectors: unknown {unknown}; known: {', '.join(sorted(SCORE_METHODS))}"]
    return []


def _is_s3(uri: Any) -> bool:
    return isinstance(uri, str) and uri.startswith("s3://")


def check(p: dict[str, Any]) -> list[str]:
    """Every problem with the parameter values alone (no I/O), each `name=value: reason`;
    absent names are not checked."""
    problems: list[str] = []
    if "ingest_input" in p and not (p.get("ingest_input") or p.get("ingest_pool_prefix")):
        problems.append("ingest_input or ingest_pool_prefix: give a pool or a pool prefix")
    for name in AT_LEAST_ONE:
        if name in p and not _number(p[name]) >= 1:
            problems.append(f"{name}={show(p[name])}: must be at least 1")
    for name in AT_LEAST_ZERO:
        if name in p and not _number(p[name]) >= 0:
            problems.append(f"{name}={show(p[name])}: must not be negative")
    for name in GPU_COUNT_PARAMS.values():
        if name in p and (problem := check_gpu_count(name, p[name])):
            problems.append(problem)
    for name in QUANTITY_PARAMS:
        if name in p and (problem := check_quantity(name, p[name])):
            problems.append(problem)
    if p.get("generate_backend") == "vllm" and _zero(p.get("generate_tensor_parallel_size")):
        problems.append(
            "generate_tensor_parallel_size='0': generate runs on CPU, where vLLM does not run "
            "(generate_backend=vllm): give a GPU count or generate_backend=auto"
        )
    if "generate_num_samples" in p and not _number(p["generate_num_samples"]) >= 2:
        problems.append(
            f"generate_num_samples={show(p['generate_num_samples'])}: at least 2 answers are "
            "needed for a divergence"
        )
    for name in ("generate_gpu_memory_utilization", "generate_top_p"):
        if name in p and not 0 < _number(p[name]) <= 1:
            problems.append(f"{name}={show(p[name])}: must be in (0, 1]")
    weights = [p[k] for k in ("score_dispersion_weight", "score_anisotropy_weight") if k in p]
    if weights and (min(map(_number, weights)) < 0 or sum(map(_number, weights)) <= 0):
        problems.append("score_dispersion_weight, score_anisotropy_weight: ≥ 0, not both 0")
    for name, allowed in CHOICES.items():
        if name in p and p[name] not in allowed:
            problems.append(f"{name}={show(p[name])}: one of {', '.join(allowed)}")
    if "selectors" in p:
        problems += _check_selectors(p["selectors"])
    if "gpu_accelerator_type" in p and not str(p["gpu_accelerator_type"]).strip():
        problems.append(
            f"gpu_accelerator_type={show(p['gpu_accelerator_type'])}: empty "
            "(e.g. nvidia.com/gpu, amd.com/gpu)"
        )
    for name in NAME_PARAMS:
        if name in p and not (isinstance(p[name], str) and p[name]):
            problems.append(f"{name}={show(p[name])}: the name of a Kubernetes object, not empty")
    if "gpu_node_selector" in p:
        selector = p["gpu_node_selector"]
        if not isinstance(selector, dict) or not all(isinstance(v, str) for v in selector.values()):
            problems.append(
                f"gpu_node_selector={selector!r}: a map of node labels to strings, "
                'e.g. {"nvidia.com/gpu.present": "true"}'
            )
    if "gpu_tolerations" in p:
        problems += _check_tolerations(p["gpu_tolerations"])
    for name in DICT_CONSTANT_STRINGS:
        value = p.get(name)
        if isinstance(value, str) and any(c in JSON_UNSAFE or ord(c) < 0x20 for c in value):
            problems.append(
                f"{name}={value!r}: contains a quote, backslash or control character, which the "
                "KFP launcher writes unescaped into a task's JSON input"
            )
    for name in S3_ONLY:
        if p.get(name) and not _is_s3(p[name]):
            problems.append(f"{name}={show(p[name])}: must be an s3:// URI")
    checkpoint = p.get("checkpoint_uri") or ""
    if checkpoint and checkpoint != NO_CHECKPOINTS and not _is_s3(checkpoint):
        problems.append(
            f"checkpoint_uri={checkpoint!r}: an s3:// prefix, empty or {NO_CHECKPOINTS}"
        )
    return problems


def _zero(value: Any) -> bool:
    try:
        return parse_quantity(value) == 0
    except InputError:
        return False


def asks_gpus(count: Any) -> bool:
    """Whether a stage's GPU count asks for any GPU ("0": the stage runs on CPU, no CUDA check);
    a count that does not parse counts as asking, so the CUDA check still runs."""
    try:
        return parse_quantity(_text(count)) != 0
    except InputError:
        return True


def refusal(problems: list[str]) -> str:
    """The problems on one line, as every caller reports them."""
    return "; ".join(problems)
