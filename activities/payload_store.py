"""The payload store: big values travel through Temporal as references, not data.

Temporal keeps every workflow input, activity result and workflow result in its history, where a
large document text or extraction result would bloat the history and hit the server's size
limits. Tideflow uses temporalio's external storage: a payload at or above
``settings.payload_threshold`` bytes (default 256 KiB, ``TIDEFLOW_PAYLOAD_THRESHOLD``) is written
to the payload store by whichever side serializes it (client, workflow or activity) and replaced
in history by a small reference; whichever side reads it fetches it back transparently, so
downstream nodes and the run report see the value itself.

The store (``settings.resolved_payload_store``, ``TIDEFLOW_PAYLOAD_STORE``) is either

- ``file:///folder`` (default ``<home>/payloads``): :class:`FileStorageDriver`, content-addressed
  files ``sha256/<2 hex>/<64 hex>`` written atomically; every worker and client must see the
  same folder (one machine, or a shared volume); or
- ``s3://bucket/prefix``: temporalio's :class:`~temporalio.contrib.aws.s3driver.S3StorageDriver`
  through a small boto3 client (endpoint, region and credentials from the standard AWS
  environment). The bucket must exist. The prefix is applied by the client and references keep
  the key below it, so keep the prefix stable while references to it live.

Client (starter) and worker both build their converter with :func:`data_converter`; they must
point at the same store. Nothing is ever deleted: expire old objects with a lifecycle rule (S3)
or by age (files) once the runs that reference them are past their retention.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from temporalio.api.common.v1 import Payload
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
)

from activities import files
from activities.encryption import EncryptionCodec, codec_from_env
from activities.errors import NodeError
from activities.settings import WorkerSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

T = TypeVar("T")
_CLAIM_PATH = re.compile(r"^sha256/[0-9a-f]{2}/[0-9a-f]{64}$")


class PayloadStoreError(Exception):
    """A payload could not be stored or fetched back (missing, corrupted, unreachable)."""


class FileStorageDriver(StorageDriver):
    """Payloads as files in a folder, named by the sha256 of their serialized bytes.

    Identical payloads share one file; a file is written to a temporary name and renamed, so a
    reader never sees half a payload and concurrent writers of the same payload do not clash.
    """

    def __init__(self, root: Path, driver_name: str = "tideflow.file") -> None:
        """Store under ``root`` (created on first store)."""
        self._root = root
        self._name = driver_name

    @property
    def root(self) -> Path:
        """The folder payloads are stored in."""
        return self._root

    def name(self) -> str:
        """The name references carry to find this driver again."""
        return self._name

    def type(self) -> str:
        """A stable, language-neutral identifier of this driver kind."""
        return "tideflow.file"

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        """Write each payload (unless already there) and return its claim."""
        return await asyncio.to_thread(self._store_all, [p.SerializeToString() for p in payloads])

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        """Read each claimed payload back, checking its hash."""
        return await asyncio.to_thread(self._retrieve_all, list(claims))

    def _store_all(self, blobs: list[bytes]) -> list[StorageDriverClaim]:
        claims = []
        for data in blobs:
            digest = hashlib.sha256(data).hexdigest()
            relative = f"sha256/{digest[:2]}/{digest}"
            path = self._root / relative
            if not path.exists():
                try:
                    files.write_file(path, data, shown=str(path), durable=True)
                except NodeError as e:
                    raise PayloadStoreError(
                        f"payload {digest} to the payload store {self._root}: {e.message}"
                    ) from None
            claims.append(
                StorageDriverClaim(
                    claim_data={
                        "path": relative,
                        "hash_algorithm": "sha256",
                        "hash_value": digest,
                    }
                )
            )
        return claims

    def _retrieve_all(self, claims: list[StorageDriverClaim]) -> list[Payload]:
        payloads = []
        for claim in claims:
            relative = claim.claim_data.get("path", "")
            expected = claim.claim_data.get("hash_value", "")
            # Claims come from history: accept only the names this driver makes.
            if not _CLAIM_PATH.match(relative) or claim.claim_data.get("hash_algorithm") != (
                "sha256"
            ):
                raise PayloadStoreError(f"not a payload store reference: {dict(claim.claim_data)}")
            path = self._root / relative
            try:
                data = files.read_file(path, shown=f"payload {path}", max_bytes=None)
            except NodeError as e:
                if isinstance(e.__cause__, FileNotFoundError):
                    raise PayloadStoreError(
                        f"payload {expected} is missing from the payload store {self._root} "
                        "(was it deleted, or does this process use another "
                        "TIDEFLOW_PAYLOAD_STORE?)"
                    ) from None
                raise PayloadStoreError(e.message) from None
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise PayloadStoreError(
                    f"payload {path} is corrupted: sha256 {actual}, expected {expected}"
                )
            payload = Payload()
            payload.ParseFromString(data)
            payloads.append(payload)
        return payloads


class Boto3S3Client(S3StorageDriverClient):
    """The contrib S3 driver's client over boto3, each call run in a thread.

    The boto3 client is :func:`activities.files.new_s3_client`, created on first use from the
    standard AWS environment (``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, credentials…), and
    its failures are mapped by the same error map as the nodes', raised as
    :class:`PayloadStoreError`. ``prefix`` is put in front of every key the driver asks for.
    """

    def __init__(self, prefix: str = "", client: S3Client | None = None) -> None:
        """Use ``client`` if given, else create one when first needed."""
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = client
        self._lock = threading.Lock()

    def _s3(self) -> S3Client:
        with self._lock:
            if self._client is None:
                self._client = files.new_s3_client()
            return self._client

    def _shown(self, bucket: str, key: str) -> str:
        return f"payload {files.s3_uri(bucket, self._prefix + key)}"

    def _call(self, bucket: str, key: str, call: Callable[[], T]) -> T:
        try:
            return files.s3_call(self._shown(bucket, key), call)
        except NodeError as e:
            raise PayloadStoreError(e.message) from None

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        """Upload ``data`` to ``bucket`` at ``prefix + key``."""
        await asyncio.to_thread(
            self._call,
            bucket,
            key,
            lambda: self._s3().put_object(Bucket=bucket, Key=self._prefix + key, Body=data),
        )

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        """Whether ``prefix + key`` exists (a 404 says no; other errors are raised)."""
        from botocore.exceptions import ClientError

        def head() -> bool:
            try:
                self._s3().head_object(Bucket=bucket, Key=self._prefix + key)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
            return True

        return await asyncio.to_thread(self._call, bucket, key, head)

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        """The bytes at ``prefix + key``."""

        def get() -> bytes:
            data, _ = files.read_s3(
                self._s3(),
                bucket,
                self._prefix + key,
                max_bytes=None,
                shown=self._shown(bucket, key),
            )
            return data

        return await asyncio.to_thread(self._call, bucket, key, get)

    def describe(self) -> Mapping[str, str]:
        """Region, endpoint and prefix, which the driver adds to its error messages."""
        client = self._client
        info = {"prefix": self._prefix} if self._prefix else {}
        if client is not None:
            if client.meta.region_name:
                info["client_region"] = client.meta.region_name
            info["endpoint"] = client.meta.endpoint_url
        return info


def storage_driver(store: str) -> StorageDriver:
    """The driver of a payload store URI: ``file:///folder`` or ``s3://bucket/prefix``."""
    parsed = urlparse(store)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"payload store {store}: a file URI must be file:///absolute/path")
        return FileStorageDriver(Path(url2pathname(unquote(parsed.path))))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"payload store {store}: an S3 URI needs a bucket")
        return S3StorageDriver(client=Boto3S3Client(prefix=parsed.path), bucket=parsed.netloc)
    raise ValueError(f"payload store {store}: use file:///folder or s3://bucket/prefix")


