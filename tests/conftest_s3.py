"""A real S3 API on loopback for tests: moto's server mode on 127.0.0.1 and a free port.

Import the fixtures into a test module (`from conftest_s3 import s3_server, bucket`). The server
runs for the whole session; the environment points boto3 (and every `adg` subprocess a test
starts) at it with dummy credentials, and is restored afterwards. Nothing patches boto3.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

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
    from adg import storage

    name = f"adg-test-{uuid.uuid4().hex[:12]}"
    storage.client().create_bucket(Bucket=name)
    return name
