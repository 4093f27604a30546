"""Reaching Temporal for a command: connecting (or an embedded server), the task queue, waiting
for a worker, checking that a run can answer, and inputs that name local files."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from starter.cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    Exit,
    address,
    connect_failure,
    first_line,
)

if TYPE_CHECKING:
    from temporalio.client import WorkflowExecutionDescription

    from starter.client import RunHandle, TideflowClient


async def connect(origin: str = "cli") -> TideflowClient:
    """The command's one client, configured by Temporal's environment configuration
    (``TEMPORAL_ADDRESS``, ``TEMPORAL_PROFILE``…), acting as :func:`~starter.client.acting_user`
    with :func:`~starter.client.acting_roles`; a one-line failure when it cannot be reached or
    the configuration is wrong."""
    from activities.encryption import KeyConfigError
    from starter.client import ConnectionConfigError, TideflowClient

    try:
        return await TideflowClient.connect(origin=origin)
    except ConnectionConfigError as e:
        raise Exit(EXIT_FAILED, f"cannot connect to Temporal: {e}") from None
    except KeyConfigError as e:
        raise Exit(EXIT_BAD_INPUT, str(e)) from None
    except Exception as e:
        raise Exit(EXIT_FAILED, connect_failure(e, address())) from None


def task_queue(args: argparse.Namespace) -> str:
    """``--task-queue``, else the worker settings' queue."""
    from activities import WorkerSettings

    return str(args.task_queue or WorkerSettings.from_env().task_queue)


async def wait_for_worker(
    client: TideflowClient, queue: str, seconds: float, *, quiet: float
) -> list[str]:
    """The identities of the workers polling ``queue``, waiting up to ``seconds`` for one
    (saying so after ``quiet`` seconds); a one-line failure when none comes."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    said = False
    while True:
        identities = await client.poller_identities(queue)
        if identities:
            if said:
                print(f"a worker is polling task queue {queue!r}", file=sys.stderr)
            return identities
        waited = loop.time() - start
        if not said and waited >= quiet:
            print(
                f"no worker is polling task queue {queue!r}; waiting up to "
                f"{seconds:g} s (--wait-for-worker)",
                file=sys.stderr,
                flush=True,
            )
            said = True
        if waited >= seconds:
            raise Exit(
                EXIT_FAILED,
                f"no worker polled task queue {queue!r} in {seconds:g} s: nothing was started "
                "(start one with `tideflow worker`, or use `tideflow run --embedded`)",
            )
        await asyncio.sleep(min(0.5, max(seconds - waited, 0.05)))


async def open_run(
    client: TideflowClient, workflow_id: str, what: str
) -> tuple[RunHandle, WorkflowExecutionDescription]:
    """The handle and description of a run that a worker can answer for; a one-line failure
    when it is still open and no worker polls its task queue (the request would hang)."""
    from temporalio.client import WorkflowExecutionStatus

    run = client.get_run(workflow_id)
    description = await run.describe()
    running = description.status == WorkflowExecutionStatus.RUNNING
    queue = description.task_queue
    if running and not await client.has_workers(queue):
        raise Exit(
            EXIT_FAILED,
            f"run {workflow_id!r} is running but no worker is polling its task queue "
            f"{queue!r} to {what} (start one with `tideflow worker`)",
        )
    return run, description


async def local_inputs(
    args: argparse.Namespace, inputs: dict[str, Any], identities: list[str] | None
) -> dict[str, Any]:
    """Inputs naming local files as URIs: uploaded with --upload or a remote worker."""
    from activities import WorkerSettings
    from starter.local_files import local_file, remote_pollers, resolve_local_files

    if not any(local_file(value) for value in inputs.values()):
        return inputs
    upload = bool(getattr(args, "upload", False))
    if not upload and identities and remote_pollers(identities):
        print(
            "note: the worker runs on another machine: local files are uploaded to the "
            "payload store",
            file=sys.stderr,
        )
        upload = True
    try:
        resolved, replaced = await resolve_local_files(
            inputs, upload=upload, settings=WorkerSettings.from_env()
        )
    except (OSError, ValueError) as e:
        raise Exit(EXIT_FAILED, f"cannot upload an input file: {first_line(str(e))}") from None
    for item in replaced:
        how = "uploaded to" if item.uploaded else "→"
        print(f"input {item.name}: {item.path} {how} {item.uri}", file=sys.stderr)
    return resolved


@asynccontextmanager
async def client_for_run(embedded: bool, task_queue: str) -> AsyncIterator[TideflowClient]:
    """A connected client, or (with ``embedded``) one of an embedded server and worker when
    no server answers."""
    if not embedded:
        yield await connect()
        return
    from activities import WorkerSettings
    from starter.embedded import embedded_temporal

    # The worker polls the queue the run is started on, --task-queue included.
    settings = WorkerSettings.from_env().model_copy(update={"task_queue": task_queue})
    async with embedded_temporal(settings) as client:
        yield client
