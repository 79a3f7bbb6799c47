"""`adg submit` / `adg schedule` / `adg retry`: what is sent to kfp.Client, built and checked
offline, and the CLI's one-line errors before any request is made. No KFP server runs here and
kfp.Client is not mocked: `adg submit` and `adg retry` drive the real kfp.Client against a
loopback stand-in of the API that checks every request against the API's own swagger documents
(tests/kfp_api_stub.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import loopback_server, yaml_documents

from adg.cli import main
from adg_kfp.pipelines import remote

PACKAGE = Path(__file__).resolve().parents[1] / "pipelines" / "adg_pipeline.yaml"


def test_target_from_flags_or_env(monkeypatch):
    monkeypatch.setenv("KFP_HOST", "http://env-host:8888")
    monkeypatch.setenv("KFP_NAMESPACE", "team-a")
    assert remote.resolve_target() == remote.Target("http://env-host:8888", "team-a")
    assert remote.resolve_target("http://flag:1", "team-b") == remote.Target(
        "http://flag:1", "team-b"
    )
    monkeypatch.delenv("KFP_HOST")
    monkeypatch.delenv("KFP_NAMESPACE")
    with pytest.raises(remote.RemoteError, match="KFP_HOST"):
        remote.resolve_target()
    assert remote.resolve_target("http://h", None).namespace is None


def test_params_are_typed_by_the_compiled_pipeline():
    params = remote.parse_params(
        [
            "select_budget=1000",
            "generate_temperature=1.2",
            "score_all_metrics=true",
            "ingest_input=s3://pools/a.jsonl",
            'gpu_node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}',
            'gpu_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}]',
            "model=",
        ],
        PACKAGE,
    )
    assert params == {
        "select_budget": 1000,
        "generate_temperature": 1.2,
        "score_all_metrics": True,
        "ingest_input": "s3://pools/a.jsonl",
        "gpu_node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "gpu_tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        "model": "",
    }


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("select_budget=ten", "not a valid number_integer"),
        ("no_such_param=1", "no such parameter"),
        ("gpu_tolerations={}", "expected a JSON list"),
        ("score_all_metrics=maybe", "not a valid boolean"),
        ("justakey", "expected key=value"),
    ],
)
def test_bad_params_are_one_clear_error(pair, message):
    with pytest.raises(remote.RemoteError, match=message):
        remote.parse_params([pair], PACKAGE)


def test_cron_gets_kfp_seconds_field():
    assert remote.cron_expression("0 3 * * *") == "0 0 3 * * *"
    assert remote.cron_expression("30 0 3 * * 1") == "30 0 3 * * 1"
    with pytest.raises(remote.RemoteError, match="5 fields"):
        remote.cron_expression("@daily")


def test_run_request():
    request = remote.run_request(PACKAGE, {"select_budget": 5}, "nightly", "adg", "team-a")
    assert request == {
        "pipeline_file": str(PACKAGE),
        "arguments": {"select_budget": 5},
        "run_name": "nightly",
        "experiment_name": "adg",
        "namespace": "team-a",
        "service_account": None,
        "pipeline_root": None,
    }
    request = remote.run_request(PACKAGE, {}, None, "adg", None, "adg-pipeline-runner")
    assert request["service_account"] == "adg-pipeline-runner"


def test_service_account_from_flag_or_environment(monkeypatch):
    monkeypatch.setenv("KFP_SERVICE_ACCOUNT", "from-env")
    assert remote.resolve_target("http://h").service_account == "from-env"
    assert remote.resolve_target("http://h", None, "flag").service_account == "flag"
    monkeypatch.delenv("KFP_SERVICE_ACCOUNT")
    assert remote.resolve_target("http://h").service_account is None


def test_recurring_run_request_never_catches_up_or_overlaps():
    request = remote.recurring_run_request(
        PACKAGE, {"ingest_pool_prefix": "s3://b/pools/"}, "0 3 * * *", "adg-nightly", "exp-1"
    )
    assert request["cron_expression"] == "0 0 3 * * *"
    assert request["max_concurrency"] == 1
    assert request["no_catchup"] is True
    assert request["enabled"] is True
    assert request["experiment_id"] == "exp-1" and request["job_name"] == "adg-nightly"
    assert request["params"] == {"ingest_pool_prefix": "s3://b/pools/"}
    assert request["pipeline_package_path"] == str(PACKAGE)


def test_request_keywords_match_kfp_client():
    """The built keyword arguments are ones kfp.Client's methods accept."""
    import inspect

    import kfp

    run_kw = set(inspect.signature(kfp.Client.create_run_from_pipeline_package).parameters)
    rec_kw = set(inspect.signature(kfp.Client.create_recurring_run).parameters)
    assert set(remote.run_request(PACKAGE, {}, None, "adg", None)) <= run_kw
    assert set(remote.recurring_run_request(PACKAGE, {}, "0 3 * * *", "n", "e")) <= rec_kw


