"""Exit codes, the exception that leaves a command with one, and the one line a user sees for an
error (Temporal's status codes and the SDK's connection errors in words)."""

from __future__ import annotations

import argparse
import os
import re

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
"""0 success (a run completed), 1 a run failed or a request was refused, 2 bad input (an
invalid definition, bad inputs, bad arguments)."""


class Exit(Exception):
    """Leave with ``code`` after printing ``message`` (one line) on stderr."""

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def expected(error: Exception) -> bool:
    """Whether ``error`` is one a command may meet in normal use (no traceback even with
    ``TIDEFLOW_DEBUG``)."""
    from temporalio.service import RPCError

    from activities.settings import SettingsError
    from starter.client import ControlError

    return isinstance(error, RPCError | ControlError | SettingsError)


def error_line(error: Exception, args: argparse.Namespace | None = None) -> str:
    """The one line a user sees for ``error`` raised by a command (``args``: what was asked).

    Temporal's status codes become what they mean for the command: an unknown run, a server
    that does not answer, credentials it refuses.
    """
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.exceptions import WorkflowAlreadyStartedError
    from temporalio.service import RPCError, RPCStatusCode

    from activities.settings import SettingsError
    from starter.client import ControlError

    command = getattr(args, "command", None) or "tideflow"
    workflow_id = getattr(args, "workflow_id", None)
    if isinstance(error, SettingsError):  # one located line per problem of the configuration
        return str(error)
    if isinstance(error, ControlError):
        return f"{command}: {error}"
    if isinstance(error, WorkflowAlreadyStartedError):
        return f"{command}: a run with id {error.workflow_id!r} already exists"
    if isinstance(error, WorkflowQueryFailedError):
        return f"{command}: the run could not answer: {first_line(str(error))}"
    if not isinstance(error, RPCError):
        return f"{command}: {type(error).__name__}: {first_line(str(error))}"
    message = first_line(error.message) or error.status.name.lower()
    status = error.status
    if status in (RPCStatusCode.UNAUTHENTICATED, RPCStatusCode.PERMISSION_DENIED):
        return f"{command}: not allowed: {message}"
    if status == RPCStatusCode.NOT_FOUND:
        if workflow_id and "namespace" not in message.lower() and "not found" in message:
            namespace = os.environ.get("TEMPORAL_NAMESPACE", "default")
            return f"{command}: no run {workflow_id!r} in namespace {namespace!r}"
        return f"{command}: {message}"
    if status == RPCStatusCode.UNAVAILABLE:
        return f"{command}: Temporal at {address()} is unavailable: {message}"
    if status == RPCStatusCode.DEADLINE_EXCEEDED:
        return f"{command}: Temporal did not answer in time: {message}"
    return f"{command}: {message} ({status.name})"


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, stripped."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def address() -> str:
    """The Temporal address commands connect to (as Temporal's environment configuration
    says: ``TEMPORAL_ADDRESS``, the profile, else localhost:7233)."""
    from starter import client

    try:
        return str(client.connect_config()["target_host"])
    except ValueError:
        return os.environ.get("TEMPORAL_ADDRESS", client.DEFAULT_ADDRESS)


def connect_failure(error: BaseException, address: str) -> str:
    """The one line for a failed connection (the SDK's message is a Rust error dump)."""
    text = str(error)
    lowered = text.lower()
    tls = _tls_failure(text)
    if tls:
        return (
            f"cannot reach Temporal at {address}: {tls} (Temporal's client configuration: "
            "the TEMPORAL_TLS_* variables or the profile's tls section)"
        )
    status = re.search(r"code: (\w+), message: \"((?:[^\"\\]|\\.)*)\"", text)
    if status and status.group(1) in ("Unauthenticated", "PermissionDenied"):
        return f"not allowed: Temporal at {address} refused the connection: {status.group(2)}"
    if status:
        return f"cannot use Temporal at {address}: {status.group(2)} ({status.group(1)})"
    reasons = (
        ("connection refused", "nothing is listening there"),
        ("dns error", "unknown host"),
        ("failed to lookup address", "unknown host"),
        ("certificate", "TLS certificate problem"),
        ("tls", "TLS handshake failed"),
        ("timed out", "timed out"),
        ("connection reset", "the connection was reset"),
    )
    reason = next((why for needle, why in reasons if needle in lowered), first_line(text))
    return (
        f"cannot reach Temporal at {address}: {reason} "
        "(start one with `tideflow dev`, or set TEMPORAL_ADDRESS)"
    )


def _tls_failure(text: str) -> str | None:
    """What went wrong in a TLS handshake, from the SDK's error text (None: something else)."""
    certificate = re.search(r"InvalidCertificate\((\w+)", text)
    if certificate:
        why = {
            "UnknownIssuer": "the server's certificate is not signed by a trusted CA (give the "
            "server's CA certificate)",
            "NotValidForName": "the server's certificate is not for this host name (set the "
            "server name)",
            "Expired": "the server's certificate has expired",
        }.get(certificate.group(1), f"the server's certificate is refused ({certificate.group(1)})")
        return why
    alert = re.search(r"received fatal alert: (\w+)", text)
    if alert:
        return f"the server refused the TLS handshake ({alert.group(1)})"
    if "close_notify" in text or "tls handshake eof" in text.lower():
        return (
            "the server closed the TLS connection during the handshake (does it require a "
            "client certificate? give one, signed by a CA the server trusts)"
        )
    return None
