"""Local files and S3 objects for nodes: one confinement rule, one reader, one S3 client and
one error map, shared by documents.parse, the storage family, the payload store and the
trigger runner.

Local files: a node may only read or write below the worker's allowed roots
(:meth:`~activities.settings.WorkerSettings.allowed_file_roots`: the file root,
``<home>/uploads``, the payload store's ``uploads`` folder and ``file_roots``). A path is
resolved first — ``..`` collapsed and symlinks followed — so neither can lead out of a root. A
refusal reads the same whether the file exists or not.

S3: one boto3 client per worker (endpoint, region and credentials from the standard AWS
environment: ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``… or the shared
AWS config files). botocore's failures map onto node errors: a missing object or bucket and a
refused access are permanent, throttling, server errors and an unreachable endpoint retryable.

Reads stop at a cap (``max_download_mb``): a bigger file or object fails the node with a
:class:`TooLargeError` before (or instead of) being read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from activities._context import NodeContext
from activities.errors import PermanentNodeError, RetryableNodeError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

T = TypeVar("T")

ROOTS_SETTING = "file_roots in the worker configuration (TIDEFLOW_FILE_ROOTS)"
"""How a message names the setting that widens the allowed roots."""
DOWNLOAD_SETTING = "max_download_mb (TIDEFLOW_MAX_DOWNLOAD_MB)"
"""How a message names the setting of the download cap."""

_CHUNK = 1024 * 1024


class TooLargeError(PermanentNodeError):
    """A file, object or response is bigger than the worker lets a node read."""


class OutsideRootsError(PermanentNodeError):
    """A local path lies outside every folder nodes may use."""


def megabytes(size: int) -> str:
    """A byte count in MiB for messages, to three digits: ``0.25 MB``, ``12.5 MB``, ``300 MB``."""
    value = size / (1024 * 1024)
    return f"{value:.0f} MB" if value >= 100 else f"{value:.3g} MB"


def too_large(shown: str, limit: int, size: int | None = None) -> TooLargeError:
    """The error of a body over the download cap (``size`` when known in advance)."""
    what = f"{megabytes(size)}, over" if size is not None else "larger than"
    return TooLargeError(
        f"{shown}: {what} the worker's download limit of {megabytes(limit)} (setting "
        f"{DOWNLOAD_SETTING})"
    )


# --- local files ------------------------------------------------------------------------------


def confine(path: Path, roots: list[Path], *, shown: str) -> Path:
    """``path`` (absolute) resolved; it must lie inside one of ``roots`` (resolved folders).

    ``resolve`` follows symlinks and collapses ``..`` before the check, so a link or a
    ``../..`` pointing out of a root is caught too. The message is the same whether the file
    exists or not, and never holds anything read from it.
    """
    resolved = path.resolve()
    if any(resolved.is_relative_to(root) for root in roots):
        return resolved
    allowed = ", ".join(str(root) for root in roots)
    raise OutsideRootsError(
        f"{shown}: outside the worker's file roots, the folders nodes may use ({allowed}); to "
        f"allow another folder, add it to {ROOTS_SETTING}"
    )


def read_file(path: Path, *, shown: str, max_bytes: int | None) -> bytes:
    """The bytes of a regular file, at most ``max_bytes`` (else :class:`TooLargeError`).

    Special files (devices, FIFOs) are refused: ``/dev/zero`` never ends and a FIFO may block
    forever.
    """
    try:
        with path.open("rb") as file:
            info = os.fstat(file.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise PermanentNodeError(f"{shown}: is a directory, not a file")
            if not stat.S_ISREG(info.st_mode):
                raise PermanentNodeError(f"{shown}: not a regular file")
            if max_bytes is not None and info.st_size > max_bytes:
                raise too_large(shown, max_bytes, info.st_size)
            data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except FileNotFoundError as e:
        raise PermanentNodeError(f"{shown}: no such file") from e
    except (IsADirectoryError, NotADirectoryError) as e:
        raise PermanentNodeError(f"{shown}: is a directory, not a file") from e
    except PermissionError as e:
        raise PermanentNodeError(f"{shown}: permission denied") from e
    except OSError as e:
        # EIO, a stale network mount...: may pass on another attempt.
        raise RetryableNodeError(f"{shown}: cannot read: {e.strerror or e}") from e
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise too_large(shown, max_bytes)
    return data


def write_file(path: Path, data: bytes, *, shown: str, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: a sibling temporary file renamed over it, so
    readers never see half a file and a retried write simply replaces it. ``durable`` also
    syncs the data to disk before the rename."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:32]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except IsADirectoryError as e:
        raise PermanentNodeError(f"cannot write {shown}: it is a folder") from e
    except (PermissionError, NotADirectoryError, FileExistsError) as e:
        raise PermanentNodeError(f"cannot write {shown}: {e.strerror or e}") from e
    except OSError as e:
        raise RetryableNodeError(f"cannot write {shown}: {e.strerror or e}") from e


# --- S3 -----------------------------------------------------------------------------------------

# boto3 sessions are not thread-safe; creating clients under a lock keeps concurrent first uses
# from racing (a client itself is safe to share between threads).
_client_lock = threading.Lock()


def new_s3_client(*, read_timeout: float = 60.0) -> S3Client:
    """An S3 client configured by the standard AWS environment (``read_timeout``: seconds a
    read may wait; node types use ``documents.fetch_timeout_seconds``)."""
    import boto3
    from botocore.config import Config

    with _client_lock:
        # Temporal retries failed nodes; a short botocore retry budget keeps one attempt bounded.
        return boto3.session.Session().client(
            "s3",
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=10,
                read_timeout=read_timeout,
            ),
        )


_S3_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
_S3_DENIED = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidToken",
    }
)
_S3_RETRYABLE = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)


async def s3_client(ctx: NodeContext) -> S3Client:
    """The worker's S3 client, made on first use and shared by every node."""
    client: S3Client = await ctx.resources.get(
        "files.s3_client",
        lambda: asyncio.to_thread(
            new_s3_client, read_timeout=ctx.settings.documents.fetch_timeout_seconds
        ),
        close=lambda c: c.close(),
    )
    return client


