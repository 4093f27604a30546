"""Commands that start and follow runs: ``run``, ``start``, ``status``, ``result``, ``list``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from starter.cli.arguments import (
    Commands,
    add_input_args,
    check_inputs,
    inputs,
    print_json,
)
from starter.cli.connection import (
    client_for_run,
    connect,
    local_inputs,
    open_run,
    task_queue,
    wait_for_worker,
)
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Exit
from starter.cli.registry import run_target

if TYPE_CHECKING:
    from interpreter import Definition
    from starter.client import RunHandle, TideflowClient


def register(commands: Commands) -> None:
    """Add this module's commands."""
    for name, handler, text in (
        ("run", _run, "start a run and wait for its report (exit 0 completed, 1 failed)"),
        ("start", _start, "start a run and print its workflow id"),
    ):
        p = commands.add(name, handler, text)
        _start_args(p)
        if name == "run":
            p.add_argument(
                "--wait-for-worker",
                type=float,
                default=30.0,
                metavar="SECONDS",
                help="how long to wait for a worker polling the task queue before giving up "
                "(default 30)",
            )
            p.add_argument("--json", action="store_true", help="print the report as JSON")
            p.add_argument(
                "--embedded",
                action="store_true",
                help="start the embedded server and a worker for this run if no "
                "server answers at TEMPORAL_ADDRESS",
            )

    p = commands.add("status", _status, "show a run's live state")
    p.add_argument("workflow_id", metavar="ID")
    p.add_argument("--json", action="store_true")

    p = commands.add("result", _result, "wait for a run's report and print it as JSON")
    p.add_argument("workflow_id", metavar="ID")

    p = commands.add("list", _list, "list recent runs")
    p.add_argument("--definition", help="definition slug, e.g. invoice-processing")
    p.add_argument(
        "--status",
        help="running, paused, waiting, needs_attention, completed, "
        "failed, cancelled, terminated, timed_out",
    )
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")


def _start_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "file",
        metavar="FILE",
        help="a definition file, or a deployed definition: NAME (its active version) or "
        "NAME@VERSION",
    )
    add_input_args(p)
    p.add_argument("--id", dest="workflow_id", help="workflow id (default slug-random)")
    p.add_argument("--task-queue", help="task queue (default tideflow)")
    p.add_argument(
        "--upload",
        action="store_true",
        help="copy inputs that name local files to the payload store (done anyway "
        "when the worker runs on another machine); otherwise they become file:// URIs",
    )
    p.add_argument(
        "--priority",
        type=int,
        choices=range(1, 6),
        metavar="1-5",
        help="the run's task priority: 1 first, 5 last (default the definition's, else 3)",
    )
    if p.prog.endswith(" start"):
        p.add_argument(
            "--queue",
            action="store_true",
            help="write the start to the outbox first: kept while Temporal is unreachable and "
            "delivered once it answers (always so for definitions with `concurrency`)",
        )


async def _start(args: argparse.Namespace) -> int:
    definition, memo = run_target(args.file)
    given = inputs(args)
    check_inputs(definition, given)
    queue = task_queue(args)
    if args.queue or definition.concurrency:
        return await _start_queued(args, definition, given, queue, memo)
    client = await connect()
    identities = await client.poller_identities(queue)
    if not identities:
        print(
            f"note: no worker is polling task queue {queue!r}: the run waits until one does "
            "(start one with `tideflow worker`)",
            file=sys.stderr,
        )
    given = await local_inputs(args, given, identities)
    run = await client.start(
        definition,
        given,
        workflow_id=args.workflow_id,
        task_queue=queue,
        memo=memo,
        priority=args.priority,
    )
    print(run.id)
    print(f"Web UI: {run.web_ui_url()}", file=sys.stderr)
    return EXIT_OK


async def _start_queued(
    args: argparse.Namespace,
    definition: Definition,
    given: dict[str, Any],
    queue: str,
    memo: dict[str, Any] | None = None,
) -> int:
    """``start --queue``: accepted into the outbox, delivered now if Temporal takes it."""
    from activities import WorkerSettings
    from starter.cli.deployment import cli_outbox, explain

    given = await local_inputs(args, given, None)
    starts, _ = cli_outbox(WorkerSettings.from_env())
    accepted = await starts.start(
        definition,
        given,
        source="cli",
        task_queue=queue,
        workflow_id=args.workflow_id,
        memo=memo,
        priority=args.priority,
    )
    print(accepted.entry.workflow_id)
    print(explain(accepted.entry), file=sys.stderr)
    return EXIT_OK