_ONCE_PER_RUN = (b'{"plan":', b'{"workflow_id":')
"""How a run's input (its plan) and its result (its report) begin as JSON: each is written to
history once per run and, for the same definition, the same plan again and again."""


def data_converter(
    settings: WorkerSettings, *, codec: EncryptionCodec | None = None
) -> DataConverter:
    """The pydantic data converter with the payload store behind it (client and worker alike).

    Any payload over ``payload_threshold`` (256 KiB) is stored by reference. A run's input and
    its result go there from ``history_inline_limit`` (1 KiB) on: they carry the plan and the
    report, which grow with the definition, not with what a node does — so a run's history
    stays within a few hundred bytes of a hand-written workflow's doing the same work.

    With ``codec`` (default: the keys of ``TIDEFLOW_ENCRYPTION_KEYS``, if set) every payload is
    encrypted before it is stored or sent, and failure messages travel as an encoded attribute
    (see :mod:`activities.encryption`); encrypted payloads no longer show what they begin with,
    so only the size threshold sends them to the store."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    driver = storage_driver(settings.resolved_payload_store)
    large = settings.payload_threshold
    inline = settings.history_inline_limit

    def select(_context: StorageDriverSelectContext, payload: Payload) -> StorageDriver | None:
        size = payload.ByteSize()
        if size >= large or (inline and size >= inline and payload.data.startswith(_ONCE_PER_RUN)):
            return driver
        return None

    converter = dataclasses.replace(
        pydantic_data_converter,
        external_storage=ExternalStorage(
            drivers=[driver],
            driver_selector=select,
            payload_size_threshold=min(large, inline) if inline else large,
        ),
    )
    codec = codec or codec_from_env()
    if codec is None:
        return converter
    return dataclasses.replace(
        converter,
        payload_codec=codec,
        # Failure messages and stack traces hold data too (a node's error quoting its input).
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
