"""Builds and runs a Tideflow worker: the generic workflow plus every registered node type.

``python worker.py`` (or ``tideflow worker``) connects to ``TEMPORAL_ADDRESS`` (default
localhost:7233) in ``TEMPORAL_NAMESPACE`` and polls the ``tideflow`` task queue
(``TIDEFLOW_TASK_QUEUE``). Settings come from the environment and ``TIDEFLOW_CONFIG``
(see ``activities/settings.py``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import activities
from activities import WorkerResources, WorkerSettings
from interpreter.workflow import TideflowWorkflow

# Modules the workflow sandbox may share with the worker instead of re-importing them per run:
# the interpreter is pure (no I/O, clock or randomness) and the rest are its pure dependencies.
PASSTHROUGH_MODULES = ("interpreter", "cel", "pydantic", "pydantic_core", "annotated_types", "yaml")

log = logging.getLogger("tideflow.worker")


def workflow_runner() -> SandboxedWorkflowRunner:
    """The sandboxed runner with Tideflow's pure modules passed through."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


def build_worker(
    client: Client,
    resources: WorkerResources,
    *,
    task_queue: str | None = None,
    activities_only: bool = False,
) -> Worker:
    """A worker for the generic workflow and every registered node type.

    ``activities_only`` builds a worker for a node pool (``task_queue:`` of heavy nodes) that
    runs no workflows.
    """
    activities.load_extensions()
    settings = resources.settings
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[] if activities_only else [TideflowWorkflow],
        activities=activities.registry.activities(resources),
        workflow_runner=workflow_runner(),
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_local_activities=settings.max_concurrent_local_activities,
        # Bounded so a burst of runs cannot starve the worker's event loop (MACHINE-NOTES).
        max_concurrent_workflow_tasks=50,
    )


@asynccontextmanager
async def running_worker(
    client: Client, settings: WorkerSettings, *, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """Run a worker in the background for the duration of the block (tests, ``tideflow dev``)."""
    resources = WorkerResources(settings)
    worker = build_worker(client, resources, task_queue=task_queue)
    try:
        async with worker:
            yield worker
    finally:
        await resources.aclose()


async def main(*, development: bool = False) -> None:
    """Connect, make sure the search attributes exist, and poll until SIGINT/SIGTERM.

    ``development`` (``tideflow dev``) applies :meth:`WorkerSettings.for_development`: private
    networks and the project's examples folder are allowed unless configured otherwise.
    """
    from starter.client import connect
    from starter.server import ensure_search_attributes

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = WorkerSettings.from_env()
    if development:
        settings = settings.for_development()
    client = await connect(settings=settings)
    await ensure_search_attributes(client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_worker(client, settings):
        log.info(
            "worker polling task queue %r on %s (namespace %s)",
            settings.task_queue,
            client.service_client.config.target_host,
            client.namespace,
        )
        await stop.wait()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
