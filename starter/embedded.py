"""A Temporal server and a worker for one command (``tideflow run --embedded``, ``tideflow
demo``): use the server at ``TEMPORAL_ADDRESS`` when one answers, otherwise start the embedded
one in the background with its data in ``TIDEFLOW_HOME``, and keep it running afterwards so the
Web UI link stays valid (``tideflow server --stop`` stops it)."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from activities import WorkerSettings
from starter.client import DEFAULT_ADDRESS, TideflowClient
from starter.server import DevServer, data_home, ensure_search_attributes


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


@asynccontextmanager
async def embedded_temporal(
    settings: WorkerSettings | None = None,
) -> AsyncIterator[TideflowClient]:
    """A connected client with a worker running in this process (on the same connection) for
    the block's duration."""
    from worker import running_worker

    # The in-process worker's own logs (a traceback per failed attempt) would bury the run's
    # progress; the report says what failed. A standalone worker keeps them.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    # A worker for the person at this machine: their own network and the examples are fair game.
    settings = settings or WorkerSettings.from_env().for_development()
    address = os.environ.get("TEMPORAL_ADDRESS", DEFAULT_ADDRESS)
    if not _answers(address):
        server = DevServer(data_dir=data_home())
        print(f"starting the embedded Temporal server (data in {server.data_dir})", file=sys.stderr)
        server.start_background()
        address = server.address
        os.environ["TEMPORAL_ADDRESS"] = address
    client = await TideflowClient.connect(address, settings=settings)
    await ensure_search_attributes(client.temporal)
    async with running_worker(client.temporal, settings):
        yield client
