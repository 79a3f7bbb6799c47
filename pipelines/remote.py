"""Submitting the pipeline to a Kubeflow Pipelines server: one run (`adg submit`) or a recurring
run (`adg schedule`), through `kfp.Client`; and retrying a run that failed (`adg retry`).

The server, namespace and the service account the pods run as come from flags or `KFP_HOST` /
`KFP_NAMESPACE` / `KFP_SERVICE_ACCOUNT` (a bearer token, where the server wants one, only from
`KFP_TOKEN`). Pipeline arguments are given as `key=value` and
converted to the types the compiled pipeline declares, so a typo or a bad number fails here, not in
the cluster. A recurring run uses a cron schedule (5 fields, or KFP's 6 with seconds first), never
catches up on missed runs and never overlaps itself (max concurrency 1): the curation ledger's
read-modify-write relies on that. Everything up to the `kfp.Client` call is plain functions that
build the request, so it is testable without a server.

Before sending, the server's version is read (its healthz endpoint) and a backend older than
`MIN_BACKEND_VERSION` is refused: an older API server cannot parse the compiled platform spec
(the run's deadline, optional Secret keys) and silently runs the pipeline without any of its
Kubernetes settings (no Secret, no PVC, no node selector or toleration). Caching is chosen
deliberately: a single run keeps the compiled settings (pure tasks cached, the tasks with outside
effects never), a recurring run turns caching off for every task by default (`--cache` keeps the
compiled settings). kfp.Client's own `enable_caching` is never passed: it overrides only the
top-level tasks, and True would switch caching on for ingest and the ledger.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_EXPERIMENT = "adg"
# The oldest KFP backend the compiled pipeline works on (docs/kubernetes.md says why): its
# platform spec sets PipelineConfig.active_deadline_seconds, which the backend's spec definitions
# have from 2.17.0 on, and the API server drops a platform spec it cannot parse strictly, whole
# (apiserver/template/v2_template.go). The SDK, kfp-kubernetes and the backend are released
# together; pyproject.toml pins kfp / kfp-kubernetes >= 2.17, and tests/test_backend_conformance.py
# parses the compiled YAML with the 2.17.0 definitions.
MIN_BACKEND_VERSION = (2, 17, 0)
HEALTHZ_PATH = "/apis/v1beta1/healthz"

log = logging.getLogger(__name__)

# The compiled spec's parameter types → how to read a `key=value` string.
_BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class RemoteError(ValueError):
    """A bad flag, parameter or schedule: one line for the user."""


@dataclass(frozen=True)
class Target:
    host: str
    namespace: str | None
    service_account: str | None = None


def resolve_target(
    host: str | None = None, namespace: str | None = None, service_account: str | None = None
) -> Target:
    """Flags win over `KFP_HOST` / `KFP_NAMESPACE` / `KFP_SERVICE_ACCOUNT`; a host is required.

    No service account means the namespace's default one (Kubeflow profiles: default-editor).
    """
    host = host or os.environ.get("KFP_HOST", "").strip()
    namespace = namespace or os.environ.get("KFP_NAMESPACE", "").strip() or None
    account = service_account or os.environ.get("KFP_SERVICE_ACCOUNT", "").strip() or None
    if not host:
        raise RemoteError("no Kubeflow Pipelines host: pass --host or set KFP_HOST")
    return Target(host, namespace, account)


def yaml_documents(text: str) -> list[Any]:
    """The documents of a YAML text, read by libyaml's loader where PyYAML has it, with the garbage
    collector paused: a compiled pipeline is ~700 KB (it carries every component's source), which
    the pure-Python loader takes most of a second to read, and the ~400 K containers built (no
    cycles among them) set off full collections that cost as much again in a process with torch
    loaded (bench/compile.py `--load`)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    paused = gc.isenabled()
    gc.disable()
    try:
        return list(yaml.load_all(text, Loader=loader))
    finally:
        if paused:
            gc.enable()


def load_package(package_path: str | os.PathLike) -> list[Any]:
    """The YAML documents of a compiled pipeline: the pipeline spec, then its platform spec."""
    return yaml_documents(Path(package_path).read_text(encoding="utf-8"))


def _root_parameters(package_path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The compiled pipeline's run parameters, as their specs (type, default, optional)."""
    spec = load_package(package_path)[0]
    return spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})


