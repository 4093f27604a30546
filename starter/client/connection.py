"""Connecting to Temporal: where (address, namespace) and how (TLS, mTLS client certificates,
API keys) from Temporal's standard environment configuration, the data converter client and
worker share, and who acts through this process.

Every Tideflow process reaches Temporal through :func:`connect` — the CLI, the worker
(``worker.py``), the HTTP API, the triggers, the codec server — so one configuration serves all:

- a profile of Temporal's client configuration file (TOML; ``TEMPORAL_CONFIG_FILE``, default
  ``~/.config/temporalio/temporal.toml``; the profile is ``TEMPORAL_PROFILE`` or ``default``),
- overridden by the ``TEMPORAL_*`` variables: ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
  ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS``, ``TEMPORAL_TLS_CLIENT_CERT_PATH``,
  ``TEMPORAL_TLS_CLIENT_KEY_PATH``, ``TEMPORAL_TLS_SERVER_CA_CERT_PATH``,
  ``TEMPORAL_TLS_SERVER_NAME``, ``TEMPORAL_GRPC_META_<NAME>``,
- overridden by what a caller passes explicitly; ``localhost:7233`` and ``default`` otherwise.

An API key turns TLS on (Temporal Cloud). This is :mod:`temporalio.envconfig`, the loader the
``temporal`` CLI and every Temporal SDK share, so a profile written for ``temporal`` works here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import os
import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig
from temporalio.service import ServiceClient

from activities import WorkerSettings
from activities.payload_store import data_converter as _store_converter
from starter import telemetry

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"


class ConnectionConfigError(ValueError):
    """Temporal's connection configuration cannot be used (unknown profile, unreadable
    certificate file, malformed TOML). The message names the cause, never a secret."""


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


def acting_roles() -> list[str]:
    """The roles the CLI's user claims for approvals naming roles (``TIDEFLOW_ROLES``, comma
    separated). Like ``TIDEFLOW_USER`` it is the user's own word: the HTTP API takes roles
    from the caller's token instead."""
    return [r.strip() for r in os.environ.get("TIDEFLOW_ROLES", "").split(",") if r.strip()]


def default_identity(user: str | None = None) -> str:
    """``user@host``: the identity Temporal records with each signal, update and cancellation a
    client sends (the Web UI shows it in the run's history)."""
    return f"{user or acting_user()}@{socket.gethostname()}"


def data_converter(settings: WorkerSettings | None = None) -> DataConverter:
    """Pydantic JSON with big payloads in the payload store, encrypted when
    ``TIDEFLOW_ENCRYPTION_KEYS`` is set; client and worker must agree."""
    return _store_converter(settings or WorkerSettings.from_env())