def test_cli_errors_before_any_request(monkeypatch, capsys):
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert main(["submit", "--package", str(PACKAGE)]) == 2
    assert "KFP_HOST" in capsys.readouterr().err
    args = ["schedule", "--host", "http://127.0.0.1:9", "--package", str(PACKAGE)]
    assert main([*args, "--cron", "every day"]) == 2
    assert "5 fields" in capsys.readouterr().err
    assert main([*args, "--cron", "0 3 * * *", "--param", "select_budget=x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "select_budget" in err
    assert main(["submit", "--host", "http://h", "--package", "/nonexistent.yaml"]) == 2
    assert "no such pipeline package" in capsys.readouterr().err


# --- backend version, caching, pipeline root ---------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "ok"),
    [
        ("2.17.0", True),
        ("v2.17.3-rc.1", True),
        ("2.18.0", True),
        ("2.16.1", False),
        ("2.14.0", False),
        ("1.8.5", False),
    ],
)
def test_backend_version_check(tag, ok):
    if ok:
        assert remote.check_backend_version(tag) == remote.parse_version(tag)
    else:
        with pytest.raises(remote.RemoteError, match=r"needs 2\.17\.0 or newer"):
            remote.check_backend_version(tag)
    assert remote.check_backend_version("dev") is None  # unknown: a warning, not a refusal


@pytest.fixture
def healthz_server():
    """A loopback HTTP server answering KFP's healthz like an API server of a given tag."""
    import json
    from http.server import BaseHTTPRequestHandler

    state = {"tag": "2.5.0", "paths": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state["paths"].append(self.path)
            body = json.dumps({"commit_sha": "abc", "tag_name": state["tag"], "multi_user": False})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    with loopback_server(Handler) as url:
        yield url, state


def test_server_version_is_read_through_kfp_client(healthz_server):
    host, state = healthz_server
    client = remote._client(remote.Target(host, None))
    assert remote.server_version(client) == "2.5.0"
    assert state["paths"][-1] == remote.HEALTHZ_PATH


def test_submit_refuses_an_old_backend_before_sending(healthz_server, capsys):
    host, state = healthz_server
    args = ["submit", "--host", host, "--package", str(PACKAGE), "--param", "select_budget=5"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "backend is 2.5.0" in err and "2.17.0" in err
    # Nothing but health was asked (kfp.Client checks v2beta1 itself, then our v1beta1 read).
    assert {p.rsplit("/", 1)[-1] for p in state["paths"]} == {"healthz"}


def test_no_cache_package_turns_caching_off_everywhere(tmp_path):
    import yaml

    path = remote.package_without_cache(PACKAGE, tmp_path / "p.yaml")
    spec, platform = yaml.safe_load_all(path.read_text())
    original = next(yaml_documents(PACKAGE.read_text()))
    for component in [spec["root"], *spec["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            assert not task.get("cachingOptions", {}).get("enableCache"), task["taskInfo"]
    assert platform["platforms"]["kubernetes"]["deploymentSpec"]  # the platform spec is kept
    assert set(spec["components"]) == set(original["components"])
    # Read back by PyYAML's pure-Python loader, the copy is the original with only caching off.
    docs = list(yaml_documents(PACKAGE.read_text()))
    for component in [docs[0]["root"], *docs[0]["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task["cachingOptions"] = {}
    assert [spec, platform] == docs


def test_pipeline_root_and_caching_choices_reach_the_request():
    run = remote.run_request(PACKAGE, {}, None, "adg", None, pipeline_root="s3://b/root")
    rec = remote.recurring_run_request(PACKAGE, {}, "0 3 * * *", "n", "e", pipeline_root="")
    assert run["pipeline_root"] == "s3://b/root" and rec["pipeline_root"] is None
    # kfp.Client's enable_caching is never sent (it overrides only top-level tasks).
    assert "enable_caching" not in run and "enable_caching" not in rec
    import inspect

    assert inspect.signature(remote.schedule).parameters["cache"].default is False
    assert inspect.signature(remote.submit).parameters["cache"].default is True


def test_gpu_pod_parameters_are_kubernetes_quantities():
    """GPU counts, CPU and memory are strings the driver parses as quantities in the cluster:
    a value it would refuse is refused before anything is sent."""
    assert remote.parse_params(["score_gpu_count=2", "train_memory=48Gi"], PACKAGE) == {
        "score_gpu_count": "2",
        "train_memory": "48Gi",
    }
    for bad, message in (
        ("score_gpu_count=1.5", "a whole number of GPUs"),
        ("generate_memory=24 GB", "not a Kubernetes quantity"),
    ):
        with pytest.raises(remote.RemoteError, match=message):
            remote.parse_params([bad], PACKAGE)


# --- the requests on the wire, against the KFP API's own schema (tests/kfp_api_stub.py) ----------
# No KFP server runs here: a loopback stand-in checks every request the real kfp.Client sends
# (method, path, query, JSON body) against the API's swagger documents of backend 2.17.0.


@pytest.fixture
def kfp_api():
    from kfp_api_stub import KfpApiStub

    stub = KfpApiStub()
    with loopback_server(stub.handler()) as stub.url:
        yield stub


def test_the_stand_in_refuses_what_the_api_refuses(kfp_api):
    # The check is real: a misspelt field, a wrong type, an undeclared query parameter and a path
    # the API does not have are refused (the API server errors on unknown fields too).
    assert (
        kfp_api.handle("POST", "/apis/v2beta1/runs", b'{"display_name": "r", "runtimeConfig": {}}')[
            0
        ]
        == 400
    )
    assert kfp_api.handle("POST", "/apis/v2beta1/runs", b'{"display_name": 7}')[0] == 400
    assert kfp_api.handle("GET", "/apis/v2beta1/experiments?name=adg", b"")[0] == 400
    assert kfp_api.handle("POST", "/apis/v2beta1/runs/r1:rerun", b"")[0] == 404
    problems = "\n".join(kfp_api.problems)
    assert "'runtimeConfig' was unexpected" in problems
    assert "body display_name: 7 is not of type 'string'" in problems
    assert "query parameter 'name' is not declared" in problems
    assert "POST /apis/v2beta1/runs/r1:rerun: no such operation" in problems


def test_submit_sends_requests_the_api_accepts(kfp_api, capsys):

    args = ["submit", "--host", kfp_api.url, "--package", str(PACKAGE), "--run-name", "r1"]
    args += ["--param", "select_budget=5", "--service-account", "adg-pipeline-runner"]
    assert main([*args, "--pipeline-root", "s3://bucket/root", "--namespace", "team"]) == 0
    assert kfp_api.problems == []
    # (kfp.Client reads /apis/v2beta1/healthz itself only when no namespace is given)
    assert [(c["method"], c["path"]) for c in kfp_api.calls] == [
        ("GET", remote.HEALTHZ_PATH),  # the backend's version
        ("GET", "/apis/v2beta1/experiments"),  # is there an experiment "adg"?
        ("POST", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/runs"),
    ]
    experiment = kfp_api.calls[2]["json"]
    assert experiment == {"display_name": "adg", "namespace": "team"}
    run = kfp_api.calls[3]["json"]
    assert run["display_name"] == "r1" and run["service_account"] == "adg-pipeline-runner"
    assert run["experiment_id"] == kfp_api.experiments[0]["experiment_id"]
    assert run["runtime_config"] == {
        "parameters": {"select_budget": 5},
        "pipeline_root": "s3://bucket/root",
    }
    spec, platform = yaml_documents(PACKAGE.read_text())
    assert run["pipeline_spec"] == {"pipeline_spec": spec, "platform_spec": platform}
    (run_id,) = kfp_api.runs
    assert capsys.readouterr().out.endswith(
        f"Run details: {kfp_api.url}/#/runs/details/{run_id}\nsubmitted run {run_id}\n"
    )


def test_retry_sends_kfp_s_retry_run(kfp_api, capsys):
    run_id = "4b8a9c6e-0d1f-4f3a-9e2b-7c5d1a0b3e21"
    kfp_api.runs[run_id] = {"run_id": run_id, "state": "FAILED"}
    assert main(["retry", run_id, "--host", kfp_api.url]) == 0
    assert kfp_api.problems == []
    last = kfp_api.calls[-1]
    assert (last["method"], last["path"], last["operation"]) == (
        "POST",
        f"/apis/v2beta1/runs/{run_id}:retry",
        "RunService_RetryRun",
    )
    assert kfp_api.runs[run_id]["state"] == "RUNNING"
    out = capsys.readouterr().out
    assert out == f"retrying run {run_id}: its failed tasks run again, the others are kept\n"


def test_retry_refused_by_the_server_is_one_line(kfp_api, capsys):
    kfp_api.runs["r-running"] = {"run_id": "r-running", "state": "RUNNING"}
    assert main(["retry", "r-running", "--host", kfp_api.url]) == 2
    err = capsys.readouterr().err
    assert err == (
        "adg retry: error: retry r-running: the server refused: 400: Failed to retry run "
        "r-running: Workflow must be Failed/Error to retry: workflow cannot be retried\n"
    )
    assert main(["retry", "r-gone", "--host", kfp_api.url]) == 2
    assert capsys.readouterr().err == (
        "adg retry: error: retry r-gone: the server refused: 404: Run r-gone not found\n"
    )
    assert kfp_api.problems == []
    # An empty id and an old backend are refused before the retry is sent.
    sent = len(kfp_api.calls)
    assert main(["retry", " ", "--host", kfp_api.url]) == 2
    assert "RUN_ID: empty" in capsys.readouterr().err and len(kfp_api.calls) == sent
    kfp_api.tag = "2.16.1"
    kfp_api.runs["r-failed"] = {"run_id": "r-failed", "state": "FAILED"}
    assert main(["retry", "r-failed", "--host", kfp_api.url]) == 2
    assert "backend is 2.16.1" in capsys.readouterr().err
    assert kfp_api.runs["r-failed"]["state"] == "FAILED"
    assert all(not c["path"].endswith(":retry") for c in kfp_api.calls[sent:])


@pytest.mark.parametrize("name", ["adg_pipeline.yaml", "adg_select.yaml"])
def test_a_package_reads_as_pyyaml_pure_python_loader_reads_it(name):
    import yaml

    path = PACKAGE.parent / name
    assert remote.load_package(path) == list(yaml.safe_load_all(path.read_text()))