def _types(params: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: p.get("parameterType", "STRING") for name, p in params.items()}


def _required(params: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(
        n for n, p in params.items() if "defaultValue" not in p and not p.get("isOptional")
    )


def pipeline_parameters(package_path: str | os.PathLike) -> dict[str, str]:
    """{parameter name: type} of a compiled pipeline (`STRING`, `NUMBER_INTEGER`, ...)."""
    return _types(_root_parameters(package_path))


def required_parameters(package_path: str | os.PathLike) -> list[str]:
    """The compiled pipeline's parameters that have no default (the run form asks for them)."""
    return _required(_root_parameters(package_path))


def _convert(name: str, kind: str, text: str) -> Any:
    try:
        if kind == "NUMBER_INTEGER":
            return int(text)
        if kind == "NUMBER_DOUBLE":
            return float(text)
        if kind == "BOOLEAN":
            return _BOOLEAN_WORDS[text.strip().lower()]
        if kind in ("STRUCT", "LIST"):
            value = json.loads(text)
            want = dict if kind == "STRUCT" else list
            if not isinstance(value, want):
                raise ValueError(f"expected a JSON {want.__name__}")
            return value
    except (ValueError, KeyError) as err:
        raise RemoteError(f"--param {name}={text}: not a valid {kind.lower()} ({err})") from None
    return text


def parse_params(pairs: list[str], package_path: str | os.PathLike) -> dict[str, Any]:
    """`["select_budget=1000", ...]` → {"select_budget": 1000, ...}, typed by the pipeline;
    a parameter without a default that is not given fails here, not in the cluster."""
    params = _root_parameters(package_path)  # read once: the types and the required names
    types = _types(params)
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise RemoteError(f"--param {pair!r}: expected key=value")
        if name not in types:
            known = ", ".join(sorted(types))
            raise RemoteError(f"--param {name}: the pipeline has no such parameter ({known})")
        out[name] = _convert(name, types[name], text)
    missing = [name for name in _required(params) if name not in out]
    if missing:
        given = ", ".join(f"--param {name}=..." for name in missing)
        raise RemoteError(f"the pipeline needs {given} (no default)")
    _check_parameters(out)
    return out


def _check_parameters(arguments: dict[str, Any]) -> None:
    """The given values, by `adg.parameters.check`: the one check the in-cluster preflight makes
    too, worded alike. A value the driver or launcher would fail a task on (a fractional GPU
    count, "24 GB", an empty Secret name, a toleration Kubernetes cannot decode) is refused here,
    before anything is sent."""
    from adg.parameters import check, refusal

    problems = check(arguments)
    if problems:
        raise RemoteError(refusal(problems))


def cron_expression(cron: str) -> str:
    """KFP's cron has six fields (seconds first); a standard five-field one gets second 0."""
    fields = cron.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise RemoteError(f"--cron {cron!r}: expected 5 fields (min hour day month weekday) or 6")


def parse_version(tag: str | None) -> tuple[int, int, int] | None:
    """ "2.14.0", "v2.15.1-rc.1" → (2, 14, 0), (2, 15, 1); None when there is no version in it."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", str(tag or ""))
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def check_backend_version(tag: str | None) -> tuple[int, int, int] | None:
    """Refuse a backend older than MIN_BACKEND_VERSION; an unknown version (a dev build) only
    warns. Returns the version read."""
    version = parse_version(tag)
    minimum = ".".join(map(str, MIN_BACKEND_VERSION))
    if version is None:
        log.warning("KFP backend version unknown (%r); this pipeline needs %s+", tag, minimum)
        return None
    if version < MIN_BACKEND_VERSION:
        raise RemoteError(
            f"the Kubeflow Pipelines backend is {'.'.join(map(str, version))}; this pipeline needs "
            f"{minimum} or newer (an older one cannot parse the run's Kubernetes settings and "
            "runs it without Secrets, the model cache, node selectors or tolerations; see "
            "docs/kubernetes.md), or pass --skip-version-check"
        )
    return version


def server_version(client) -> str | None:
    """The backend's release tag from its healthz endpoint (the API server answers `tag_name`,
    the UI's proxy `apiServerTagName`), through the client's own authenticated connection."""
    # kfp.Client exposes no version call (its v2beta1 healthz has no version field); its
    # generated API client (private attribute) carries the host and credentials.
    api = client._healthz_api.api_client
    body = api.call_api(
        HEALTHZ_PATH,
        "GET",
        response_type="object",
        auth_settings=["Bearer"],
        _return_http_data_only=True,
    )
    if not isinstance(body, dict):
        return None
    return body.get("tag_name") or body.get("apiServerTagName") or None


def package_without_cache(package_path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """A copy of the compiled pipeline with caching off for every task at every level."""
    import yaml

    docs = load_package(package_path)
    spec = docs[0]
    for component in [spec["root"], *spec.get("components", {}).values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task["cachingOptions"] = {}
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's, as in load_package
    with open(dest, "w", encoding="utf-8") as fh:
        yaml.dump_all(docs, fh, Dumper=dumper, sort_keys=False)
    return Path(dest)


def run_request(
    package_path: str | os.PathLike,
    arguments: dict[str, Any],
    run_name: str | None,
    experiment: str,
    namespace: str | None,
    service_account: str | None = None,
    pipeline_root: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `kfp.Client.create_run_from_pipeline_package`."""
    return {
        "pipeline_file": str(package_path),
        "arguments": arguments,
        "run_name": run_name,
        "experiment_name": experiment,
        "namespace": namespace,
        "service_account": service_account,
        "pipeline_root": pipeline_root or None,
    }


def recurring_run_request(
    package_path: str | os.PathLike,
    arguments: dict[str, Any],
    cron: str,
    job_name: str,
    experiment_id: str,
    service_account: str | None = None,
    pipeline_root: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `kfp.Client.create_recurring_run`: no catch-up, one run at a time."""
    return {
        "experiment_id": experiment_id,
        "job_name": job_name,
        "cron_expression": cron_expression(cron),
        "max_concurrency": 1,
        "no_catchup": True,
        "enabled": True,
        "params": arguments,
        "pipeline_package_path": str(package_path),
        "service_account": service_account,
        "pipeline_root": pipeline_root or None,
    }


def _client(target: Target):
    import kfp

    token = os.environ.get("KFP_TOKEN", "").strip() or None
    return kfp.Client(host=target.host, namespace=target.namespace, existing_token=token)


class _Package:
    """The pipeline package to send: a given YAML, or `pipeline` (full or select) compiled now
    into a temp folder (`source`, what the parameters are read from); with `cache` False, `send()`
    is a copy with caching off everywhere, written only when the run is about to be sent, so a bad
    parameter is refused before the ~700 KB copy is written."""

    def __init__(self, package: str | None, cache: bool = True, pipeline: str = "full"):
        self.package = package
        self.cache = cache
        self.pipeline = pipeline
        self.tmp: tempfile.TemporaryDirectory | None = None
        self.source: Path | None = None

    def __enter__(self) -> _Package:
        if self.package and not Path(self.package).is_file():
            raise RemoteError(f"{self.package}: no such pipeline package")
        self.tmp = tempfile.TemporaryDirectory(prefix="adg-compile-")
        if self.package:
            self.source = Path(self.package)
        else:
            from adg_kfp.pipelines.local import compile_pipeline

            self.source = Path(self.tmp.name) / f"adg_{self.pipeline}.yaml"
            compile_pipeline(self.source, self.pipeline)
        return self

    def send(self) -> Path:
        """The package as sent: `source`, or its copy with caching off."""
        assert self.source is not None and self.tmp is not None, "inside `with` only"
        if self.cache:
            return self.source
        return package_without_cache(self.source, Path(self.tmp.name) / "adg_pipeline.nocache.yaml")

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


def submit(
    params: list[str],
    host: str | None = None,
    namespace: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    package: str | None = None,
    service_account: str | None = None,
    cache: bool = True,
    pipeline_root: str | None = None,
    check_version: bool = True,
    pipeline: str = "full",
) -> str:
    """Start one run; returns its id. `cache`: keep the compiled caching (False: none at all);
    `pipeline`: which one to compile when no `package` is given (full or select)."""
    target = resolve_target(host, namespace, service_account)
    with _Package(package, cache=cache, pipeline=pipeline) as pkg:
        arguments = parse_params(params, pkg.source)
        request = run_request(
            pkg.send(),
            arguments,
            run_name,
            experiment,
            target.namespace,
            target.service_account,
            pipeline_root=pipeline_root,
        )
        client = _client(target)
        if check_version:
            check_backend_version(server_version(client))
        result = client.create_run_from_pipeline_package(**request)
    return result.run_id


def schedule(
    cron: str,
    params: list[str],
    name: str,
    host: str | None = None,
    namespace: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    package: str | None = None,
    service_account: str | None = None,
    cache: bool = False,
    pipeline_root: str | None = None,
    check_version: bool = True,
    pipeline: str = "full",
) -> str:
    """Create a recurring run; returns its id. `cache` is off by default: every scheduled run
    computes everything afresh (True keeps the compiled settings)."""
    target = resolve_target(host, namespace, service_account)
    cron_expression(cron)
    with _Package(package, cache=cache, pipeline=pipeline) as pkg:
        arguments = parse_params(params, pkg.source)
        client = _client(target)
        if check_version:
            check_backend_version(server_version(client))
        exp = client.create_experiment(experiment, namespace=target.namespace)
        request = recurring_run_request(
            pkg.send(),
            arguments,
            cron,
            name,
            exp.experiment_id,
            target.service_account,
            pipeline_root=pipeline_root,
        )
        job = client.create_recurring_run(**request)
    return job.recurring_run_id


def _api_error_line(err) -> str:
    """The one line of a refused API call: the status and the server's message
    (googleRpcStatus's `message`, first line), or the reason when the body is not that."""
    status = getattr(err, "status", None)
    message = ""
    with contextlib.suppress(ValueError, AttributeError):  # a body that is not googleRpcStatus
        message = str(json.loads(getattr(err, "body", "") or "{}").get("message") or "")
    message = message.strip().splitlines()[0] if message.strip() else ""
    return f"{status}: {message or getattr(err, 'reason', '') or err}"


def retry(
    run_id: str,
    host: str | None = None,
    namespace: str | None = None,
    check_version: bool = True,
) -> None:
    """Retry a run that ended Failed or Error: KFP's Retry run (RunService.RetryRun, the UI's
    Retry button), through kfp.Client's own API client. The server keeps the succeeded tasks,
    deletes the failed ones' pods and runs them again, under the same run id (docs/kubernetes.md,
    The way back after an Argo Error)."""
    import kfp_server_api

    run_id = run_id.strip()
    if not run_id:
        raise RemoteError("RUN_ID: empty; give the id `adg submit` printed (or the UI shows)")
    target = resolve_target(host, namespace)
    client = _client(target)
    if check_version:
        check_backend_version(server_version(client))
    api = kfp_server_api.RunServiceApi(client._run_api.api_client)
    try:
        api.run_service_retry_run(run_id)
    except kfp_server_api.ApiException as err:
        raise RemoteError(f"retry {run_id}: the server refused: {_api_error_line(err)}") from None