async def _run(args: argparse.Namespace) -> int:
    from starter.client import web_ui_url
    from starter.progress import follow

    definition, memo = run_target(args.file)
    given = inputs(args)
    check_inputs(definition, given)
    queue = task_queue(args)
    async with client_for_run(args.embedded, queue) as client:
        # The embedded worker starts polling a moment after it starts: no false alarm.
        identities = await wait_for_worker(
            client, queue, args.wait_for_worker, quiet=2.0 if args.embedded else 0.0
        )
        given = await local_inputs(args, given, identities)
        if definition.concurrency:
            run = await _start_when_a_slot_is_free(client, args, definition, given, queue, memo)
        else:
            run = await client.start(
                definition,
                given,
                workflow_id=args.workflow_id,
                task_queue=queue,
                memo=memo,
                priority=args.priority,
            )
        if not args.json:
            print(f"started {run.id}", file=sys.stderr)
            await follow(client.temporal, run.id, definition)
        report = await run.report()
    if args.json:
        print_json(report)
    else:
        from starter.progress import print_report

        print_report(report)
        print(f"Web UI: {web_ui_url(report.workflow_id, report.run_id)}")
    return EXIT_OK if report.status == "completed" else EXIT_FAILED


async def _start_when_a_slot_is_free(
    client: TideflowClient,
    args: argparse.Namespace,
    definition: Definition,
    given: dict[str, Any],
    queue: str,
    memo: dict[str, Any] | None = None,
) -> RunHandle:
    """A run of a definition with ``concurrency``: through the outbox, waiting for a slot."""
    from activities import WorkerSettings
    from starter.outbox import Deliverer, Outbox, StartOutbox

    async def connected() -> TideflowClient:
        return client

    settings = WorkerSettings.from_env()
    outbox = Outbox.of(settings)
    deliverer = Deliverer(outbox, connected)
    starts = StartOutbox(outbox, deliverer, settings)
    accepted = await starts.start(
        definition,
        given,
        source="cli",
        task_queue=queue,
        workflow_id=args.workflow_id,
        memo=memo,
        priority=args.priority,
    )
    entry, said = accepted.entry, ""
    while entry.status in ("pending", "waiting"):
        if entry.error and entry.error != said:
            print(f"{entry.workflow_id}: {entry.error}", file=sys.stderr, flush=True)
            said = entry.error
        await asyncio.sleep(1.0)
        (entry,) = await deliverer.settle([entry.id], 5.0)
    if entry.status == "failed":
        raise Exit(EXIT_FAILED, f"start refused: {entry.error}")
    assert entry.workflow_id is not None
    return client.get_run(entry.workflow_id, entry.run_id)


async def _status(args: argparse.Namespace) -> int:
    from temporalio.client import WorkflowExecutionStatus

    from starter.client import web_ui_url
    from starter.progress import print_state, retries

    client = await connect()
    run = client.get_run(args.workflow_id)
    description = await run.describe()
    queue = description.task_queue
    if not await client.has_workers(queue):
        # The state query is answered by a worker only: it would hang until a timeout.
        if description.status == WorkflowExecutionStatus.RUNNING:
            raise Exit(
                EXIT_FAILED,
                f"run {args.workflow_id!r} is running but no worker is polling its task queue "
                f"{queue!r} to answer for its nodes (start one with `tideflow worker`)",
            )
        ended = description.status.name.lower() if description.status else "closed"
        raise Exit(
            EXIT_FAILED,
            f"run {args.workflow_id!r} has ended ({ended}) and no worker is polling its task "
            f"queue {queue!r} to show its nodes (`tideflow result {args.workflow_id}` shows "
            "its report)",
        )
    state = await run.state(timeout=15)
    if args.json:
        print_json(state)
    else:
        link = web_ui_url(args.workflow_id, description.run_id, client.namespace)
        print_state(args.workflow_id, state, await retries(run.temporal), link)
    return EXIT_OK


async def _result(args: argparse.Namespace) -> int:
    client = await connect()
    run, _ = await open_run(client, args.workflow_id, "finish it")
    report = await run.report()
    print_json(report)
    return EXIT_OK if report.status == "completed" else EXIT_FAILED


async def _list(args: argparse.Namespace) -> int:
    client = await connect()
    try:
        runs = await client.list_runs(
            definition=args.definition, status=args.status, limit=args.limit
        )
    except ValueError as e:
        raise Exit(EXIT_BAD_INPUT, str(e)) from None
    if args.json:
        print_json([run.model_dump() for run in runs])
        return EXIT_OK
    from starter.progress import print_runs

    print_runs(runs)
    return EXIT_OK
