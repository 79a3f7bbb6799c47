"""Shared fixtures: tiny random models saved once per session (built by helpers.py, no download),
a twelve-record pool, and a real S3 API on loopback (moto's server mode on 127.0.0.1 and a free
port; the environment points boto3, and every `adg` subprocess a test starts, at it with dummy
credentials while it runs, and is restored afterwards; nothing patches boto3).
"""

from __future__ import annotations

import builtins
import gc
import os
import socket
import sys
import uuid
from pathlib import Path

import pytest
from ci_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401
from helpers import N_RECORDS, REPO, sample_records, save_tiny, write_jsonl

sys.path.insert(0, str(REPO))  # for bench.baselines, the straightforward reference implementations
# No progress bars in test output (kfp.local's stage subprocesses inherit this too).
os.environ.setdefault("ADG_PROGRESS", "0")


def pytest_collection_finish(session):
    """Everything imported by now (torch, transformers, kfp, the pipelines: ~250 K objects) is
    kept out of the collector's full passes: they are long-lived, and each pass over them made
    every test that builds many objects (a parsed pipeline, a pool) pay for them again."""
    gc.freeze()


@pytest.fixture(autouse=True)
def _print_restored():
    """kfp.local indents a task's output by swapping `builtins.print`, and a run that fails in a
    test can leave the swap in place; later tests' captured output would then be indented."""
    original = builtins.print
    yield
    builtins.print = original


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Llama-style model folder (tokenizer included)."""
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    """A saved tiny Qwen2-style model folder."""
    return save_tiny(tmp_path_factory.mktemp("tiny-qwen2"), family="qwen2")


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(tokenizer, model) loaded from the tiny Llama folder."""
    from adg.io import models

    return models.load(str(tiny_model_dir), device="cpu")


@pytest.fixture
def pool_file(tmp_path) -> Path:
    """Twelve real records from the in-repo sample as a JSONL pool."""
    return write_jsonl(tmp_path / "pool.jsonl", sample_records(12))


@pytest.fixture
def pool(tmp_path) -> Path:
    """The resume and checkpoint tests' pool: N_RECORDS real records from the in-repo sample."""
    return write_jsonl(tmp_path / "pool.jsonl", sample_records(N_RECORDS))


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "ADG_S3_MAX_ATTEMPTS": "3",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """The endpoint URL of a moto S3 server; the env is set for boto3 while it runs."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in [*env, "ADG_S3_ENDPOINT_URL"]}
    os.environ.pop("ADG_S3_ENDPOINT_URL", None)
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def bucket(s3_server) -> str:
    """A fresh, empty bucket's name."""
    from adg.io import storage

    name = f"adg-test-{uuid.uuid4().hex[:12]}"
    storage.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def serial_bucket(s3_server, monkeypatch) -> str:
    """A fresh bucket on a second moto S3 server, one that answers one request at a time; boto3
    (and every `adg` subprocess) is pointed at it for the test.

    For tests of writers racing on conditional writes: moto's threaded server checks a PUT's
    If-None-Match / If-Match and then stores the object in two steps, so two racing conditional
    PUTs can both pass there, while S3 (and MinIO) decide each one atomically. Served one by one,
    moto gives racing clients that guarantee; the clients still race over real HTTP.
    """
    import threading

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from adg.io import storage

    class OneRequestPerConnection(MotoRequestHandler):
        # HTTP/1.0: the connection closes after each answer, so no client holds the only worker.
        protocol_version = "HTTP/1.0"

    server = make_server(
        "127.0.0.1",
        _free_port(),
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
        request_handler=OneRequestPerConnection,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
    name = f"adg-race-{uuid.uuid4().hex[:12]}"
    storage.client().create_bucket(Bucket=name)
    try:
        yield name
    finally:
        server.shutdown()
        thread.join()
