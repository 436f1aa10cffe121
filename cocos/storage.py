"""The only S3 code: URIs, buckets, files, and folders published with a manifest.

A folder is uploaded file by file and `MANIFEST.json` (sizes, sha256, metadata, time) is written
LAST, so the presence of the manifest means the upload is complete. Readers only trust prefixes that
have one: `download_dir` refuses a prefix without it (`IncompleteUpload`), `list_complete` and
`latest_complete` skip such prefixes. Downloads land in a temporary sibling folder that is renamed
into place only after every file was verified, so a failed download leaves nothing that looks
complete.

The client is configured from the environment (`cocos.services.client_env` produces it):
AWS_ENDPOINT_URL (or MLFLOW_S3_ENDPOINT_URL), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_VERSION = 1
_STEP_RE = re.compile(r"(\d+)(?!.*\d)")


class StorageError(RuntimeError):
    """An S3 operation that cannot be done as asked; the message says which object and the fix."""


class IncompleteUpload(StorageError):
    """A prefix without `MANIFEST.json`: its upload is missing, unfinished or was interrupted."""


class IntegrityError(StorageError):
    """A downloaded file whose size or sha256 differs from the manifest."""


def is_s3_uri(s: object) -> bool:
    """True for strings that start with `s3://` (any bucket, any key)."""
    return isinstance(s, str) and s.startswith("s3://")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split `s3://bucket/key/parts` into `("bucket", "key/parts")`; the key may be empty.

    >>> parse_s3_uri("s3://cocos/ckpt/step-000040/")
    ('cocos', 'ckpt/step-000040/')
    """
    if not is_s3_uri(uri):
        raise StorageError(f"uri={uri!r} is not an S3 URI; expected 's3://<bucket>/<key>'")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if len(bucket) < 3:
        raise StorageError(f"uri={uri!r} has bucket {bucket!r}; bucket names need at least 3 characters")
    return bucket, key


def _join(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + name if prefix else name


def _as_prefix(key: str) -> str:
    return key if not key or key.endswith("/") else key + "/"


@functools.lru_cache(maxsize=8)
def _cached_client(endpoint_url: str | None, access_key: str | None, secret_key: str | None, region: str):
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=config,
    )


def client(
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    region: str | None = None,
):
    """A boto3 S3 client; arguments left out come from the environment (see the module docstring)."""
    endpoint_url = (
        endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    )
    return _cached_client(
        endpoint_url or None,
        access_key or os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )


def ping(endpoint_url: str, access_key: str, secret_key: str, timeout_s: float = 2.0) -> str | None:
    """None when the S3 endpoint answers `list_buckets` with these credentials, else the error text."""
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=config,
    )
    try:
        s3.list_buckets()
    except Exception as exc:  # any failure means "not healthy yet"; the text is reported
        return f"{type(exc).__name__}: {exc}"
    return None


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_missing(exc: ClientError) -> bool:
    return _error_code(exc) in {"404", "NoSuchKey", "NoSuchBucket", "NotFound"}


def ensure_bucket(name: str, s3: Any = None) -> None:
    """Create bucket `name` unless it exists already."""
    if not isinstance(name, str) or len(name) < 3:
        raise StorageError(f"name={name!r}: bucket names need at least 3 characters")
    s3 = s3 or client()
    try:
        s3.head_bucket(Bucket=name)
        return
    except ClientError as exc:
        if not _is_missing(exc):
            raise StorageError(f"cannot check bucket {name!r}: {exc}; check the S3 credentials") from exc
    try:
        s3.create_bucket(Bucket=name)
        log.info("created bucket %s", name)
    except ClientError as exc:
        if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise


def exists(uri: str) -> bool:
    """True if the object at `uri` exists."""
    bucket, key = parse_s3_uri(uri)
    try:
        client().head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if _is_missing(exc):
            return False
        raise


def upload_file(path: str | os.PathLike[str], uri: str) -> str:
    """Upload one local file to `uri`; returns `uri`."""
    bucket, key = parse_s3_uri(uri)
    if not key or key.endswith("/"):
        raise StorageError(f"uri={uri!r} names no object; give the full key, e.g. {_join(uri, 'file.bin')!r}")
    path = Path(path)
    if not path.is_file():
        raise StorageError(f"path={str(path)!r} is not a file")
    client().upload_file(str(path), bucket, key)
    return uri


def download_file(uri: str, path: str | os.PathLike[str]) -> Path:
    """Download the object at `uri` to `path` (via a temporary file, renamed when complete)."""
    bucket, key = parse_s3_uri(uri)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        client().download_file(bucket, key, tmp)
        os.replace(tmp, path)
    except ClientError as exc:
        Path(tmp).unlink(missing_ok=True)
        if _is_missing(exc):
            raise StorageError(f"uri={uri!r} does not exist") from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(uri: str) -> Any:
    """Parse the JSON object stored at `uri`."""
    bucket, key = parse_s3_uri(uri)
    try:
        body = client().get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _is_missing(exc):
            raise StorageError(f"uri={uri!r} does not exist") from exc
        raise
    return json.loads(body)


