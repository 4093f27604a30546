"""A real Tideflow worker (the generic workflow plus every node type, the test-only ones
included) polling a unique task queue of the session's Temporal dev server, and a helper to run
YAML text on it. Also the same on the time-skipping test server, for long timers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import tests.testing_node_types  # noqa: F401  (registers test.* before any worker is built)
from activities import WorkerSettings, registry
from interpreter import Definition, load_string
from interpreter.report import RunReport
from starter import client as tideflow_client


@dataclass(frozen=True)
class Tideflow:
    """A connected client and the task queue a Tideflow worker polls."""

    client: Client
    task_queue: str
    home: Path
    """The worker's data folder."""
    payload_store: str = ""
    """The payload store the worker and this client share (``file://…``): a process that starts
    runs must use it too (``TIDEFLOW_PAYLOAD_STORE``)."""
    time_skipping: bool = False
    """On the time-skipping server, results are awaited through the handle ``start`` returned:
    only that handle lets the server skip time while the test waits."""

    @property
    def address(self) -> str:
        """host:port of the Temporal frontend."""
        return self.client.service_client.config.target_host

    def load(self, text: str) -> Definition:
        """Load and validate YAML text against every registered node type."""
        return load_string(text, "<test>", catalog=registry)

    async def run(
        self, text: str, inputs: dict[str, Any] | None = None, **options: Any
    ) -> RunReport:
        """Run YAML text to its end and return the report (``starter.client.run``)."""
        if self.time_skipping:
            return await self.result(await self.start(text, inputs, **options))
        return await tideflow_client.run(
            self.client, self.load(text), inputs, task_queue=self.task_queue, **options
        )

    async def start(
        self, text: str, inputs: dict[str, Any] | None = None, **options: Any
    ) -> WorkflowHandle[Any, RunReport]:
        """Start YAML text without waiting; the handle's ``id`` names the run."""
        return await tideflow_client.start(
            self.client, self.load(text), inputs, task_queue=self.task_queue, **options
        )

    async def result(self, handle: WorkflowHandle[Any, RunReport]) -> RunReport:
        """The report of a started run (a failed run's report too)."""
        if self.time_skipping:
            try:
                return await handle.result()
            except WorkflowFailureError as e:
                report = tideflow_client.report_from_failure(e)
                if report is None:
                    raise
                return report
        return await tideflow_client.result(self.client, handle.id, handle.result_run_id)


@pytest_asyncio.fixture(scope="session")
async def tideflow(
    temporal_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tideflow]:
    """A Tideflow worker on the session's dev server, on its own task queue."""
    from worker import running_worker

    home = tmp_path_factory.mktemp("tideflow-home")
    task_queue = f"tideflow-test-{uuid.uuid4().hex[:8]}"
    # The tests' endpoints (webhook, HTTP file servers) listen on 127.0.0.1.
    store = WorkerSettings.from_env().resolved_payload_store
    settings = WorkerSettings(
        home=home,
        task_queue=task_queue,
        allow_private_networks=True,
        # The store clients read from, as in a deployment where workers and clients share it.
        payload_store=store,
    )
    async with running_worker(temporal_env.client, settings):
        yield Tideflow(temporal_env.client, task_queue, home, payload_store=store)


@pytest_asyncio.fixture(scope="session")
async def time_skipping_tideflow(
    time_skipping_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tideflow]:
    """A Tideflow worker on the time-skipping test server."""
    from worker import running_worker

    home = tmp_path_factory.mktemp("tideflow-skip-home")
    task_queue = f"tideflow-skip-{uuid.uuid4().hex[:8]}"
    store = WorkerSettings.from_env().resolved_payload_store
    settings = WorkerSettings(
        home=home,
        task_queue=task_queue,
        allow_private_networks=True,
        # The store clients read from, as in a deployment where workers and clients share it.
        payload_store=store,
    )
    async with running_worker(time_skipping_env.client, settings):
        yield Tideflow(
            time_skipping_env.client, task_queue, home, payload_store=store, time_skipping=True
        )
