"""Node types of the storage family: ``storage.write`` (seed alias ``storage``) and
``storage.read``.

A location is a URI: ``s3://bucket/key`` (through boto3; endpoint, region and credentials come
from the standard AWS environment — ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``,
``AWS_ACCESS_KEY_ID``… — or the shared AWS config files) or ``file://path``: ``file://a/b.json``
is relative to the worker's file root (``settings.resolved_file_root``, ``TIDEFLOW_FILE_ROOT``),
``file:///abs/b.json`` must lie inside one of the folders nodes may use (the file root, the
uploads folders and ``file_roots``; see :mod:`activities.files`). Reads stop at the worker's
``max_download_mb``.

The seeds' form ``{storage_type: s3, bucket: …, key: …}`` is accepted too. Without a ``key`` a
write goes to ``<workflow_id>/<node_id>.<ext>`` (``.json``, ``.txt`` or ``.bin`` after the
encoding): a retried attempt overwrites the same object, but a ``foreach`` node must name its key
(``key: "${{ index }}.json"``) or the items overwrite each other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, model_validator

from activities import files, lineage
from activities._context import NodeContext
from activities._registry import node_type
from activities.errors import NodeConfigError, PermanentNodeError
from activities.settings import WorkerSettings

Encoding = Literal["json", "text", "base64"]

_EXTENSIONS: dict[str, str] = {"json": ".json", "text": ".txt", "base64": ".bin"}
_CONTENT_TYPES: dict[str, str] = {
    "json": "application/json",
    "text": "text/plain; charset=utf-8",
    "base64": "application/octet-stream",
}


class _Location(BaseModel):
    """Where an object lives: a URI, or the seeds' ``storage_type`` + ``bucket`` + ``key``."""

    model_config = ConfigDict(extra="forbid")

    uri: str | None = Field(default=None, description="s3://bucket/key or file://path")
    storage_type: Literal["s3", "file", "local"] | None = Field(
        default=None,
        description="The seeds' form: s3 (with bucket and key) or file/local (with key).",
    )
    bucket: str | None = Field(default=None, description="S3 bucket (seed form).")
    key: str | None = Field(
        default=None,
        description="Object key (S3) or path below the file root (seed form).",
    )

    @model_validator(mode="after")
    def _one_location(self) -> _Location:
        seed_form = self.storage_type is not None or self.bucket is not None
        if self.uri is not None:
            if seed_form or self.key is not None:
                raise ValueError("give either uri or storage_type/bucket/key, not both")
            if not self.uri.startswith(("s3://", "file://")):
                raise ValueError("uri must start with s3:// or file://")
        elif self.storage_type in (None, "s3") and self.bucket is None:
            raise ValueError("give uri (s3://bucket/key or file://path), or bucket for S3")
        elif self.storage_type in ("file", "local") and self.bucket is not None:
            raise ValueError("bucket is for storage_type s3; file storage takes a key")
        return self


class StorageWriteConfig(_Location):
    """Config of ``storage.write``."""

    content: Any = Field(
        default=None,
        description="What to store: any JSON value, text, or base64 text with encoding base64; "
        "default the output of the node's only dependency.",
        json_schema_extra={"default_expression": "${{ upstream.output }}"},
    )
    content_type: str | None = Field(
        default=None, description="MIME type; default from the encoding or the file extension."
    )
    encoding: Encoding | None = Field(
        default=None,
        description="json (any value), text (a string as UTF-8) or base64 (a base64 string "
        "decoded to bytes); default text for a string, json for anything else.",
    )


class StorageReadConfig(_Location):
    """Config of ``storage.read``."""

    as_: Literal["text", "json", "bytes_base64"] = Field(
        default="text",
        alias="as",
        description="text (UTF-8), json (parsed) or bytes_base64 (the raw bytes, base64).",
    )


