"""A real PostgreSQL 15 server (Debian's packages), started once per test session.

The cluster lives in a temporary folder owned by the ``postgres`` user (initdb refuses to run as
root), listens on a free loopback port with ``fsync=off`` (test data need not survive a crash),
and is stopped at the end of the session. The ``postgres`` superuser logs in without a password;
every other role must give its password (scram-sha-256), so tests can check refused logins.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = "apt-get install -y postgresql"


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: list[str], *, as_postgres: bool) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, as the postgres user when we are root (initdb refuses root)."""
    if as_postgres:
        command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(command)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres`` of a fresh cluster."""
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not initdb.exists() or not pg_ctl.exists():
        pytest.fail(f"PostgreSQL 15 is not installed ({initdb} is missing): run `{INSTALL_HINT}`")
    as_postgres = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="tideflow-pg-"))
    data = base / "data"
    data.mkdir()
    if as_postgres:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    init = _run(
        [str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
        as_postgres=as_postgres,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed: {init.stdout}\n{init.stderr}")
    # Written in place, so the file keeps its owner (postgres).
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    port = free_port()
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = _run(
        [str(pg_ctl), "-D", str(data), "-l", str(data / "log"), "-o", options, "-w", "start"],
        as_postgres=as_postgres,
    )
    if start.returncode != 0:
        log = (data / "log").read_text() if (data / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {start.stdout}\n{start.stderr}\n{log}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        _run(
            [str(pg_ctl), "-D", str(data), "-m", "immediate", "-w", "stop"], as_postgres=as_postgres
        )
        shutil.rmtree(base, ignore_errors=True)
