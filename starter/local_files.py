"""Local files given as run inputs (``tideflow run FILE -i document=invoice.pdf``).

A relative path means nothing on a worker that runs in another folder or on another machine, so
an input value naming an existing local file is replaced, where the CLI runs, by

- its absolute ``file://`` URI (the worker shares this machine's files), or
- with ``upload``, the URI of a copy in the payload store, under
  ``uploads/<sha256>/<filename>``: ``file:///store/uploads/…`` or ``s3://bucket/prefix/uploads/…``.
  Workers read documents from that folder (one of the roots documents.parse allows) whatever
  their working directory, and an S3 store reaches workers on other machines.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from activities import WorkerSettings

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True)
class Replaced:
    """One input whose value named a local file."""

    name: str
    path: Path
    uri: str
    uploaded: bool


def local_file(value: Any) -> Path | None:
    """The absolute path ``value`` names when it is a string naming an existing file (and not
    already a URI); else None."""
    if not isinstance(value, str) or not value.strip() or "\n" in value or _URI.match(value):
        return None
    try:
        path = Path(value).expanduser()
        return path.resolve() if path.is_file() else None
    except (OSError, ValueError):  # a name too long for the system, a NUL byte…
        return None


async def resolve_local_files(
    inputs: dict[str, Any], *, upload: bool, settings: WorkerSettings
) -> tuple[dict[str, Any], list[Replaced]]:
    """``inputs`` with every top-level value that names a local file replaced by its URI
    (uploaded to the payload store when ``upload``), and what was replaced."""
    out = dict(inputs)
    replaced = []
    for name, value in inputs.items():
        path = local_file(value)
        if path is None:
            continue
        uri = await upload_file(path, settings) if upload else path.as_uri()
        out[name] = uri
        replaced.append(Replaced(name, path, uri, upload))
    return out, replaced


async def upload_file(path: Path, settings: WorkerSettings) -> str:
    """Copy ``path`` to the payload store under ``uploads/<sha256>/<filename>``; its URI.

    The same content under the same name is stored once.
    """
    data = await asyncio.to_thread(path.read_bytes)
    digest = hashlib.sha256(data).hexdigest()
    key = f"uploads/{digest}/{path.name}"
    store = settings.resolved_payload_store
    parsed = urlparse(store)
    if parsed.scheme == "file":
        target = Path(url2pathname(unquote(parsed.path))) / key
        if not target.is_file():
            await asyncio.to_thread(_write_atomically, target, data)
        return target.resolve().as_uri()
    if parsed.scheme == "s3":
        from activities.payload_store import Boto3S3Client

        prefix = parsed.path.strip("/")
        await Boto3S3Client(prefix=prefix).put_object(bucket=parsed.netloc, key=key, data=data)
        return f"s3://{parsed.netloc}/{prefix + '/' if prefix else ''}{key}"
    raise ValueError(f"payload store {store}: use file:///folder or s3://bucket/prefix")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:16]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remote_pollers(identities: list[str], hostname: Callable[[], str] = socket.gethostname) -> bool:
    """Whether any of these worker identities (``pid@host``) names another machine than this
    one. Identities without a host (set by hand) say nothing."""
    here = {hostname().split(".")[0].lower(), "localhost"}
    for identity in identities:
        _, at, host = identity.rpartition("@")
        if at and host and host.split(".")[0].lower() not in here:
            return True
    return False
