"""What a KFP backend's driver puts into each task's pod, for a compiled pipeline and a set of run
parameters, without a cluster: the driver's rules transcribed from its Go source
(kubeflow/pipelines 2.17.0, backend/src/v2/driver/), so tests can check the pods a real run gets
(kfp.local ignores every Kubernetes setting and accepts what a backend drops).

Values are protobuf's structpb.Value kinds, by Python type: str is string_value, int and float
number_value, bool bool_value, dict struct_value, list list_value. The rules, with their sources:

- Run parameters: the run's arguments, each of exactly its declared kind or the API server
  refuses the run (backend/src/apiserver/template/v2_template.go, `validatePipelineJobInputs`),
  over the root's defaults (root_dag.go, `RootDAG`).
- A task's input parameter: `componentInputParameter` is the parent DAG's input of that name,
  `taskOutputParameter` the producer task's output, `runtimeValue.constant` the constant as it is
  (resolve.go, `resolveInputParameter`).
- A nested pipeline's omitted optional inputs take their defaults (resolve.go, `resolveInputs`,
  the `isDagDriver` branch).
- Types, against the component's input definitions: a STRING input given another kind becomes
  its text (`metadata.PbValueToText`); any other type must match exactly, or the task fails
  (resolve.go, `resolveInputs`, `handleParamTypeValidationAndConversion`).
- A ParallelFor iteration gets one item of the items list as its item input (resolve.go,
  `resolveInputs`, the `isIterationDriver` branch). Conditions are not evaluated: every branch
  is rendered.
- A pod-spec field holding `{{$.inputs.parameters['NAME']}}` is the executor input NAME read
  with `GetStringValue()`: empty for anything but a string (resolve.go,
  `resolvePodSpecInputRuntimeParameter`; util.go, `inputPipelineChannelPattern`).
- CPU and memory requests and limits: that string parsed as a Kubernetes quantity by
  apimachinery's `ParseQuantity` (driver.go 173-197, `getPodResource`, the parse at 191), an
  error for an empty one. `parse_quantity` here is this module's own transcription of
  k8s.io/apimachinery pkg/api/resource/quantity.go (`parseQuantityString` 161-275,
  `ParseQuantity` 277-) and suffix.go (`interpret` 180-198); it shares no code with the product.
- The accelerator: a limit of count on type only when both resolve non-empty, the count parsed
  as a quantity (driver.go 415-447). The image: the resolved string (driver.go 449).
- Node selector: `nodeSelectorJson` resolved in the parent DAG, its struct value marshalled to
  JSON and decoded into a map[string]string (resolve.go 840-864, `resolveK8sJsonParameter`): a
  non-struct is `GetStructValue()` nil, written `{}`; a non-string value fails the task.
- Tolerations: `tolerationJson`, a struct (one) or a list; an empty one is skipped; each decoded
  into a k8s `Toleration` by encoding/json (k8s.go 225-296, the decodes at 256 and 271): field
  names matched without regard to case, unknown ones dropped, `null` left unset, a value of the
  wrong type fails the task (`tolerationSeconds: "60"`).
- Secret env: the Secret's name resolved with `resolveInputParameterStr`, which fails the task
  unless it is a non-empty string (k8s.go 365-373; resolve.go 501-525), `optional` as compiled.
  PVCs: the claim name likewise, an error when empty (k8s.go 1111-1167, `makeVolumeMountPatch`).
  emptyDir volumes as compiled.

Task outputs a pod depends on (the baselines' placement, the loops' items) come from running the
real component's Python function (`runnable`) on the resolved inputs, or from `known` values
given by the test for tasks that need the world (ingest's record count): a dict, or a function of
the task's resolved inputs.
"""

from __future__ import annotations

import decimal
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

PLACEHOLDER = re.compile(r"\$.inputs.parameters\['(.+?)'\]")  # util.go, as the driver matches it


class DriverError(RuntimeError):
    """What would fail the task in the driver (a bad quantity, a type mismatch, no PVC name)."""


# --- k8s.io/apimachinery/pkg/api/resource: ParseQuantity ----------------------------------------

