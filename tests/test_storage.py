"""Object storage (adg.io.storage) against a real S3 API (moto's server on loopback): single
objects, throttling, multipart, s3:// pools in ingest, the model cache and conditional writes. The
export manifest is in test_export.py, the curation ledger in test_ledger.py."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest
from helpers import loopback_server, sample_records

from adg.cli import main
from adg.io import storage

# --- URIs and single objects ---------------------------------------------------------------------


def test_split_and_join():
    assert storage.split_uri("s3://b/some/key.jsonl") == ("b", "some/key.jsonl")
    assert storage.split_uri("s3://b") == ("b", "")
    assert storage.join("s3://b/pre/", "run", "/x.json") == "s3://b/pre/run/x.json"
    with pytest.raises(storage.StorageError, match="not an s3:// URI"):
        storage.split_uri("/local/path")
    with pytest.raises(storage.StorageError, match="no bucket"):
        storage.split_uri("s3:///key")


def test_endpoint_env_precedence(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://aws-env:9000")
    monkeypatch.setenv("ADG_S3_ENDPOINT_URL", "http://adg-env:9000")
    assert storage.endpoint_url() == "http://adg-env:9000"
    monkeypatch.setenv("ADG_S3_ENDPOINT_URL", "  ")
    assert storage.endpoint_url() == "http://aws-env:9000"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert storage.endpoint_url() is None


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>adg-test</RequestId></Error>"
)


@contextlib.contextmanager
def throttling_proxy(upstream: str, throttled: int):
    """A loopback HTTP proxy in front of the moto server: it answers the first `throttled`
    requests with 503 SlowDown (S3's throttling error, its XML body) and forwards the others to
    `upstream` unchanged. Yields (its URL, the list of "METHOD path" of every request it got)."""
    import http.client
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import urlsplit

    seen: list[str] = []
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def handle_one_request(self):
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append(f"{self.command} {self.path}")
            if len(seen) <= throttled:
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(SLOW_DOWN)
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

    with loopback_server(Handler) as url:
        yield url, seen


def test_client_retries_adaptively(s3_server):
    config = storage.client().meta.config
    assert config.retries["mode"] == "adaptive"
    assert config.retries["total_max_attempts"] == 3  # ADG_S3_MAX_ATTEMPTS of the fixture


@pytest.mark.slow  # ~9 s of botocore's backoff and rate limiting, waited for real
def test_a_throttled_request_is_retried_up_to_the_attempts(bucket, monkeypatch):
    # Throttling (503 SlowDown) on the real wire: the client sends the request again until it
    # goes through, and gives up after ADG_S3_MAX_ATTEMPTS (3 here) requests in all.
    uri = f"s3://{bucket}/retried.txt"
    with throttling_proxy(os.environ["AWS_ENDPOINT_URL"], throttled=2) as (url, seen):
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        storage.write_bytes(uri, b"through\n")
        assert seen == [f"PUT /{bucket}/retried.txt"] * 3
    monkeypatch.undo()  # straight to moto again
    assert storage.read_bytes(uri) == b"through\n"

    with throttling_proxy(os.environ["AWS_ENDPOINT_URL"], throttled=3) as (url, seen):
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        with pytest.raises(storage.StorageError, match=r"retried\.txt: SlowDown: "):
            storage.read_bytes(uri)
        assert seen == [f"GET /{bucket}/retried.txt"] * 3
        # A missing object is an answer, not a failure: asked once, not retried.
        assert storage.head(f"s3://{bucket}/nope") is None
        assert seen[3:] == [f"HEAD /{bucket}/nope"]


def test_roundtrip_head_and_missing(bucket, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("hello\n")
    uri = f"s3://{bucket}/dir/a.txt"
    storage.upload(src, uri)
    info = storage.head(uri)
    assert info.size == 6 and info.etag == hashlib.md5(b"hello\n").hexdigest()
    assert storage.download(uri, tmp_path / "out" / "b.txt").read_text() == "hello\n"
    assert storage.head(f"s3://{bucket}/dir/nope") is None
    with pytest.raises(FileNotFoundError, match="no such object"):
        storage.download(f"s3://{bucket}/dir/nope", tmp_path / "c")
    with pytest.raises(storage.StorageError, match="needs an object key"):
        storage.upload(src, f"s3://{bucket}/dir/")


def test_multipart_upload_and_download(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("ADG_S3_MULTIPART_MB", "5")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (11 * 1024 * 1024 // 256))
    uri = f"s3://{bucket}/big.bin"
    storage.upload(big, uri)
    assert storage.head(uri).etag.endswith("-3")  # 11 MiB in 5 MiB parts
    out = storage.download(uri, tmp_path / "back.bin")
    assert storage.sha256_file(out) == storage.sha256_file(big)


# --- pools from object storage -------------------------------------------------------------------


def test_ingest_reads_s3_pool_and_names_the_uri_in_rejects(bucket, tmp_path):
    records = sample_records(5)
    lines = [json.dumps(r) for r in records] + ['{"instruction": ""}']
    src = tmp_path / "pool.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    uri = f"s3://{bucket}/pools/pool.jsonl.gz"
    storage.upload(src, uri)
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    assert main(["ingest", uri, "--output", str(out), "--rejects", str(rejects)]) == 0
    assert len(out.read_text().splitlines()) == 5
    reject = json.loads(rejects.read_text())
    assert reject["file"] == uri and reject["line"] == 6


def test_ingest_missing_s3_pool_is_one_line(bucket, tmp_path, capsys):
    rc = main(["ingest", f"s3://{bucket}/nope.jsonl", "--output", str(tmp_path / "o.jsonl")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such object" in err


@pytest.mark.parametrize(("content", "message"), [(b"", "the pool is empty"), (b"[1", "no valid")])
def test_ingest_s3_errors_name_the_uri_not_the_temp_copy(
    bucket, tmp_path, capsys, content, message
):
    uri = f"s3://{bucket}/pools/empty.jsonl"
    storage.write_bytes(uri, content)
    rc = main(["ingest", uri, "--output", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert uri in err and message in err and "adg-s3-" not in err and "/tmp" not in err


def test_read_json_error_has_no_doubled_at(bucket):
    uri = f"s3://{bucket}/doc.json"
    storage.write_bytes(uri, b'{"a": "\x01"}')
    with pytest.raises(storage.StorageError) as err:
        storage.read_json(uri)
    assert "at at" not in str(err.value) and "Invalid control character, line 1" in str(err.value)


# --- model cache ---------------------------------------------------------------------------------


def upload_folder(folder: Path, uri: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            storage.upload(path, storage.join(uri, path.relative_to(folder).as_posix()))


def test_s3_model_is_cached_once_and_loads(bucket, tiny_model_dir, tmp_path, monkeypatch):
    from adg.io import models

    monkeypatch.setenv("ADG_MODEL_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{bucket}/models/tiny"
    upload_folder(tiny_model_dir, uri)
    path = models.resolve_model(uri)
    assert path == tmp_path / "cache" / bucket / "models" / "tiny"
    assert (path / "config.json").is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}

    # A second resolve downloads nothing; a changed object is fetched again.
    assert models.resolve_model(uri) == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == stamps
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config["adg_test_marker"] = 1
    changed = tmp_path / "config.json"
    changed.write_text(json.dumps(config))
    storage.upload(changed, f"{uri}/config.json")
    models.resolve_model(uri)
    assert json.loads((path / "config.json").read_text())["adg_test_marker"] == 1

    tokenizer, model = models.load(uri, device="cpu")
    assert model.config.hidden_size == 32 and len(tokenizer) > 100


def test_cache_redownloads_a_damaged_file(bucket, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ADG_MODEL_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{bucket}/m"
    upload_folder(tiny_model_dir, uri)
    path = storage.cache_model(uri)
    (path / "config.json").write_text("{}")  # truncated by a crash, say
    storage.cache_model(uri)
    assert (path / "config.json").read_bytes() == (tiny_model_dir / "config.json").read_bytes()


def test_cache_single_gguf_object(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("ADG_MODEL_CACHE", str(tmp_path / "cache"))
    blob = tmp_path / "model.gguf"
    blob.write_bytes(b"GGUF" + bytes(100))
    storage.upload(blob, f"s3://{bucket}/ggufs/model.gguf")
    path = storage.cache_model(f"s3://{bucket}/ggufs/model.gguf")
    assert path == tmp_path / "cache" / bucket / "ggufs" / "model.gguf"
    assert path.read_bytes() == blob.read_bytes()


@pytest.mark.parametrize("key", ["../evil", "a/../../evil", "/etc/passwd", "a//b", "a/./b"])
def test_unsafe_keys_are_refused(key):
    with pytest.raises(storage.StorageError, match="unsafe object key"):
        storage.safe_relative_key("models/m/", "models/m/" + key)


def test_cache_refuses_a_key_that_escapes(bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("ADG_MODEL_CACHE", str(tmp_path / "cache"))
    storage.write_bytes(f"s3://{bucket}/m/config.json", b"{}")
    storage.write_bytes(f"s3://{bucket}/m/sub/../../../outside.txt", b"x")
    keys = [o.key for o in storage.list_objects(f"s3://{bucket}/m/")]
    assert "m/sub/../../../outside.txt" in keys  # the store kept the key as given
    with pytest.raises(storage.StorageError, match="unsafe object key"):
        storage.cache_model(f"s3://{bucket}/m")
    assert not list(tmp_path.rglob("outside.txt"))


def test_missing_model_prefix(bucket):
    with pytest.raises(FileNotFoundError, match="no objects under"):
        storage.cache_model(f"s3://{bucket}/nothing-here")


# --- conditional writes (the curation ledger's and index's guard; test_ledger.py) ---------------


def test_conditional_writes_and_reads(bucket, tmp_path):
    uri = f"s3://{bucket}/doc.json"
    storage.write_json(uri, {"n": 1}, if_none_match=True)
    with pytest.raises(storage.PreconditionFailed):
        storage.write_json(uri, {"n": 2}, if_none_match=True)
    data, etag = storage.read_versioned(uri)
    assert json.loads(data) == {"n": 1}
    storage.write_json(uri, {"n": 3}, if_match=etag)
    with pytest.raises(storage.PreconditionFailed):
        storage.write_json(uri, {"n": 4}, if_match=etag)  # stale: someone wrote in between
    assert storage.read_json(uri) == {"n": 3}
    with pytest.raises(storage.PreconditionFailed):
        storage.download(uri, tmp_path / "old.json", if_match=etag)
    current = storage.head(uri).etag
    assert json.loads(storage.download(uri, tmp_path / "x.json", if_match=current).read_text())
    assert storage.read_versioned(f"s3://{bucket}/absent.json") == (None, None)
