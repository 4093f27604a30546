"""Connecting to Temporal: the address and namespace from the environment, the data converter
client and worker share, and who acts through this process."""

from __future__ import annotations

import getpass
import os
import socket

from temporalio.client import Client
from temporalio.converter import DataConverter

from activities import WorkerSettings
from activities.payload_store import data_converter as _store_converter
from starter import telemetry

DEFAULT_ADDRESS = "localhost:7233"


def acting_user() -> str:
    """Who acts through this process: ``TIDEFLOW_USER``, else the operating system's user name
    (recorded as ``by`` of approvals and operator actions)."""
    explicit = os.environ.get("TIDEFLOW_USER", "").strip()
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (containers)
        return "unknown"


def default_identity(user: str | None = None) -> str:
    """``user@host``: the identity Temporal records with each signal, update and cancellation a
    client sends (the Web UI shows it in the run's history)."""
    return f"{user or acting_user()}@{socket.gethostname()}"


def data_converter(settings: WorkerSettings | None = None) -> DataConverter:
    """Pydantic JSON with big payloads in the payload store; client and worker must agree."""
    return _store_converter(settings or WorkerSettings.from_env())


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    settings: WorkerSettings | None = None,
    identity: str | None = None,
    metrics_address: str | None = None,
) -> Client:
    """A Temporal client of ``TEMPORAL_ADDRESS`` (default localhost:7233) and
    ``TEMPORAL_NAMESPACE``; ``identity`` defaults to the SDK's ``pid@host`` (what workers
    use). ``metrics_address`` serves the metrics of the client and its workers for
    Prometheus (default ``TIDEFLOW_METRICS_ADDRESS``).
    :meth:`TideflowClient.connect <starter.client.TideflowClient.connect>` wraps it."""
    return await Client.connect(
        address or os.environ.get("TEMPORAL_ADDRESS", DEFAULT_ADDRESS),
        namespace=namespace or os.environ.get("TEMPORAL_NAMESPACE", "default"),
        data_converter=data_converter(settings),
        interceptors=telemetry.interceptors(),
        runtime=telemetry.runtime(metrics_address),
        identity=identity,
    )
