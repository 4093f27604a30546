"""Builds and runs a Tideflow worker: the generic workflow plus every registered node type.

``python worker.py`` (or ``tideflow worker``) connects to ``TEMPORAL_ADDRESS`` (default
localhost:7233) in ``TEMPORAL_NAMESPACE`` and polls the ``tideflow`` task queue
(``TIDEFLOW_TASK_QUEUE``). Settings come from the environment and ``TIDEFLOW_CONFIG``
(see ``activities/settings.py``): the worker's slots, the node pools it also serves (with their
task-queue rate limits), the extensions whose hooks it calls and its metrics export.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import activities
from activities import WorkerResources, WorkerSettings
from activities.hook_dispatch import HookDispatcher
from activities.hooks import ExtensionError, load_hooks
from activities.settings import SettingsError
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
    queue = task_queue or settings.task_queue
    pool = settings.pools.get(queue)
    return Worker(
        client,
        task_queue=queue,
        workflows=[] if activities_only else [TideflowWorkflow],
        activities=activities.registry.activities(resources),
        workflow_runner=workflow_runner(),
        max_concurrent_activities=(
            pool.max_concurrent_activities
            if pool and pool.max_concurrent_activities
            else settings.max_concurrent_activities
        ),
        max_concurrent_local_activities=settings.max_concurrent_local_activities,
        # Temporal's rate limit for the whole task queue, whichever workers poll it.
        max_task_queue_activities_per_second=pool.rate_limit if pool else None,
        # Bounded so a burst of runs cannot starve the worker's event loop (MACHINE-NOTES).
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
    )


@asynccontextmanager
async def running_worker(
    client: Client, settings: WorkerSettings, *, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """Run a worker in the background for the duration of the block (tests, ``tideflow dev``):
    the main task queue, an activities-only worker per node pool of ``settings.pools``, and the
    hooks of the configured extensions (ExtensionError when one cannot be loaded)."""
    resources = WorkerResources(settings)
    queue = task_queue or settings.task_queue
    hooks = HookDispatcher(load_hooks(settings), task_queue=queue)
    worker = build_worker(client, resources, task_queue=queue)
    pools = [
        build_worker(client, resources, task_queue=name, activities_only=True)
        for name in settings.pools
        if name != queue
    ]
    try:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(hooks)  # listening before the first run starts
            for pool_worker in pools:
                await stack.enter_async_context(pool_worker)
            await stack.enter_async_context(worker)
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
    monitoring = settings.monitoring
    client = await connect(
        settings=settings, metrics_address=monitoring.address if monitoring.enabled else None
    )
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
        for name, pool in settings.pools.items():
            limit = f", at most {pool.rate_limit:g} activities/s" if pool.rate_limit else ""
            log.info("node pool %r%s", name, limit)
        if settings.extensions:
            enabled = [e.name for e in settings.extensions if e.enabled]
            log.info("extension hooks: %s", ", ".join(enabled) or "none enabled")
        if monitoring.enabled:
            log.info("metrics for Prometheus on http://%s/metrics", monitoring.address)
        await stop.wait()
    log.info("worker stopped")


def run_main(*, development: bool = False) -> int:
    """:func:`main` for a command line: a configuration or extension that does not fit is one
    line per problem on stderr and exit code 2, never a traceback."""
    try:
        asyncio.run(main(development=development))
    except (SettingsError, ExtensionError) as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_main())
