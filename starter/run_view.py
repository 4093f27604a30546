"""What the run page shows of a run: its graph (from the plan it started with) and, per node,
the live status, attempts, times, tokens and cost (from the run's ``state`` and ``report``
queries while it runs, from its report once it has ended), and a node's input, output and
error for the node page.

The plan is the input of the run's first history event (``RunInput.plan``; runs started by
format-1 clients carry the source ``definition`` instead) and never changes, so it is read
once per run and kept.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from interpreter.control import RunInput
from interpreter.model import Definition
from interpreter.node_io import NodeInput
from interpreter.report import BudgetReport, RunReport, RunState, RunUsage
from interpreter.workflow import TideflowWorkflow
from starter.client import TideflowClient, web_ui_url
from starter.client.listing import status_word
from starter.run_graph import GraphNode

QUERY_SECONDS = 5.0
"""How long a live query may take (a run answers through a worker)."""
_ERROR_CHARS = 400
_PLANS = 256
_UNIT = re.compile(r"^(?P<node>.+?)(?:\[\d+\])?(?:~\d+)?$")


class NodeLive(BaseModel):
    """One node as the run page shows it."""

    status: str = "pending"
    attempts: int = 0
    started_at: str | None = None
    ended_at: str | None = None
    duration_seconds: float | None = None
    """From start to end, or to now while it runs."""
    tokens: int = 0
    cost_usd: float | None = None
    error: str | None = None
    """The error's first characters (the node page has all of it)."""
    attention: str | None = None
    """Why the node needs an operator: ``error`` or ``budget``."""
    waiting: str | None = None
    """What the node waits for (``timer``, ``event:<name>``, ``approval``)."""


class RunLive(BaseModel):
    """A run's live view (``GET /ui/runs/{id}/live``)."""

    workflow_id: str
    run_id: str
    definition: str = ""
    version: str = ""
    status: str
    ended: bool
    error: str | None = None
    paused: bool = False
    nodes: dict[str, NodeLive] = Field(default_factory=dict)
    usage: RunUsage = Field(default_factory=RunUsage)
    budget: BudgetReport | None = None
    web_ui: str
    answered: bool = True
    """False when no worker answered for the open run (statuses are then unknown)."""
    updated_at: str


class NodeDetail(BaseModel):
    """A node's page: what went in, what came out."""

    workflow_id: str
    node: str
    type: str = ""
    status: str = "pending"
    attempts: int = 0
    input: Any = None
    """The config the node's activity got (expressions evaluated; each unit's for a foreach
    or a rerun), or for a node the workflow runs itself, its config as written."""
    output: Any = None
    error: str | None = None
    usage: dict[str, Any] | None = None


class RunGraph(BaseModel):
    """A run's plan as the page draws it."""

    name: str = ""
    version: str = ""
    nodes: list[dict[str, Any]] = Field(default_factory=list)
    configs: dict[str, Any] = Field(default_factory=dict)


_plans: OrderedDict[tuple[str, str], RunGraph] = OrderedDict()


async def run_graph(client: TideflowClient, workflow_id: str, run_id: str) -> RunGraph:
    """The plan the run started with (read from its history once, then kept)."""
    key = (workflow_id, run_id)
    if key in _plans:
        _plans.move_to_end(key)
        return _plans[key]
    handle = client.temporal.get_workflow_handle(workflow_id, run_id=run_id)
    graph = RunGraph()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [started] = await client.temporal.data_converter.decode(payloads, [RunInput])
            graph = _graph_of(started)
        break
    _plans[key] = graph
    while len(_plans) > _PLANS:
        _plans.popitem(last=False)
    return graph


def _graph_of(started: RunInput) -> RunGraph:
    if started.plan is not None:
        plan = started.plan
        nodes = [
            {
                "id": str(n["id"]),
                "type": str(n.get("type", "")),
                "name": n.get("name"),
                "depends_on": [str(d) for d in n.get("depends_on") or []],
                "handler": bool(n.get("handler")),
            }
            for n in plan.get("nodes") or []
        ]
        configs = {str(n["id"]): n.get("config") for n in plan.get("nodes") or []}
        return RunGraph(
            name=str(plan.get("name") or ""),
            version=str(plan.get("version") or ""),
            nodes=nodes,
            configs=configs,
        )
    if started.definition is not None:
        definition = Definition.model_validate(started.definition)
        handlers = definition.handler_ids()
        return RunGraph(
            name=definition.display_name or "",
            version=definition.display_version,
            nodes=[
                {
                    "id": n.id,
                    "type": n.type,
                    "name": n.name,
                    "depends_on": list(n.depends_on),
                    "handler": n.id in handlers,
                }
                for n in definition.graph()
            ],
            configs={n.id: n.config for n in definition.graph()},
        )
    return RunGraph()


def graph_nodes(graph: RunGraph) -> list[GraphNode]:
    """The plan's nodes for :func:`starter.run_graph.layout`."""
    return [
        GraphNode(
            id=n["id"],
            type=n["type"],
            name=n.get("name"),
            depends_on=tuple(n["depends_on"]),
            handler=n["handler"],
        )
        for n in graph.nodes
    ]


