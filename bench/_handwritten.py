"""The hand-written Temporal workflow the YAML runs are compared with.

It calls the very activity the ``bench.noop`` node type registers (same wrapper, same
``NodeInput``/``NodeResult``, same retry policy as a Tideflow node without ``retry``), the way a
developer would write it by hand: a loop for a sequence, ``asyncio.gather`` for a fan-out.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from interpreter.node_io import NodeInput, NodeResult

NOOP_TYPE = "bench.noop"
HANDWRITTEN_NAME = "BenchHandWritten"


class HandWrittenInput(BaseModel):
    """How many activities to call, and whether all at once."""

    count: int
    parallel: bool = False
    limit: int | None = None
    """In parallel, at most this many activities at once (None: all of them)."""


@workflow.defn(name=HANDWRITTEN_NAME)
class HandWritten:
    """N calls of ``bench.noop``, in sequence or in parallel; returns their outputs."""

    @workflow.run
    async def run(self, input: HandWrittenInput) -> list[Any]:
        """Call the activity ``input.count`` times."""

        async def call(i: int) -> Any:
            result = await workflow.execute_activity(
                NOOP_TYPE,
                NodeInput(node_id=f"s{i}", config={"value": i}),
                result_type=NodeResult,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    backoff_coefficient=2.0,
                    maximum_attempts=3,
                ),
            )
            return result.output

        if input.parallel and input.limit:
            gate = asyncio.Semaphore(input.limit)

            async def limited(i: int) -> Any:
                async with gate:
                    return await call(i)

            return list(await asyncio.gather(*(limited(i) for i in range(input.count))))
        if input.parallel:
            return list(await asyncio.gather(*(call(i) for i in range(input.count))))
        return [await call(i) for i in range(input.count)]