def connect_config(
    address: str | None = None,
    namespace: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``Client.connect`` for where and how to connect: the profile
    and ``TEMPORAL_*`` variables (see the module's docstring), then ``address`` and
    ``namespace`` when given. Raises :class:`ConnectionConfigError`."""
    env = dict(os.environ if environ is None else environ)
    profile = env.get("TEMPORAL_PROFILE") or None
    config_file = env.get("TEMPORAL_CONFIG_FILE") or None
    if config_file and not os.path.isfile(config_file):
        raise ConnectionConfigError(
            f"TEMPORAL_CONFIG_FILE {config_file}: no such file (Temporal's client configuration)"
        )
    try:
        loaded: dict[str, Any] = dict(
            ClientConfig.load_client_connect_config(
                profile=profile, config_file=config_file, override_env_vars=env
            )
        )
    except FileNotFoundError as e:
        raise ConnectionConfigError(
            f"Temporal TLS configuration: cannot read {e.filename}: no such file"
        ) from None
    except OSError as e:
        raise ConnectionConfigError(f"Temporal TLS configuration: {e}") from None
    except Exception as e:  # the loader's own errors (unknown profile, bad TOML)
        where = f" (profile {profile!r})" if profile else ""
        raise ConnectionConfigError(
            f"Temporal client configuration{where}: {str(e).splitlines()[0] if str(e) else e}"
        ) from None
    loaded["target_host"] = address or loaded.get("target_host") or DEFAULT_ADDRESS
    loaded["namespace"] = namespace or loaded.get("namespace") or DEFAULT_NAMESPACE
    return loaded


def describe_config(config: Mapping[str, Any]) -> str:
    """What :func:`connect_config` chose, without secrets: ``host:port (namespace N, TLS,
    client certificate, API key)``."""
    how = [f"namespace {config.get('namespace', DEFAULT_NAMESPACE)}"]
    tls = config.get("tls")
    if tls:
        how.append("TLS")
        if getattr(tls, "client_cert", None):
            how.append("client certificate")
    if config.get("api_key"):
        how.append("API key")
    return f"{config.get('target_host')} ({', '.join(how)})"


async def connect(
    address: str | None = None,
    namespace: str | None = None,
    *,
    settings: WorkerSettings | None = None,
    identity: str | None = None,
    connect_timeout: timedelta | None = None,
    metrics_address: str | None = None,
) -> Client:
    """A Temporal client configured as :func:`connect_config` says (profile, ``TEMPORAL_*``
    variables: TLS, mTLS, API key), with Tideflow's data converter; ``identity`` defaults to
    the SDK's ``pid@host`` (what workers use). ``metrics_address`` serves the metrics of the
    client and its workers for Prometheus (default ``TIDEFLOW_METRICS_ADDRESS``).
    :meth:`TideflowClient.connect <starter.client.TideflowClient.connect>` wraps it."""
    config = connect_config(address, namespace)
    # A server that has just opened its port may answer "Frontend is not healthy yet" for a
    # moment (seen with the dev server on a busy machine): that is a wait, not a failure.
    deadline = asyncio.get_running_loop().time() + _UNHEALTHY_WAIT_SECONDS
    while True:
        try:
            return await Client.connect(
                **config,
                data_converter=data_converter(settings),
                interceptors=telemetry.interceptors(),
                runtime=telemetry.runtime(metrics_address),
                identity=identity,
                connect_timeout=connect_timeout,
            )
        except RuntimeError as e:
            if "not healthy yet" not in str(e) or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


_UNHEALTHY_WAIT_SECONDS = 15.0


class _IdentityServiceClient(ServiceClient):
    """A service client sending through another one's connection under its own identity.

    The SDK writes ``client.identity`` — ``service_client.config.identity`` — into every
    request that carries one (signals, updates, cancellations, starts); the connection itself
    is identity-free, so many identities can share it."""

    def __init__(self, inner: ServiceClient, identity: str) -> None:
        super().__init__(dataclasses.replace(inner.config, identity=identity))
        self._inner = inner

    @property
    def worker_service_client(self) -> Any:
        """The connection's own service client (workers poll through it)."""
        return self._inner.worker_service_client

    def update_rpc_metadata(self, metadata: Mapping[str, str | bytes]) -> None:
        """Update the shared connection's metadata."""
        self._inner.update_rpc_metadata(metadata)

    def update_api_key(self, api_key: str | None) -> None:
        """Update the shared connection's API key."""
        self._inner.update_api_key(api_key)

    async def _rpc_call(self, rpc: str, req: Any, resp_type: Any, **options: Any) -> Any:
        return await self._inner._rpc_call(rpc, req, resp_type, **options)


def with_identity(client: Client, identity: str) -> Client:
    """A client sharing ``client``'s connection, namespace and converter whose requests carry
    ``identity`` (the HTTP API acts as each caller without connecting per request)."""
    if client.identity == identity:
        return client
    config = client.config()
    service = config["service_client"]
    if isinstance(service, _IdentityServiceClient):
        service = service._inner
    config["service_client"] = _IdentityServiceClient(service, identity)
    return Client(**config)
