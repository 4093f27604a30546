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
import os
import queue
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import activities
from activities import WorkerResources, WorkerSettings
from activities.hook_dispatch import HookDispatcher
from activities.hooks import ExtensionError, load_hooks
from activities.settings import SettingsError
from interpreter import observers
from interpreter.workflow import TideflowWorkflow

if TYPE_CHECKING:
    from starter.lineage import StoreLineage

# Modules the workflow sandbox may share with the worker instead of re-importing them per run:
# the interpreter is pure (no I/O, clock or randomness) and the rest are its pure dependencies.
PASSTHROUGH_MODULES = ("interpreter", "cel", "pydantic", "pydantic_core", "annotated_types", "yaml")
TRUTHY = ("1", "true", "yes", "on")

log = logging.getLogger("tideflow.worker")


def workflow_runner(sandboxed: bool = True) -> WorkflowRunner:
    """The runner of the workflow: the SDK's sandbox with Tideflow's pure modules passed
    through, or (``sandboxed=False``, the worker's default: see ``workflow_sandbox`` in
    activities/settings.py) none. ``TIDEFLOW_WORKFLOW_SANDBOX=1`` in the environment forces
    the sandbox whatever the settings say: the test suite sets it."""
    if not sandboxed and os.environ.get("TIDEFLOW_WORKFLOW_SANDBOX", "").lower() not in TRUTHY:
        return UnsandboxedWorkflowRunner()
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
    """A worker for the generic workflow and the node types its settings serve (every
    registered type by default; see ``node_types`` in activities/settings.py).

    ``activities_only`` builds a worker for a node pool (``task_queue:`` of heavy or untrusted
    nodes) that runs no workflows.
    """
    activities.load_extensions()
    settings = resources.settings
    queue = task_queue or settings.task_queue
    pool = settings.pools.get(queue)
    return Worker(
        client,
        task_queue=queue,
        workflows=[] if activities_only else [TideflowWorkflow],
        activities=activities.registry.activities(resources, task_queue=queue),
        workflow_runner=workflow_runner(settings.workflow_sandbox),
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


class _LineageSink:
    """Records, off the workflow's thread, which definition each run started here runs."""

    def __init__(self, recorder: StoreLineage) -> None:
        self._recorder = recorder
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, name="tideflow-lineage", daemon=True)

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        if event == "run_started":
            self._queue.put(dict(data))

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            self._recorder.run_started(data)

    def __enter__(self) -> _LineageSink:
        self._thread.start()
        observers.add_sink(self, nodes=False)  # it hears run_started only
        return self

    def __exit__(self, *exc: object) -> None:
        observers.remove_sink(self)
        self._queue.put(None)
        self._thread.join(timeout=10)


@asynccontextmanager
async def running_worker(
    client: Client, settings: WorkerSettings, *, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """Run a worker in the background for the duration of the block (tests, ``tideflow dev``):
    the workflow and nodes on ``task_queue`` (default the settings'), nodes only on the
    settings' other ``task_queues`` and on each node pool of ``settings.pools``
    (``workflows: false`` settings run nodes only), and the hooks of the configured
    extensions (ExtensionError when one cannot be loaded)."""
    from starter.lineage import StoreLineage

    recorder = StoreLineage()
    resources = WorkerResources(settings, lineage=recorder)
    main_queue = task_queue or settings.task_queue
    hooks = HookDispatcher(load_hooks(settings), task_queue=main_queue)
    queues = list(dict.fromkeys([main_queue, *settings.task_queues, *settings.pools]))
    workers = [
        build_worker(
            client,
            resources,
            task_queue=name,
            activities_only=name != main_queue or not settings.workflows,
        )
        for name in queues
    ]
    try:
        with _LineageSink(recorder):
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(hooks)  # listening before the first run starts
                for worker in workers[1:]:
                    await stack.enter_async_context(worker)
                await stack.enter_async_context(workers[0])
                yield workers[0]
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
        served = "every node type"
        if settings.node_types != ["*"] or settings.exclude_node_types:
            served = f"node types {', '.join(settings.node_types)}"
            if settings.exclude_node_types:
                served += f" but {', '.join(settings.exclude_node_types)}"
        log.info(
            "worker polling task queue(s) %s on %s (namespace %s)%s; %s",
            ", ".join(repr(q) for q in settings.served_queues),
            client.service_client.config.target_host,
            client.namespace,
            "" if settings.workflows else ", nodes only",
            served,
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