# parseQuantityString (quantity.go 161-275) as one pattern: an optional sign, digits, an optional
# "." and digits, then a run of the suffix characters (quantity.go 248), an optional sign and
# digits; anything else is ErrFormatWrong. Missing digits read as 0 ("", ".", "Gi").
_QUANTITY = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*[+-]?[0-9]*)")
# suffix.go 113-132: decimal and binary suffixes as (base, exponent).
_SUFFIXES = {
    **{s: (10, e) for s, e in zip("num", (-9, -6, -3), strict=True)},
    "": (10, 0),
    **{s: (10, 3 * (i + 1)) for i, s in enumerate("kMGTPE")},
    **{s: (2, 10 * (i + 1)) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}


def parse_quantity(text: str) -> Decimal:
    """k8sres.ParseQuantity's value (DriverError where it errs): the number, times its suffix
    (`interpret`, suffix.go 180-198: a table suffix, or e/E and a strconv.ParseInt exponent),
    rounded up to the nano (quantity.go, `amount.Round(amount, Nano.infScale(), inf.RoundUp)`)."""
    if text == "":
        raise DriverError("quantities must match the regular expression (empty)")
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise DriverError(f"{text!r}: quantities must match the regular expression")
    sign, whole, fraction, suffix = match.groups()
    if suffix in _SUFFIXES:
        base, exponent = _SUFFIXES[suffix]
    elif len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?[0-9]+", suffix[1:]):
        base, exponent = 10, int(suffix[1:])
        if not -(2**63) <= exponent < 2**63:  # ParseInt's range error
            raise DriverError(f"{text!r}: unable to parse quantity's suffix")
    else:
        raise DriverError(f"{text!r}: unable to parse quantity's suffix")
    with decimal.localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = 200, 10**6, -(10**6)
        number = Decimal(f"{sign}{whole or '0'}.{fraction or '0'}")
        value = number * Decimal(base) ** exponent
        if value and value.as_tuple().exponent < -9:
            value = value.quantize(Decimal("1e-9"), rounding=decimal.ROUND_UP)
        return value.normalize() if value else Decimal(0)


# --- k8s.io/api/core/v1 Toleration, as encoding/json decodes it ---------------------------------

_TOLERATION = {  # JSON name -> Go type
    "key": str,
    "operator": str,
    "value": str,
    "effect": str,
    "tolerationSeconds": int,  # *int64
}


def decode_toleration(obj: Any) -> dict[str, Any]:
    """json.Unmarshal(obj, &k8score.Toleration{}): an object's keys matched to the fields' JSON
    names with Go's case folding (a later duplicate wins), unknown keys ignored, null leaves the
    field unset; a string for an int64, a fraction, a number for a string: UnmarshalTypeError,
    which fails the task. Returns the fields set, by their JSON names."""
    if obj is None:  # null leaves the element's zero value
        return {}
    if not isinstance(obj, dict):
        raise DriverError(f"cannot unmarshal {type(obj).__name__} into Go value of type Toleration")
    names = {name.lower(): name for name in _TOLERATION}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = names.get(key.lower())
        if name is None or value is None:
            continue
        want = _TOLERATION[name]
        if want is int:
            ok = type(value) in (int, float) and float(value).is_integer()
            if not ok or not -(2**63) <= int(value) < 2**63:
                raise DriverError(f"cannot unmarshal {value!r} into Toleration.{name} (int64)")
            value = int(value)
        elif not isinstance(value, str):
            raise DriverError(f"cannot unmarshal {value!r} into Toleration.{name} (string)")
        out[name] = value
    return out


class _Unresolved:
    """A task output nobody produced here; an error wherever a pod field needs it."""

    def __init__(self, what: str):
        self.what = what

    def __repr__(self) -> str:
        return f"<unresolved {self.what}>"


@dataclass
class Pod:
    task: str  # the path of DAG task names, e.g. "condition-4/for-loop-5[1]/score-2"
    function: str  # the component's Python function
    image: str
    limits: dict[str, Any] = field(default_factory=dict)  # resource -> Decimal
    requests: dict[str, Any] = field(default_factory=dict)
    node_selector: dict[str, str] | None = None
    tolerations: list[dict] = field(default_factory=list)
    secret_env: list[tuple[str, str, str, bool | None]] = field(default_factory=list)
    pvcs: dict[str, str] = field(default_factory=dict)  # mount path -> claim name
    empty_dirs: dict[str, dict] = field(default_factory=dict)  # mount path -> the spec
    inputs: dict[str, Any] = field(default_factory=dict)  # the executor input's parameters


def string_value(value: Any) -> str:
    """structpb.Value.GetStringValue()."""
    if isinstance(value, _Unresolved):
        raise DriverError(f"a pod field needs {value.what}")
    return value if isinstance(value, str) else ""


def non_empty_string(value: Any, what: str) -> str:
    """resolveInputParameterStr (resolve.go 501-525): a non-empty string, or the task fails."""
    if isinstance(value, _Unresolved):
        raise DriverError(f"{what} needs {value.what}")
    if not isinstance(value, str):
        raise DriverError(f"{what}: expected a string but got {value!r}")
    if value == "":
        raise DriverError(f"{what}: expected a non-empty string")
    return value


def _text(value: Any) -> str:
    """metadata.PbValueToText: a number with Go's 'f', -1 formatting, JSON for list and struct."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)).removesuffix(".0") if float(value).is_integer() else repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return value


_KINDS = {
    "STRING": str,
    "NUMBER_INTEGER": (int, float),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": bool,
    "LIST": list,
    "STRUCT": dict,
}


def _is_kind(value: Any, kind: str) -> bool:
    want = _KINDS.get(kind)
    is_bool = isinstance(value, bool)
    return want is not None and is_bool == (kind == "BOOLEAN") and isinstance(value, want)


def _typed(name: str, value: Any, spec: dict) -> Any:
    """handleParamTypeValidationAndConversion for one input."""
    kind = spec.get("parameterType", "STRING")
    if isinstance(value, _Unresolved):
        return value
    if kind == "STRING":
        return value if isinstance(value, str) else _text(value)
    if not _is_kind(value, kind):
        raise DriverError(f"input parameter {name!r} type mismatch: expect {kind}, got {value!r}")
    return value


class Driver:
    """Renders the pods of one compiled pipeline (`docs`: its two YAML documents)."""

    def __init__(self, docs: list[dict], runnable: dict | None = None, known: dict | None = None):
        self.spec, platform = docs
        self.k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        self.runnable = runnable or {}  # Python function name -> component (kfp PythonComponent)
        self.known = known or {}  # Python function name -> {output name: value}

    def pods(self, arguments: dict[str, Any]) -> list[Pod]:
        root = self.spec["root"]
        params = root.get("inputDefinitions", {}).get("parameters", {})
        unknown = set(arguments) - set(params)
        if unknown:
            raise DriverError(f"no such run parameter: {sorted(unknown)}")
        values = {}
        for name, spec in params.items():
            if name in arguments:
                value, kind = arguments[name], spec.get("parameterType", "STRING")
                if not _is_kind(value, kind):
                    raise DriverError(f"the API server refuses {name}={value!r}: not a {kind}")
                values[name] = value
            elif "defaultValue" in spec:
                values[name] = spec["defaultValue"]
            elif not spec.get("isOptional"):
                raise DriverError(f"run parameter {name} has no value and no default")
        out: list[Pod] = []
        self._dag(root, values, "", out)
        return out

    # --- DAGs and tasks ---------------------------------------------------------------------

    def _dag(self, component: dict, values: dict, path: str, out: list[Pod]) -> None:
        tasks = component["dag"]["tasks"]
        outputs: dict[str, dict] = {}  # task name -> its outputs, produced on demand

        def resolve(spec: dict) -> Any:
            if "componentInputParameter" in spec:
                name = spec["componentInputParameter"]
                if name not in values:
                    raise DriverError(f"{path}: parent DAG has no input {name}")
                return values[name]
            if "taskOutputParameter" in spec:
                ref = spec["taskOutputParameter"]
                produced = produce(ref["producerTask"])
                return produced.get(ref["outputParameterKey"], _Unresolved(str(ref)))
            if "runtimeValue" in spec:
                return spec["runtimeValue"]["constant"]
            raise DriverError(f"{path}: unsupported input spec {spec}")

        def produce(name: str) -> dict:
            if name not in outputs:
                outputs[name] = self._outputs(tasks[name], resolve)
            return outputs[name]

        for name, task in tasks.items():
            sub = self.spec["components"][task["componentRef"]["name"]]
            inputs = {
                k: resolve(v) for k, v in task.get("inputs", {}).get("parameters", {}).items()
            }
            defs = sub.get("inputDefinitions", {}).get("parameters", {})
            if "dag" in sub:
                for key, spec in defs.items():  # a nested pipeline's omitted optional inputs
                    if key not in inputs and spec.get("isOptional") and "defaultValue" in spec:
                        inputs[key] = spec["defaultValue"]
            iterator = task.get("parameterIterator")
            if iterator:
                items_name = iterator["items"].get("inputParameter")
                items = (
                    inputs.pop(items_name) if items_name else json.loads(iterator["items"]["raw"])
                )
                if isinstance(items, _Unresolved):
                    raise DriverError(f"{path}{name}: loop items {items.what} unknown")
                for i, item in enumerate(items):
                    typed = self._typed_all(defs, {**inputs, iterator["itemInput"]: item})
                    self._dag(sub, typed, f"{path}{name}[{i}]/", out)
                continue
            typed = self._typed_all(defs, inputs)
            if "dag" in sub:
                self._dag(sub, typed, f"{path}{name}/", out)
            else:
                out.append(self._pod(f"{path}{name}", sub, typed, resolve))

    @staticmethod
    def _typed_all(defs: dict, inputs: dict) -> dict:
        return {k: _typed(k, v, defs[k]) if k in defs else v for k, v in inputs.items()}

    def _function(self, component: dict) -> str:
        args = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
        args = args.get("args", [])
        return args[args.index("--function_to_execute") + 1]

    def _outputs(self, task: dict, resolve) -> dict:
        """A producer's output parameters: run its component's Python function on its resolved
        inputs, or the `known` values, or unresolved."""
        component = self.spec["components"][task["componentRef"]["name"]]
        if "executorLabel" not in component:
            return {}
        function = self._function(component)
        if function in self.known and not callable(self.known[function]):
            return dict(self.known[function])
        if function not in self.runnable and function not in self.known:
            return {}
        defs = component.get("inputDefinitions", {}).get("parameters", {})
        kwargs = {
            k: _typed(k, resolve(v), defs[k])
            for k, v in task.get("inputs", {}).get("parameters", {}).items()
            if k in defs
        }
        if any(isinstance(v, _Unresolved) for v in kwargs.values()):
            return {}
        if function in self.known:  # the test's own answer, from the task's resolved inputs
            return dict(self.known[function](kwargs))
        result = self.runnable[function].python_func(**kwargs)
        if hasattr(result, "_asdict"):
            return dict(result._asdict())
        return {"Output": result}

    # --- one container task's pod -------------------------------------------------------------

    def _pod(self, path: str, component: dict, inputs: dict, resolve) -> Pod:
        label = component["executorLabel"]
        container = self.spec["deploymentSpec"]["executors"][label]["container"]

        def runtime(text: str) -> str:  # resolvePodSpecInputRuntimeParameter
            match = PLACEHOLDER.search(text)
            if not match:
                return text
            if match[1] not in inputs:
                raise DriverError(f"{path}: executor input has no parameter {match[1]}")
            return string_value(inputs[match[1]])

        def quantity(text: str, what: str):
            try:
                return parse_quantity(runtime(text))
            except DriverError as err:
                raise DriverError(f"{path}: {what}: {err}") from None

        pod = Pod(path, self._function(component), runtime(container["image"]), inputs=inputs)
        resources = container.get("resources", {})
        for key, target, name in (
            ("resourceCpuLimit", pod.limits, "cpu"),
            ("resourceCpuRequest", pod.requests, "cpu"),
            ("resourceMemoryLimit", pod.limits, "memory"),
            ("resourceMemoryRequest", pod.requests, "memory"),
        ):
            if resources.get(key):
                target[name] = quantity(resources[key], key)
        accelerator = resources.get("accelerator")
        if accelerator:
            kind = runtime(accelerator.get("resourceType", ""))
            count = runtime(accelerator.get("resourceCount", ""))
            if kind and count:
                pod.limits[kind] = quantity(count, "accelerator count")

        config = self.k8s.get(label, {})
        selector = config.get("nodeSelector", {})
        if "nodeSelectorJson" in selector:
            value = resolve(selector["nodeSelectorJson"])
            value = value if isinstance(value, dict) else {}  # GetStructValue(): nil -> {}
            if not all(isinstance(v, str) or v is None for v in value.values()):
                raise DriverError(f"{path}: node selector {value!r} is no map of strings")
            pod.node_selector = {k: v or "" for k, v in value.items()}
        elif "labels" in selector:
            pod.node_selector = dict(selector["labels"])
        for toleration in config.get("tolerations", []):
            if "tolerationJson" in toleration:
                value = resolve(toleration["tolerationJson"])
                if value is None:  # ErrResolvedParameterNull: skipped
                    continue
                if not isinstance(value, dict | list):
                    raise DriverError(f"{path}: toleration {value!r} is neither struct nor list")
                try:
                    items = [value] if isinstance(value, dict) else value
                    pod.tolerations += [decode_toleration(t) for t in items if value]
                except DriverError as err:
                    raise DriverError(f"{path}: failed to marshal toleration: {err}") from None
            else:
                pod.tolerations.append(toleration)
        for entry in config.get("secretAsEnv", []):
            if "secretNameParameter" in entry:
                secret = non_empty_string(
                    resolve(entry["secretNameParameter"]), f"{path}: failed to resolve secret name"
                )
            else:
                secret = entry["secretName"]
            for pair in entry.get("keyToEnv", []):
                pod.secret_env.append(
                    (pair["envVar"], secret, pair["secretKey"], entry.get("optional"))
                )
        for mount in config.get("pvcMount", []):
            claim = non_empty_string(
                resolve(mount["pvcNameParameter"]), f"{path}: failed to resolve pvc name"
            )
            if not mount.get("mountPath"):
                raise DriverError(f"{path}: failed to mount volume, missing mountpath or pvc name")
            pod.pvcs[mount["mountPath"]] = claim
        for mount in config.get("emptyDirMounts", []):
            pod.empty_dirs[mount["mountPath"]] = mount
        return pod
