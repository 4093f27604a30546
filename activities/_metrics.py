"""Per-node metrics of a worker: every activity attempt of a node is measured
(:mod:`activities._resource_use`), written to the engine's metrics store
(:mod:`starter.node_metrics`) and counted on the worker's Prometheus endpoint
(``TIDEFLOW_METRICS_ADDRESS``, next to Temporal's own metrics) with ``node`` and ``definition``
labels besides Temporal's ``activity_type`` (the node type), ``task_queue`` and ``namespace``.

Recording never delays a node: the attempt's numbers are handed to a background task that
finds the run's definition (Temporal's ``TideflowDefinition`` search attribute, asked once per
run and worker; a child run's is its parent's), updates the Prometheus instruments and queues
the row; rows are written in batches, in a thread, about once a second, and when the worker
stops. Prometheus series (the worker exports them while it runs):

* ``tideflow_node_attempts`` (counter; ``outcome`` completed|failed|cancelled|cached,
  ``error_type``), ``tideflow_node_retries`` (attempts after the first),
* ``tideflow_node_duration_seconds``, ``tideflow_node_cpu_seconds`` (histograms: ``_sum`` is
  the total), ``tideflow_node_peak_rss_bytes`` (gauge, the latest attempt),
* ``tideflow_ai_tokens`` (counter; ``kind`` prompt|completion), ``tideflow_ai_cost_usd``
  (histogram: ``_sum`` is the total).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import MetricMeter, SearchAttributeKey

from activities._resource_use import Measurement, measure
from activities.errors import NodeError
from activities.settings import WorkerSettings
from interpreter.node_io import Usage

log = logging.getLogger("tideflow.metrics")

WORKFLOW_TYPE = "TideflowWorkflow"
"""Only attempts of Tideflow runs are recorded (not of tests' stand-alone activities)."""
DEFINITION_KEY = SearchAttributeKey.for_keyword("TideflowDefinition")
FLUSH_SECONDS = 1.0
_MAX_BUFFERED = 500
_KNOWN_RUNS = 4096
_ITEM = re.compile(r"(?:\[\d+\])?(?:~\d+)?$")
"""A foreach item's ``[index]`` and a rerun's ``~n`` after a node id."""


def node_label(label: str) -> str:
    """The node a unit label belongs to: ``lines[3]`` and ``lines~2`` are ``lines``."""
    return _ITEM.sub("", label) or label


@dataclass
class Attempt:
    """One attempt being measured; the wrapper ends it with :meth:`NodeMetrics.finish`."""

    workflow_id: str
    run_id: str
    node: str
    node_type: str
    number: int
    task_queue: str
    started: datetime
    measurement: Measurement
    clock: float = field(default_factory=time.monotonic)
    usage: Usage | None = None


@dataclass
class _Instruments:
    attempts: Any
    retries: Any
    duration: Any
    cpu: Any
    rss: Any
    tokens: Any
    cost: Any

    @classmethod
    def of(cls, meter: MetricMeter) -> _Instruments:
        return cls(
            attempts=meter.create_counter(
                "tideflow_node_attempts", "Activity attempts of nodes, by outcome"
            ),
            retries=meter.create_counter(
                "tideflow_node_retries", "Attempts of nodes after their first"
            ),
            duration=meter.create_histogram_float(
                "tideflow_node_duration_seconds", "Duration of node attempts", "s"
            ),
            cpu=meter.create_histogram_float(
                "tideflow_node_cpu_seconds", "Worker CPU seconds of node attempts", "s"
            ),
            rss=meter.create_gauge(
                "tideflow_node_peak_rss_bytes",
                "Peak worker memory (RSS) while the node's latest attempt ran",
                "By",
            ),
            tokens=meter.create_counter("tideflow_ai_tokens", "AI tokens used by nodes"),
            cost=meter.create_histogram_float(
                "tideflow_ai_cost_usd", "AI cost of node attempts", "USD"
            ),
        )


class NodeMetrics:
    """A worker's recorder of node attempts (one per :class:`WorkerResources`)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._rows: list[dict[str, Any]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._definitions: OrderedDict[str, str] = OrderedDict()
        self._instruments: dict[tuple[str, str], _Instruments] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._engine: Any = None
        self._pruned = 0.0

    def start(self, info: activity.Info, label: str, node_type: str) -> Attempt | None:
        """Start measuring an attempt (None when this is not a Tideflow run's activity)."""
        if info.workflow_type != WORKFLOW_TYPE:
            return None
        return Attempt(
            workflow_id=info.workflow_id or "",
            run_id=info.workflow_run_id or "",
            node=node_label(label),
            node_type=node_type,
            number=info.attempt,
            task_queue=info.task_queue,
            started=datetime.now(UTC),
            measurement=measure(),
        )

    def finish(self, attempt: Attempt, outcome: str, error: BaseException | None = None) -> None:
        """End an attempt: measure it and record it in the background."""
        attempt.measurement.stop()
        duration = time.monotonic() - attempt.clock
        meter = _meter()
        client = _client()
        task = asyncio.ensure_future(
            self._record(attempt, outcome, _error_type(error), duration, meter, client)
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _record(
        self,
        attempt: Attempt,
        outcome: str,
        error_type: str,
        duration: float,
        meter: MetricMeter | None,
        client: Client | None,
    ) -> None:
        try:
            definition = await self._definition(client, attempt.workflow_id)
            usage = attempt.usage or Usage()
            if meter is not None:
                self._count(meter, attempt, definition, outcome, error_type, duration, usage)
            if not self.settings.record_metrics:
                return
            self._rows.append(
                {
                    "workflow_id": attempt.workflow_id,
                    "run_id": attempt.run_id,
                    "definition": definition,
                    "node": attempt.node,
                    "node_type": attempt.node_type,
                    "attempt": attempt.number,
                    "outcome": outcome,
                    "error_type": error_type,
                    "started_at": attempt.started.replace(tzinfo=None),
                    "duration_seconds": duration,
                    "cpu_seconds": attempt.measurement.cpu_seconds,
                    "peak_rss_bytes": attempt.measurement.peak_rss_bytes,
                    "prompt_tokens": usage.prompt_tokens,
                    "completion_tokens": usage.completion_tokens,
                    "cost_usd": usage.cost_usd,
                }
            )
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.ensure_future(self._flush_soon())
        except Exception:  # metrics must never fail a node
            log.exception("recording the metrics of node %s failed", attempt.node)

    def _count(
        self,
        meter: MetricMeter,
        attempt: Attempt,
        definition: str,
        outcome: str,
        error_type: str,
        duration: float,
        usage: Usage,
    ) -> None:
        key = (attempt.node_type, attempt.task_queue)
        instruments = self._instruments.get(key)
        if instruments is None:
            instruments = self._instruments[key] = _Instruments.of(meter)
        labels = {"node": attempt.node, "definition": definition}
        instruments.attempts.add(1, {**labels, "outcome": outcome, "error_type": error_type})
        if attempt.number > 1:
            instruments.retries.add(1, labels)
        instruments.duration.record(duration, {**labels, "outcome": outcome})
        instruments.cpu.record(attempt.measurement.cpu_seconds, labels)
        instruments.rss.set(attempt.measurement.peak_rss_bytes, labels)
        if usage.prompt_tokens:
            instruments.tokens.add(usage.prompt_tokens, {**labels, "kind": "prompt"})
        if usage.completion_tokens:
            instruments.tokens.add(usage.completion_tokens, {**labels, "kind": "completion"})
        if usage.cost_usd:
            instruments.cost.record(usage.cost_usd, labels)

    async def _definition(self, client: Client | None, workflow_id: str, depth: int = 0) -> str:
        """The slug of the definition a run (or its top-level parent) runs, asked once."""
        if workflow_id in self._definitions:
            self._definitions.move_to_end(workflow_id)
            return self._definitions[workflow_id]
        slug = ""
        if client is not None:
            try:
                described = await client.get_workflow_handle(workflow_id).describe()
                slug = described.typed_search_attributes.get(DEFINITION_KEY) or ""
                if not slug and described.parent_id and depth < 3:
                    slug = await self._definition(client, described.parent_id, depth + 1)
            except Exception:  # the server is away: the row still counts, unlabelled
                return ""
        self._definitions[workflow_id] = slug
        while len(self._definitions) > _KNOWN_RUNS:
            self._definitions.popitem(last=False)
        return slug

    async def _flush_soon(self) -> None:
        # Until nothing is left: rows recorded while a batch was being written wait for the
        # next one, not for the next attempt to end.
        while self._rows:
            if len(self._rows) < _MAX_BUFFERED:
                await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        """Write the queued rows now (in a thread)."""
        rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            await asyncio.to_thread(self._write, rows)
        except Exception:
            log.exception("writing %d node metrics to the store failed", len(rows))

    def _write(self, rows: list[dict[str, Any]]) -> None:
        from starter.node_metrics import forget_before, metrics_store, write_attempts

        if self._engine is None:
            self._engine = metrics_store(self.settings.resolved_store_url)
        write_attempts(self._engine, rows)
        days = self.settings.metrics_retention_days
        if days and time.monotonic() - self._pruned > 3600:
            self._pruned = time.monotonic()
            forget_before(self._engine, datetime.now(UTC) - timedelta(days=days))

    async def aclose(self) -> None:
        """Record what is in flight and write every queued row (the worker stops)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        await self.flush()


def _meter() -> MetricMeter | None:
    try:
        meter = activity.metric_meter()
    except RuntimeError:
        return None
    return None if meter is MetricMeter.noop else meter


def _client() -> Client | None:
    try:
        return activity.client()
    except RuntimeError:
        return None


def _error_type(error: BaseException | None) -> str:
    if error is None:
        return ""
    if isinstance(error, NodeError):
        return type(error).__name__
    kind = getattr(error, "type", None)  # an ApplicationError names the error it carries
    return str(kind) if kind else type(error).__name__
