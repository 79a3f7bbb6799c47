"""Object storage: `s3://` URIs on AWS S3 or any S3-compatible store (MinIO, SeaweedFS); the only
boto3 user in the project.

Credentials come only from the environment (in a cluster: a Kubernetes Secret turned into env
vars); the endpoint of a non-AWS store from `ADG_S3_ENDPOINT_URL` or `AWS_ENDPOINT_URL`. Every
client retries with botocore's adaptive mode (`ADG_S3_MAX_ATTEMPTS`, default 10) and moves large
files in parts (`ADG_S3_MULTIPART_MB`, default 64). Besides single objects (download, upload, small
JSON documents), this module caches a model prefix locally once (`cache_model`, verified by size
and ETag; no object key may escape the cache folder) and exports the selected subsets with a
manifest of their sha256 digests (`export_results`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from adg.config import adg_home
from adg.errors import AdgError

SCHEME = "s3://"
MANIFEST_NAME = ".adg-s3-manifest.json"


class StorageError(AdgError, ValueError):
    """An object-storage problem worth one line to the user (bad URI, no access, unsafe key)."""


class PreconditionFailed(StorageError):
    """A conditional read or write found the object changed (or present) since it was seen."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


def is_s3(uri: str | os.PathLike | None) -> bool:
    return str(uri or "").startswith(SCHEME)


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` → ("bucket", "some/key")."""
    if not is_s3(uri):
        raise StorageError(f"{uri}: not an s3:// URI")
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not bucket:
        raise StorageError(f"{uri}: no bucket in the URI")
    return bucket, key


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI prefix with single slashes."""
    out = uri.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def endpoint_url() -> str | None:
    """The S3 endpoint of a non-AWS store, or None for AWS itself."""
    for name in ("ADG_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


@lru_cache(maxsize=8)
def _client(endpoint: str | None, region: str, max_attempts: int):
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "adaptive", "total_max_attempts": max_attempts},
        # MinIO and SeaweedFS serve buckets as paths, not as subdomains.
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config
    )


def client():
    """A boto3 S3 client for the configured endpoint (cached per process)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return _client(endpoint_url(), region, _env_int("ADG_S3_MAX_ATTEMPTS", 10))


def transfer_config():
    from boto3.s3.transfer import TransferConfig

    part = max(5, _env_int("ADG_S3_MULTIPART_MB", 64)) * 1024 * 1024
    return TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=4)


@contextlib.contextmanager
def _errors(uri: str) -> Iterator[None]:
    """Turn botocore failures into one-line errors naming the URI."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        # 412 on a failed If-Match / If-None-Match; 409 when a concurrent conditional write won.
        if code in ("412", "PreconditionFailed", "409", "ConditionalRequestConflict"):
            raise PreconditionFailed(f"{uri}: changed (or appeared) since read ({code})") from None
        if code in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(f"{uri}: no such object") from None
        if code == "NoSuchBucket":
            raise FileNotFoundError(f"{uri}: no such bucket") from None
        raise StorageError(f"{uri}: {code or 'error'}: {err}") from None
    except BotoCoreError as err:
        raise StorageError(f"{uri}: {err}") from None


def head(uri: str) -> ObjectInfo | None:
    """Size and ETag of one object, or None when it does not exist."""
    bucket, key = split_uri(uri)
    try:
        with _errors(uri):
            meta = client().head_object(Bucket=bucket, Key=key)
    except FileNotFoundError:
        return None
    return ObjectInfo(key, int(meta["ContentLength"]), meta["ETag"].strip('"'))


def exists(uri: str) -> bool:
    return head(uri) is not None


def list_objects(prefix_uri: str, max_keys: int = 0) -> list[ObjectInfo]:
    """Every object whose key starts with the URI's key, sorted by key (with `max_keys` > 0: at
    most that many, from one listing request — enough to tell that the bucket answers)."""
    bucket, prefix = split_uri(prefix_uri)
    out: list[ObjectInfo] = []
    with _errors(prefix_uri):
        if max_keys > 0:
            pages = [client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=max_keys)]
        else:
            paginator = client().get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                out.append(ObjectInfo(obj["Key"], int(obj["Size"]), obj["ETag"].strip('"')))
    return sorted(out, key=lambda o: o.key)


def delete(uri: str) -> None:
    """Delete one object (no error when it is already gone)."""
    bucket, key = split_uri(uri)
    with _errors(uri):
        client().delete_object(Bucket=bucket, Key=key)


def download(uri: str, dest: str | os.PathLike, if_match: str | None = None) -> Path:
    """Download one object to `dest` atomically (a temp file beside it, then a rename).

    With `if_match` (an ETag, e.g. from a listing) the read fails with `PreconditionFailed` when
    the object is no longer that version, so what was read is exactly what was listed.
    """
    bucket, key = split_uri(uri)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    with _errors(uri):
        if if_match:
            # One streamed GET: a multipart download could not hold every part to one version.
            body = client().get_object(Bucket=bucket, Key=key, IfMatch=_quoted(if_match))["Body"]
            with open(tmp, "wb") as fh:
                for chunk in body.iter_chunks(1 << 20):
                    fh.write(chunk)
        else:
            client().download_file(bucket, key, str(tmp), Config=transfer_config())
    os.replace(tmp, dest)
    return dest


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def upload(path: str | os.PathLike, uri: str) -> None:
    """Upload a local file (in parts when large); the object appears whole or not at all."""
    bucket, key = split_uri(uri)
    if not key or key.endswith("/"):
        raise StorageError(f"{uri}: needs an object key, not a bucket or prefix")
    with _errors(uri):
        client().upload_file(str(path), bucket, key, Config=transfer_config())


def read_bytes(uri: str) -> bytes:
    bucket, key = split_uri(uri)
    with _errors(uri):
        return client().get_object(Bucket=bucket, Key=key)["Body"].read()


def read_versioned(uri: str) -> tuple[bytes | None, str | None]:
    """(content, ETag) of one object, or (None, None) when it does not exist; the ETag is what a
    conditional `write_bytes(..., if_match=etag)` compares against."""
    bucket, key = split_uri(uri)
    try:
        with _errors(uri):
            obj = client().get_object(Bucket=bucket, Key=key)
            return obj["Body"].read(), obj["ETag"].strip('"')
    except FileNotFoundError:
        return None, None


def write_bytes(
    uri: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    if_match: str | None = None,
    if_none_match: bool = False,
) -> None:
    """Put one object. `if_match` (an ETag): only over that version; `if_none_match`: only when
    no object exists. Either way a lost race raises `PreconditionFailed` instead of overwriting."""
    bucket, key = split_uri(uri)
    extra: dict[str, str] = {}
    if if_match:
        extra["IfMatch"] = _quoted(if_match)
    if if_none_match:
        extra["IfNoneMatch"] = "*"
    with _errors(uri):
        client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)


def read_json(uri: str, default: Any = None) -> Any:
    """A small JSON document, or `default` when the object does not exist."""
    try:
        data = read_bytes(uri)
    except FileNotFoundError:
        return default
    try:
        return json.loads(data)
    except json.JSONDecodeError as err:
        # json's own message may end in " at" ("Invalid control character at").
        msg = err.msg.removesuffix(" at")
        raise StorageError(f"{uri}: not valid JSON ({msg}, line {err.lineno})") from None


def write_json(
    uri: str, value: Any, if_match: str | None = None, if_none_match: bool = False
) -> None:
    data = (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    write_bytes(uri, data, "application/json", if_match=if_match, if_none_match=if_none_match)


@contextlib.contextmanager
def local_copy(uri: str | os.PathLike, if_match: str | None = None) -> Iterator[Path]:
    """A local path for a local path or an s3:// URI (downloaded to a temp folder, then removed).

    The temp file keeps the object's name, so `.gz` and `.json` suffixes still mean what they say.
    `if_match`: read exactly that version of the object (see `download`).
    """
    if not is_s3(uri):
        yield Path(uri)
        return
    _bucket, key = split_uri(str(uri))
    name = PurePosixPath(key).name or "object"
    with tempfile.TemporaryDirectory(prefix="adg-s3-") as work:
        yield download(str(uri), Path(work) / name, if_match=if_match)


# --- model cache -------------------------------------------------------------------------------


def safe_relative_key(prefix: str, key: str) -> str:
    """The part of `key` below `prefix`, refused when it could land outside the target folder."""
    rel = key[len(prefix) :] if key.startswith(prefix) else key
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise StorageError(f"unsafe object key {key!r}: refusing to write it outside the cache")
    return rel


def _inside(root: Path, rel: str) -> Path:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise StorageError(f"unsafe object key {rel!r}: it resolves outside {root}")
    return target


def model_cache_root() -> Path:
    """Where s3:// models are cached: `$ADG_MODEL_CACHE` (e.g. a PVC) or `$ADG_HOME/models/s3`."""
    env = os.environ.get("ADG_MODEL_CACHE", "").strip()
    if env:
        return Path(env)
    return adg_home() / "models" / "s3"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, obj: ObjectInfo, uri: str) -> None:
    """Size always; content too when the ETag is a plain MD5 (single-part uploads)."""
    size = path.stat().st_size
    if size != obj.size:
        raise StorageError(f"{uri}: downloaded {size} bytes, the store has {obj.size}")
    if len(obj.etag) == 32 and "-" not in obj.etag and _md5(path) != obj.etag:
        raise StorageError(f"{uri}: checksum differs from the store's ETag {obj.etag}")


def model_objects(uri: str) -> tuple[str, list[ObjectInfo]]:
    """(prefix the keys are relative to, objects) for a model prefix or a single model file."""
    bucket, key = split_uri(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    objects = [o for o in list_objects(f"{SCHEME}{bucket}/{prefix}") if not o.key.endswith("/")]
    if not objects and key:
        single = head(uri)
        if single is not None:
            parent = str(PurePosixPath(key).parent)
            return ("" if parent == "." else parent + "/"), [single]
    if not objects:
        raise FileNotFoundError(f"model not found: no objects under {uri}")
    return prefix, objects


def cache_model(uri: str) -> Path:
    """Download an s3:// model prefix (an HF folder) or a single .gguf object once; return the path.

    The cache folder mirrors `bucket/prefix` under `model_cache_root()`. A manifest of the objects'
    sizes and ETags, written last, marks a complete copy: a later call whose listing matches it
    downloads nothing, and a changed object is fetched again. A file lock keeps pods that share a
    PVC from downloading the same model at once.
    """
    bucket, key = split_uri(uri)
    prefix, objects = model_objects(uri)
    folder_key = prefix.rstrip("/")
    if folder_key:
        safe_relative_key("", folder_key)
    root = model_cache_root() / bucket / folder_key if folder_key else model_cache_root() / bucket
    rels = {o.key: safe_relative_key(prefix, o.key) for o in objects}
    root.mkdir(parents=True, exist_ok=True)
    wanted = {rels[o.key]: {"size": o.size, "etag": o.etag} for o in objects}
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest_path = root / MANIFEST_NAME
        have = {}
        if manifest_path.is_file():
            have = json.loads(manifest_path.read_text()).get("objects", {})
        fetched = 0
        for obj in objects:
            rel = rels[obj.key]
            target = _inside(root, rel)
            fresh = have.get(rel) == wanted[rel]
            if fresh and target.is_file() and target.stat().st_size == obj.size:
                continue
            object_uri = f"{SCHEME}{bucket}/{obj.key}"
            download(object_uri, target)
            _verify(target, obj, object_uri)
            fetched += 1
        if fetched or have != wanted:
            tmp = manifest_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"uri": uri, "objects": wanted}, indent=2))
            os.replace(tmp, manifest_path)
    if key and len(objects) == 1 and not key.endswith("/") and objects[0].key == key:
        return root / rels[key]
    return root


# --- export --------------------------------------------------------------------------------------


def export_results(
    files: dict[str, str | os.PathLike], export_uri: str, manifest: dict[str, Any]
) -> str:
    """Upload each named file under `export_uri`, then `manifest.json` listing their sha256.

    `manifest` carries what the run was (parameters, model, counts); the `files` entry is added
    here. The manifest is written last, so its presence means the export is complete. Returns the
    manifest's URI.
    """
    split_uri(export_uri)
    listing = {}
    for name, path in files.items():
        target = join(export_uri, name)
        upload(path, target)
        listing[name] = {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}
    manifest_uri = join(export_uri, "manifest.json")
    write_json(manifest_uri, {**manifest, "files": listing})
    return manifest_uri