async def run_live(client: TideflowClient, workflow_id: str) -> tuple[RunLive, RunGraph]:
    """The run's live view and its graph (raises Temporal's NOT_FOUND for an unknown run)."""
    run = client.get_run(workflow_id)
    description = await run.describe()
    run_id = description.run_id
    graph_task = asyncio.ensure_future(run_graph(client, workflow_id, run_id))
    ended = description.status != WorkflowExecutionStatus.RUNNING
    state: RunState | None = None
    report: RunReport | None = None
    answered = True
    if ended:
        report = await run.report()
    else:
        timeout = timedelta(seconds=QUERY_SECONDS)
        try:
            state, report = await asyncio.gather(
                run.temporal.query(TideflowWorkflow.state, rpc_timeout=timeout),
                run.temporal.query(TideflowWorkflow.report, rpc_timeout=timeout),
            )
        except Exception:  # no worker answers for it now: what Temporal itself knows
            answered = False
    graph = await graph_task
    now = datetime.now(UTC)
    live = RunLive(
        workflow_id=workflow_id,
        run_id=run_id,
        definition=graph.name,
        version=graph.version,
        status=(state.status if state else report.status if report else "")
        or status_word(description.status),
        ended=ended,
        web_ui=web_ui_url(workflow_id, run_id, client.namespace),
        answered=answered,
        updated_at=_iso(now),
    )
    if report is not None:
        live.error = report.error
        live.usage = report.usage
        live.budget = report.budget
        for node_id, node in report.nodes.items():
            usage = node.usage or {}
            tokens = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
            cost = usage.get("cost_usd")
            live.nodes[node_id] = NodeLive(
                status=node.status,
                attempts=node.attempts,
                started_at=node.started_at,
                ended_at=node.ended_at,
                duration_seconds=_duration(node.started_at, node.ended_at, now),
                tokens=tokens,
                cost_usd=float(cost) if cost is not None else None,
                error=_short(node.error),
            )
    if state is not None:
        live.paused = state.paused
        live.budget = state.budget or live.budget
        live.error = state.error or live.error
        for node_id, status in state.nodes.items():
            entry = live.nodes.setdefault(node_id, NodeLive())
            entry.status = status
            entry.attempts = max(entry.attempts, state.attempts.get(node_id, 0))
            entry.attention = state.attention.get(node_id)
        for label, waiting in state.waiting.items():
            match = _UNIT.match(label)
            if match and match["node"] in live.nodes:
                live.nodes[match["node"]].waiting = waiting
    return live, graph


async def node_detail(client: TideflowClient, workflow_id: str, node: str) -> NodeDetail | None:
    """A node's input, output and error (None if the run has no such node)."""
    live, graph = await run_live(client, workflow_id)
    planned = next((n for n in graph.nodes if n["id"] == node), None)
    if planned is None and node not in live.nodes:
        return None
    run = client.get_run(workflow_id)
    report = await _report(run, live.ended)
    reported = report.nodes.get(node) if report is not None else None
    detail = NodeDetail(
        workflow_id=workflow_id,
        node=node,
        type=planned["type"] if planned else "",
        status=live.nodes[node].status if node in live.nodes else "pending",
        attempts=live.nodes[node].attempts if node in live.nodes else 0,
        output=reported.output if reported else None,
        error=reported.error if reported else None,
        usage=reported.usage if reported else None,
    )
    inputs = await _activity_inputs(client, workflow_id, live.run_id, node)
    if inputs:
        detail.input = next(iter(inputs.values())) if len(inputs) == 1 else inputs
    else:
        detail.input = graph.configs.get(node)
    return detail


async def _report(run: Any, ended: bool) -> RunReport | None:
    try:
        if ended:
            report: RunReport = await run.report()
            return report
        answer: RunReport = await run.temporal.query(
            TideflowWorkflow.report, rpc_timeout=timedelta(seconds=QUERY_SECONDS)
        )
        return answer
    except Exception:  # no worker answers for it now
        return None


async def _activity_inputs(
    client: TideflowClient, workflow_id: str, run_id: str, node: str
) -> dict[str, Any]:
    """Unit label → the config its activity was scheduled with (the latest of each)."""
    handle = client.temporal.get_workflow_handle(workflow_id, run_id=run_id)
    found: dict[str, Any] = {}
    converter = client.temporal.data_converter
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attributes = event.activity_task_scheduled_event_attributes
        match = _UNIT.match(attributes.activity_id)
        if match is None or match["node"] != node:
            continue
        [scheduled] = await converter.decode(attributes.input.payloads, [NodeInput])
        found[attributes.activity_id] = scheduled.config
    return found


def _duration(started: str | None, ended: str | None, now: datetime) -> float | None:
    if not started:
        return None
    begin = _parse(started)
    end = _parse(ended) if ended else now
    return round(max((end - begin).total_seconds(), 0.0), 3)


def _parse(moment: str) -> datetime:
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _short(text: str | None) -> str | None:
    if not text:
        return text
    line = " ".join(text.split())
    return line if len(line) <= _ERROR_CHARS else line[: _ERROR_CHARS - 1] + "…"
