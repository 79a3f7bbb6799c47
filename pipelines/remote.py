"""Submitting the pipeline to a Kubeflow Pipelines server: one run (`adg submit`) or a recurring
run (`adg schedule`), through `kfp.Client`.

The server, namespace and the service account the pods run as come from flags or `KFP_HOST` /
`KFP_NAMESPACE` / `KFP_SERVICE_ACCOUNT` (a bearer token, where the server wants one, only from
`KFP_TOKEN`). Pipeline arguments are given as `key=value` and
converted to the types the compiled pipeline declares, so a typo or a bad number fails here, not in
the cluster. A recurring run uses a cron schedule (5 fields, or KFP's 6 with seconds first), never
catches up on missed runs and never overlaps itself (max concurrency 1): the curation ledger's
read-modify-write relies on that. Everything up to the `kfp.Client` call is plain functions that
build the request, so it is testable without a server.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_EXPERIMENT = "adg"

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


def pipeline_parameters(package_path: str | os.PathLike) -> dict[str, str]:
    """{parameter name: type} of a compiled pipeline (`STRING`, `NUMBER_INTEGER`, ...)."""
    import yaml

    with open(package_path, encoding="utf-8") as fh:
        spec = next(yaml.safe_load_all(fh))
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: p.get("parameterType", "STRING") for name, p in params.items()}


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
    """`["select_budget=1000", ...]` → {"select_budget": 1000, ...}, typed by the pipeline."""
    types = pipeline_parameters(package_path)
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
    return out


def cron_expression(cron: str) -> str:
    """KFP's cron has six fields (seconds first); a standard five-field one gets second 0."""
    fields = cron.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise RemoteError(f"--cron {cron!r}: expected 5 fields (min hour day month weekday) or 6")


def run_request(
    package_path: str | os.PathLike,
    arguments: dict[str, Any],
    run_name: str | None,
    experiment: str,
    namespace: str | None,
    service_account: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `kfp.Client.create_run_from_pipeline_package`."""
    return {
        "pipeline_file": str(package_path),
        "arguments": arguments,
        "run_name": run_name,
        "experiment_name": experiment,
        "namespace": namespace,
        "service_account": service_account,
    }


def recurring_run_request(
    package_path: str | os.PathLike,
    arguments: dict[str, Any],
    cron: str,
    job_name: str,
    experiment_id: str,
    service_account: str | None = None,
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
    }


def _client(target: Target):
    import kfp

    token = os.environ.get("KFP_TOKEN", "").strip() or None
    return kfp.Client(host=target.host, namespace=target.namespace, existing_token=token)


class _Package:
    """The pipeline package to send: a given YAML, or one compiled now into a temp folder."""

    def __init__(self, package: str | None):
        self.package = package
        self.tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        if self.package:
            if not Path(self.package).is_file():
                raise RemoteError(f"{self.package}: no such pipeline package")
            return Path(self.package)
        from adg_kfp.pipelines.local import compile_pipeline

        self.tmp = tempfile.TemporaryDirectory(prefix="adg-compile-")
        path = Path(self.tmp.name) / "adg_pipeline.yaml"
        compile_pipeline(path)
        return path

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
) -> str:
    """Start one run; returns its id."""
    target = resolve_target(host, namespace, service_account)
    with _Package(package) as path:
        arguments = parse_params(params, path)
        request = run_request(
            path, arguments, run_name, experiment, target.namespace, target.service_account
        )
        result = _client(target).create_run_from_pipeline_package(**request)
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
) -> str:
    """Create a recurring run; returns its id."""
    target = resolve_target(host, namespace, service_account)
    cron_expression(cron)
    with _Package(package) as path:
        arguments = parse_params(params, path)
        client = _client(target)
        exp = client.create_experiment(experiment, namespace=target.namespace)
        request = recurring_run_request(
            path, arguments, cron, name, exp.experiment_id, target.service_account
        )
        job = client.create_recurring_run(**request)
    return job.recurring_run_id
