"""Links to runs in the Temporal Web UI."""

from __future__ import annotations

import os

from starter.client.connection import DEFAULT_ADDRESS


def web_ui_base() -> str:
    """The Temporal Web UI's address: ``TIDEFLOW_UI_URL`` if set, else the embedded server's
    (``<TIDEFLOW_HOME>/server.json``) when it serves ``TEMPORAL_ADDRESS``, else localhost:8233."""
    explicit = os.environ.get("TIDEFLOW_UI_URL")
    if explicit:
        return explicit.rstrip("/")
    from starter.server import running_server_info

    info = running_server_info()
    address = os.environ.get("TEMPORAL_ADDRESS", DEFAULT_ADDRESS)
    if info and info.get("ui_url") and _same_address(str(info.get("address")), address):
        return str(info["ui_url"]).rstrip("/")
    return "http://localhost:8233"


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0", ""})


def _same_address(a: str, b: str) -> bool:
    host_a, _, port_a = a.rpartition(":")
    host_b, _, port_b = b.rpartition(":")
    if port_a != port_b:
        return False
    return host_a == host_b or (host_a in _LOOPBACK and host_b in _LOOPBACK)


def web_ui_url(workflow_id: str, run_id: str | None = None, namespace: str | None = None) -> str:
    """Link to a run in the Temporal Web UI (see :func:`web_ui_base`)."""
    base = web_ui_base()
    namespace = namespace or os.environ.get("TEMPORAL_NAMESPACE", "default")
    tail = f"/{run_id}" if run_id else ""
    return f"{base}/namespaces/{namespace}/workflows/{workflow_id}{tail}/history"
