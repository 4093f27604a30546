"""Docker healthcheck of a Tideflow worker container: healthy when a worker of this container
polls its task queue.

Temporal lists the pollers of a task queue with their identity, ``<pid>@<hostname>`` by
default, and the time of their last poll. A container's hostname is its own, so a poller whose
identity ends in ``@<hostname>`` and which polled within ``TIDEFLOW_HEALTH_MAX_AGE`` seconds
(default 180: a long poll lasts about 70 s) means this worker is connected and not stuck.
Exit 0 when healthy, 1 (with the reason on stderr) otherwise.

Reads ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE`` and ``TIDEFLOW_TASK_QUEUE`` like the worker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from datetime import timedelta

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client


async def problem() -> str | None:
    """Why this container's worker is not healthy, or None."""
    address = os.environ.get("TEMPORAL_ADDRESS", "localhost:7233")
    namespace = os.environ.get("TEMPORAL_NAMESPACE", "default")
    queue = os.environ.get("TIDEFLOW_TASK_QUEUE", "tideflow")
    max_age = float(os.environ.get("TIDEFLOW_HEALTH_MAX_AGE", "180"))
    host = socket.gethostname()
    try:
        client = await asyncio.wait_for(Client.connect(address, namespace=namespace), 10)
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=10),
        )
    except Exception as e:  # any failure to ask is unhealthy; say which
        return f"cannot reach Temporal at {address} ({namespace}): {type(e).__name__}: {e}"
    now = time.time()
    mine = [p for p in described.pollers if p.identity.endswith(f"@{host}")]
    if not mine:
        return f"no worker of host {host} polls task queue {queue!r} on {address} ({namespace})"
    newest = max(p.last_access_time.ToSeconds() for p in mine)
    if now - newest > max_age:
        return f"the worker of host {host} last polled {queue!r} {now - newest:.0f} s ago"
    return None


def main() -> int:
    """Print the problem and return 1, or return 0."""
    found = asyncio.run(problem())
    if found:
        print(found, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalization: the Temporal client's Rust threads can crash it
    # (SIGABRT/SIGSEGV in a few percent of short-lived processes, temporalio/sdk-python#300),
    # which would turn a clear answer into a random exit code.
    os._exit(code)