@dataclass(frozen=True)
class _S3Target:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@node_type("storage.write", StorageWriteConfig)
async def storage_write(config: StorageWriteConfig, ctx: NodeContext) -> dict[str, Any]:
    """Write ``content`` to S3 or a file below the file root; overwrites what is there."""
    if "content" not in config.model_fields_set:
        raise NodeConfigError(
            "nothing to write: give content (e.g. content: ${{ nodes.<id>.output }})"
        )
    encoding = config.encoding or ("text" if isinstance(config.content, str) else "json")
    data = _encode(config.content, encoding)
    default_key = f"{ctx.run.workflow_id}/{ctx.node_id}{_EXTENSIONS[encoding]}"
    target = _target(config, ctx, default_key=default_key)
    content_type = config.content_type or _content_type(encoding, target)
    digest = hashlib.sha256(data).hexdigest()
    if isinstance(target, Path):
        await asyncio.to_thread(files.write_file, target, data, shown=target.as_uri())
        return {
            "uri": target.as_uri(),
            "size": len(data),
            "sha256": digest,
            "content_type": content_type,
        }
    client = await files.s3_client(ctx)
    # The object carries its provenance (run, node, definition, version, source documents).
    provenance = await lineage.object_metadata(ctx)
    response = await asyncio.to_thread(
        files.s3_call,
        target.uri,
        lambda: client.put_object(
            Bucket=target.bucket,
            Key=target.key,
            Body=data,
            ContentType=content_type,
            Metadata=provenance,
        ),
    )
    result: dict[str, Any] = {
        "uri": target.uri,
        "size": len(data),
        "sha256": digest,
        "content_type": content_type,
        "etag": str(response.get("ETag", "")).strip('"') or None,
    }
    if response.get("VersionId"):
        result["version_id"] = response["VersionId"]
    return result


@node_type("storage.read", StorageReadConfig)
async def storage_read(config: StorageReadConfig, ctx: NodeContext) -> dict[str, Any]:
    """Read an object from S3 or a file below the file root, as text, JSON or base64 bytes."""
    target = _target(config, ctx, default_key=None)
    cap = ctx.settings.max_download_bytes
    if isinstance(target, Path):
        uri = target.as_uri()
        data = await asyncio.to_thread(files.read_file, target, shown=uri, max_bytes=cap)
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    else:
        client = await files.s3_client(ctx)
        data, declared = await asyncio.to_thread(
            files.read_s3, client, target.bucket, target.key, max_bytes=cap
        )
        uri = target.uri
        content_type = declared or "application/octet-stream"
    return {
        "uri": uri,
        "content": _decode(data, config.as_, uri),
        "size": len(data),
        "content_type": content_type,
    }


def _content_type(encoding: Encoding, target: Path | _S3Target) -> str:
    """JSON is application/json; text and bytes take the type their name suggests."""
    name = target.name if isinstance(target, Path) else target.key
    if encoding != "json" and (guessed := mimetypes.guess_type(name)[0]):
        return guessed
    return _CONTENT_TYPES[encoding]


def _encode(content: Any, encoding: Encoding) -> bytes:
    if encoding == "json":
        return json.dumps(content, ensure_ascii=False).encode()
    if not isinstance(content, str):
        raise NodeConfigError(
            f"encoding {encoding} needs a string content, got {type(content).__name__}"
        )
    if encoding == "text":
        return content.encode()
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as e:
        raise NodeConfigError(f"content is not valid base64: {e}") from e


def _decode(data: bytes, as_: str, uri: str) -> Any:
    if as_ == "bytes_base64":
        return base64.b64encode(data).decode("ascii")
    try:
        text = data.decode()
    except UnicodeDecodeError as e:
        raise PermanentNodeError(
            f"{uri} is not UTF-8 text ({e}); read it with as: bytes_base64"
        ) from e
    if as_ == "text":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise PermanentNodeError(f"{uri} is not valid JSON: {e}") from e


def _target(config: _Location, ctx: NodeContext, *, default_key: str | None) -> Path | _S3Target:
    """The file path (checked against the file root) or S3 object a config names."""
    settings = ctx.settings
    if config.uri is not None:
        if config.uri.startswith("file://"):
            raw = unquote(config.uri.removeprefix("file://"))
            return _confined_path(config.uri, raw, settings)
        bucket, _, object_key = config.uri.removeprefix("s3://").partition("/")
        if not bucket or not object_key:
            raise NodeConfigError(f"{config.uri}: an S3 URI needs a bucket and a key")
        return _S3Target(bucket, object_key)
    key = config.key or default_key
    if not key:
        raise NodeConfigError("give the key of the object to read (or a uri)")
    if config.storage_type in ("file", "local"):
        return _confined_path(f"file://{key}", key, settings)
    assert config.bucket is not None  # the model validator guarantees it
    return _S3Target(config.bucket, key.lstrip("/"))


def _confined_path(uri: str, raw: str, settings: WorkerSettings) -> Path:
    """``raw`` (relative to the file root, or absolute) resolved; it must stay inside the
    folders nodes may use."""
    if raw.startswith("localhost/"):
        raw = raw.removeprefix("localhost")
    if not raw.strip("/"):
        raise NodeConfigError(f"{uri}: no file path")
    path = Path(raw)
    root = settings.resolved_file_root
    return files.confine(
        path if path.is_absolute() else root / path, settings.allowed_file_roots(), shown=uri
    )
