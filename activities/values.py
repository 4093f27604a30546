"""Large node outputs stored by reference (see :mod:`interpreter.values`): the worker side.

After a node runs, :func:`offload` replaces every part of its output over the worker's
``reference_threshold`` with a reference to a blob in the value store; before a node runs,
:func:`resolve` reads references in its config and scope back into values. The store is the
payload store's location with a ``values/`` prefix — a folder every worker shares, or an S3
prefix — and blobs are content-addressed (``values/sha256/<2 hex>/<64 hex>``), so the same
value is stored once and a reference always means the same bytes (checked on read).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from pydantic_core import from_json, to_json

from activities.errors import PermanentNodeError, RetryableNodeError
from activities.files import new_s3_client, s3_call, write_file
from activities.settings import WorkerSettings
from interpreter.values import REF_KEY, has_refs, is_ref


class ValueStore:
    """Blobs by sha256 in the payload store's location."""

    def __init__(self, settings: WorkerSettings) -> None:
        location = settings.resolved_payload_store
        self._s3: tuple[str, str] | None = None
        self._root: Path | None = None
        parsed = urlparse(location)
        if parsed.scheme == "s3":
            prefix = parsed.path.strip("/")
            self._s3 = (parsed.netloc, f"{prefix}/values" if prefix else "values")
        else:
            self._root = Path(url2pathname(parsed.path)) / "values"
        self._client: Any = None

    def _key(self, digest: str) -> str:
        return f"sha256/{digest[:2]}/{digest}"

    def put(self, data: bytes) -> str:
        """Store ``data`` (once); its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        key = self._key(digest)
        if self._root is not None:
            path = self._root / key
            if not path.exists():
                write_file(path, data, shown=f"value {digest[:12]}")
            return digest
        assert self._s3 is not None
        bucket, prefix = self._s3
        client = self._s3_client()
        s3_call(
            f"s3://{bucket}/{prefix}/{key}",
            lambda: client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data),
        )
        return digest

    def get(self, digest: str) -> bytes:
        """The bytes of a stored value, checked against their sha256."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise PermanentNodeError(f"not a value reference: {digest[:80]!r}")
        key = self._key(digest)
        if self._root is not None:
            try:
                data = (self._root / key).read_bytes()
            except FileNotFoundError:
                raise PermanentNodeError(
                    f"value sha256:{digest[:12]}… is not in the value store {self._root}: "
                    "every worker must share the payload store"
                ) from None
            except OSError as e:
                raise RetryableNodeError(f"cannot read value sha256:{digest[:12]}…: {e}") from e
        else:
            assert self._s3 is not None
            bucket, prefix = self._s3
            client = self._s3_client()
            response = s3_call(
                f"s3://{bucket}/{prefix}/{key}",
                lambda: client.get_object(Bucket=bucket, Key=f"{prefix}/{key}"),
            )
            data = response["Body"].read()
        if hashlib.sha256(data).hexdigest() != digest:
            raise PermanentNodeError(f"value sha256:{digest[:12]}… is corrupted in the store")
        return data

    def _s3_client(self) -> Any:
        if self._client is None:
            self._client = new_s3_client()
        return self._client


def offload(value: Any, store: ValueStore, threshold: int) -> tuple[Any, bool]:
    """``value`` with every part over ``threshold`` bytes (as JSON) stored by reference, and
    whether anything was. Mappings keep their keys (their large values become references);
    a large list or text becomes one reference."""
    size = len(to_json(value))
    if size <= threshold:
        return value, False
    if isinstance(value, dict) and not is_ref(value):
        out: dict[str, Any] = {}
        stored = False
        for key, item in value.items():
            out[key], changed = offload(item, store, threshold)
            stored = stored or changed
        if len(to_json(out)) <= threshold:
            return out, stored
        value = out
    data = to_json(value)
    digest = store.put(data)
    kind = (
        "object"
        if isinstance(value, dict)
        else "array"
        if isinstance(value, list)
        else "string"
        if isinstance(value, str)
        else "value"
    )
    return {REF_KEY: f"sha256:{digest}", "bytes": len(data), "type": kind}, True


def resolve(value: Any, store: ValueStore) -> Any:
    """``value`` with every reference read back from the store."""
    if not has_refs(value):
        return value
    return _resolve(value, store)


def _resolve(value: Any, store: ValueStore) -> Any:
    if is_ref(value):
        reference = str(value[REF_KEY])
        digest = reference.removeprefix("sha256:")
        return _resolve(from_json(store.get(digest)), store)
    if isinstance(value, dict):
        return {k: _resolve(v, store) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, store) for v in value]
    return value


async def resolve_async(value: Any, store: ValueStore) -> Any:
    """:func:`resolve` off the event loop when there is something to read."""
    if not has_refs(value):
        return value
    return await asyncio.to_thread(_resolve, value, store)