def write_json(uri: str, obj: Any) -> str:
    """Store `obj` as indented JSON at `uri`; returns `uri`."""
    bucket, key = parse_s3_uri(uri)
    body = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
    client().put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    return uri


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def upload_dir(
    local_dir: str | os.PathLike[str], uri_prefix: str, extra: Mapping[str, Any] | None = None
) -> str:
    """Upload every file under `local_dir` to `uri_prefix`, then write `MANIFEST.json` last.

    A local `MANIFEST.json` is not uploaded (the new one replaces it). If the prefix already holds a
    manifest it is deleted first, so a reader never sees a complete-looking mix of old and new files.
    Returns the manifest URI.
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise StorageError(f"local_dir={str(local_dir)!r} is not a directory")
    bucket, key = parse_s3_uri(uri_prefix)
    prefix = _as_prefix(key)
    s3 = client()
    manifest_key = prefix + MANIFEST_NAME
    try:
        s3.head_object(Bucket=bucket, Key=manifest_key)
        log.warning("overwriting complete upload at %s; removing its manifest first", uri_prefix)
        s3.delete_object(Bucket=bucket, Key=manifest_key)
    except ClientError as exc:
        if not _is_missing(exc):
            raise
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        if rel == MANIFEST_NAME:
            continue
        files[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
        s3.upload_file(str(path), bucket, prefix + rel)
    manifest = {
        "version": MANIFEST_VERSION,
        "files": files,
        "extra": dict(extra or {}),
        "created": datetime.now(timezone.utc).isoformat(),
        "created_unix": time.time(),
    }
    manifest_uri = f"s3://{bucket}/{manifest_key}"
    write_json(manifest_uri, manifest)
    log.info("uploaded %d files to s3://%s/%s", len(files), bucket, prefix)
    return manifest_uri


def read_manifest(uri_prefix: str) -> dict[str, Any]:
    """The manifest of a complete upload; `IncompleteUpload` when there is none."""
    bucket, key = parse_s3_uri(uri_prefix)
    manifest_uri = f"s3://{bucket}/{_as_prefix(key)}{MANIFEST_NAME}"
    try:
        return read_json(manifest_uri)
    except StorageError as exc:
        raise IncompleteUpload(
            f"uri_prefix={uri_prefix!r} has no {MANIFEST_NAME}: the upload is missing or unfinished; "
            "re-run the step that writes it, or pick a complete prefix with latest_complete()"
        ) from exc


def download_dir(uri_prefix: str, local_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Download a complete upload to `local_dir` (which must be absent or empty); returns its manifest.

    Every file is checked against the manifest's size and sha256; the folder appears only when all of
    them match. The manifest is written into `local_dir` too.
    """
    manifest = read_manifest(uri_prefix)
    bucket, key = parse_s3_uri(uri_prefix)
    prefix = _as_prefix(key)
    local_dir = Path(local_dir)
    if local_dir.exists() and (not local_dir.is_dir() or any(local_dir.iterdir())):
        raise StorageError(
            f"local_dir={str(local_dir)!r} exists and is not empty; give a new or empty folder"
        )
    local_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{local_dir.name}.", suffix=".partial", dir=local_dir.parent))
    s3 = client()
    try:
        for rel, meta in manifest["files"].items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, prefix + rel, str(target))
            size, sha = target.stat().st_size, _sha256(target)
            if size != meta["size"] or sha != meta["sha256"]:
                raise IntegrityError(
                    f"{uri_prefix}{rel}: got {size} bytes sha256 {sha[:12]}, manifest says "
                    f"{meta['size']} bytes sha256 {meta['sha256'][:12]}; the object changed after upload, "
                    "re-upload the folder"
                )
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if local_dir.exists():
            local_dir.rmdir()
        os.replace(tmp, local_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("downloaded %d files from %s to %s", len(manifest["files"]), uri_prefix, local_dir)
    return manifest


def list_complete(prefix_uri: str) -> list[str]:
    """Sub-prefixes directly under `prefix_uri` that hold a manifest, as sorted URIs without a slash."""
    bucket, key = parse_s3_uri(prefix_uri)
    prefix = _as_prefix(key)
    s3 = client()
    found: list[str] = []
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        subs = [cp["Prefix"] for page in pages for cp in page.get("CommonPrefixes", [])]
    except ClientError as exc:
        if _is_missing(exc):
            return []
        raise
    for sub in subs:
        try:
            s3.head_object(Bucket=bucket, Key=sub + MANIFEST_NAME)
        except ClientError as exc:
            if _is_missing(exc):
                continue
            raise
        found.append(f"s3://{bucket}/{sub.rstrip('/')}")
    return sorted(found)


def latest_complete(prefix_uri: str) -> str | None:
    """The newest complete sub-prefix: by the number in its name (`step-000040`), else by manifest time."""
    complete = list_complete(prefix_uri)
    if not complete:
        return None
    steps = [_STEP_RE.search(uri.rsplit("/", 1)[-1]) for uri in complete]
    if all(steps):
        return max(zip(complete, steps, strict=True), key=lambda pair: int(pair[1].group(1)))[0]  # type: ignore[union-attr]
    return max(complete, key=lambda uri: float(read_manifest(uri).get("created_unix", 0.0)))
