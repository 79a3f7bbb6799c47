"""A stand-in for the Kubeflow Pipelines API server's HTTP side, on loopback, for tests that drive
the real kfp.Client (and kfp_server_api) against it. No KFP server runs here: this is the
closest check available, and what it checks comes from the API's own definitions, not from the
code under test.

Every request must be an operation of the API's OpenAPI (swagger 2.0) documents at backend
2.17.0 (the oldest backend `adg submit` accepts), vendored unchanged in tests/kfp_api/ (see the
README there for their source): its method and path match an operation, its query parameters
are declared by that operation, and its JSON body is valid against the operation's body schema.
Unknown body fields are refused, as the API server refuses them (its JSON unmarshaler sets
`DiscardUnknown: false`: backend/src/apiserver/common/utils.go, `CustomMarshaler`). A request
that fails any of this gets a 400 and is listed in `problems`, which a test asserts empty.

The answers are the minimum a real server gives, each checked against the operation's 200
response schema: an experiment store (list by name, create), a created run with an id, and
RetryRun, which refuses an unknown run (404) and a run that has not failed (400, as the server's
`GenerateRetryExecution` refuses a workflow that is not Failed/Error). The two healthz paths are
served as the API server's own handler serves them (commit_sha, tag_name, multi_user:
backend/src/apiserver/main.go, `newHealthzResponse`), not by the generated gateway.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema

SPECS = Path(__file__).resolve().parent / "kfp_api"
SPEC_FILES = [
    "v2beta1/run.swagger.json",
    "v2beta1/experiment.swagger.json",
    "v2beta1/healthz.swagger.json",
    "v1beta1/healthz.swagger.json",
]


def _strict(schema: Any) -> Any:
    """The schema with unknown properties refused in every object that lists its properties."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@dataclass
class Operation:
    method: str
    template: str
    pattern: re.Pattern
    spec: dict[str, Any]
    definitions: dict[str, Any]

    @property
    def operation_id(self) -> str:
        return self.spec["operationId"]

    def parameters(self, where: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.spec.get("parameters", []) if p["in"] == where}

    def validator(self, schema: dict[str, Any], strict: bool):
        definitions = _strict(self.definitions) if strict else self.definitions
        root = {**(_strict(schema) if strict else schema), "definitions": definitions}
        return jsonschema.Draft4Validator(root)


def load_operations() -> list[Operation]:
    ops = []
    for name in SPEC_FILES:
        doc = json.loads((SPECS / name).read_text(encoding="utf-8"))
        assert doc["swagger"] == "2.0", name
        for template, methods in doc["paths"].items():
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/:]+)", re.escape(template))
            for method, spec in methods.items():
                ops.append(
                    Operation(
                        method.upper(),
                        template,
                        re.compile(f"^{regex}$"),
                        spec,
                        doc.get("definitions", {}),
                    )
                )
    return ops


def _status(code: int, message: str) -> dict[str, Any]:
    """googleRpcStatus, the error body of the API (gRPC codes: 3 invalid argument, 5 not found)."""
    return {"code": code, "message": message, "details": []}


@dataclass
class KfpApiStub:
    """The state and the record of requests; `url` once served (`handler`)."""

    tag: str = "2.17.0"
    operations: list[Operation] = field(default_factory=load_operations)
    calls: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    def find(self, method: str, path: str) -> tuple[Operation | None, dict[str, str]]:
        for op in self.operations:
            found = op.pattern.match(path)
            if op.method == method and found:
                return op, found.groupdict()
        return None, {}

    def check(self, op: Operation, query: list[tuple[str, str]], raw: bytes) -> list[str]:
        """Problems of one request against its operation (empty: valid)."""
        problems = []
        declared = op.parameters("query")
        for name, value in query:
            spec = declared.get(name)
            if spec is None:
                problems.append(f"query parameter {name!r} is not declared")
            elif spec.get("type") == "integer" and not re.fullmatch(r"-?\d+", value):
                problems.append(f"query parameter {name}={value!r} is not an integer")
        body_params = list(op.parameters("body").values())
        if not body_params:
            if raw.strip() not in (b"", b"{}"):
                problems.append(f"a body was sent to an operation that takes none: {raw[:80]!r}")
            return problems
        try:
            body = json.loads(raw or b"null")
        except ValueError as err:
            return [*problems, f"body is not JSON: {err}"]
        if body is None and body_params[0].get("required"):
            return [*problems, "the required body is missing"]
        validator = op.validator(body_params[0]["schema"], strict=True)
        for error in validator.iter_errors(body):
            where = "/".join(str(p) for p in error.absolute_path) or "(body)"
            problems.append(f"body {where}: {error.message[:200]}")
        return problems

    def answer(self, op: Operation, params: dict[str, str], query: dict[str, str], body: Any):
        """(status, JSON body) of a valid request."""
        oid = op.operation_id
        if op.template.endswith("/healthz"):
            return 200, {"commit_sha": "0" * 7, "tag_name": self.tag, "multi_user": False}
        if oid == "ExperimentService_ListExperiments":
            wanted = {
                p.get("string_value")
                for p in json.loads(query.get("filter") or "{}").get("predicates", [])
                if p.get("key") in ("name", "display_name")
            }
            found = [e for e in self.experiments if not wanted or e["display_name"] in wanted]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if oid == "ExperimentService_CreateExperiment":
            experiment = {**body, "experiment_id": str(uuid.uuid4())}
            self.experiments.append(experiment)
            return 200, experiment
        if oid == "RunService_CreateRun":
            run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        if oid == "RunService_RetryRun":
            run = self.runs.get(params["run_id"])
            if run is None:
                return 404, _status(5, f"Run {params['run_id']} not found")
            if run["state"] != "FAILED":
                message = (
                    f"Failed to retry run {params['run_id']}: Workflow must be Failed/Error "
                    "to retry: workflow cannot be retried"
                )
                return 400, _status(3, message)
            run["state"] = "RUNNING"
            return 200, {}
        return 501, _status(12, f"{oid}: not served by this stand-in")

    def handle(self, method: str, target: str, raw: bytes) -> tuple[int, Any]:
        split = urlsplit(target)
        query = parse_qsl(split.query, keep_blank_values=True)
        op, params = self.find(method, split.path)
        call = {"method": method, "path": split.path, "query": dict(query), "body": raw}
        self.calls.append(call)
        if op is None:
            self.problems.append(f"{method} {split.path}: no such operation in the API")
            return 404, _status(5, "no such operation")
        call["operation"] = op.operation_id
        problems = self.check(op, query, raw)
        if problems:
            self.problems += [f"{op.operation_id}: {p}" for p in problems]
            return 400, _status(3, "; ".join(problems))
        body = json.loads(raw) if raw.strip() else None
        call["json"] = body
        status, answer = self.answer(op, params, dict(query), body)
        if status == 200:
            schema = op.spec["responses"]["200"]["schema"]
            for error in op.validator(schema, strict=False).iter_errors(answer):
                self.problems.append(f"{op.operation_id}: the stub's answer: {error.message}")
        return status, answer

    def handler(self):
        """The HTTP request handler class answering for this stub (serve it with
        `helpers.loopback_server`, and set `url` to where it listens)."""
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, answer = stub.handle(self.command, self.path, raw)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _any

        return Handler