def s3_uri(bucket: str, key: str) -> str:
    """``s3://bucket/key``, how messages name an object."""
    return f"s3://{bucket}/{key}"


def s3_call(shown: str, call: Callable[[], T]) -> T:
    """Run S3 work, mapping botocore's failures onto node errors whose one-line messages start
    with ``shown`` (the object's URI): not found and access denied are permanent, throttling,
    5xx and an unreachable endpoint retryable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as e:
        _raise_client_error(shown, e)
    except BotoCoreError as e:
        _raise_botocore_error(shown, e)


def _raise_client_error(shown: str, error: Any) -> NoReturn:
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _S3_NOT_FOUND or (status == 404 and code != "NoSuchBucket"):
        raise PermanentNodeError(f"{shown}: no such object ({code or status})") from None
    if code == "NoSuchBucket":
        raise PermanentNodeError(f"{shown}: no such bucket (NoSuchBucket)") from None
    if code in _S3_DENIED or status == 403:
        raise PermanentNodeError(f"{shown}: access denied ({code or status})") from None
    text = " ".join(str(details.get("Message", "")).split())
    message = f"{shown}: S3 answered {status or '?'} {code}".rstrip()
    message += f": {text}" if text else ""
    if code in _S3_RETRYABLE or status >= 500 or status == 429:
        raise RetryableNodeError(message) from None
    raise PermanentNodeError(message) from None


def _raise_botocore_error(shown: str, error: Exception) -> NoReturn:
    from botocore.exceptions import (
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        PartialCredentialsError,
    )

    text = " ".join(str(error).split())
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        raise PermanentNodeError(f"{shown}: access denied (no S3 credentials: {text})") from None
    if isinstance(error, (ParamValidationError, NoRegionError)):
        raise PermanentNodeError(f"{shown}: {text}") from None
    # Connection refused, timeouts, broken streams: the store may answer on another attempt.
    raise RetryableNodeError(f"{shown}: S3 is unreachable: {text}") from None


def read_s3(
    client: S3Client, bucket: str, key: str, *, max_bytes: int | None, shown: str | None = None
) -> tuple[bytes, str | None]:
    """The bytes and declared Content-Type of an object, at most ``max_bytes``; messages name
    it ``shown`` (default its URI)."""
    shown = shown or s3_uri(bucket, key)

    def get() -> tuple[bytes, str | None]:
        response = client.get_object(Bucket=bucket, Key=key)
        with contextlib.closing(response["Body"]) as body:
            size = response.get("ContentLength")
            if max_bytes is not None and size is not None and size > max_bytes:
                raise too_large(shown, max_bytes, size)
            data = b"".join(_chunks(body, max_bytes, shown))
        return data, response.get("ContentType")

    return s3_call(shown, get)


def _chunks(body: Any, max_bytes: int | None, shown: str) -> Iterator[bytes]:
    total = 0
    while chunk := body.read(_CHUNK):
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise too_large(shown, max_bytes)
        yield chunk
