"""Run one node type's real activity (config validation, error mapping and all) without a
workflow, through temporalio's ActivityEnvironment."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities import WorkerResources, WorkerSettings, registry
from interpreter.node_io import NodeInput, NodeResult


async def run_node(
    node_type: str,
    config: dict[str, Any],
    *,
    settings: WorkerSettings | None = None,
    resources: WorkerResources | None = None,
    scope: dict[str, Any] | None = None,
    node_id: str = "node",
    cache_ttl_seconds: float | None = None,
    origin: str | None = None,
) -> NodeResult:
    """Run ``node_type`` with ``config`` as its activity would run on a worker.

    Raises the ``temporalio.exceptions.ApplicationError`` the worker would report.
    """
    found = registry.get(node_type)
    assert found is not None, f"node type {node_type} is not registered"
    owned = resources is None
    resources = resources or WorkerResources(settings or WorkerSettings())
    try:
        activity = next(
            a
            for a in registry.activities(resources)
            if a.__temporal_activity_definition.name == found.name  # type: ignore[attr-defined]
        )
        node_input = NodeInput(
            node_id=node_id,
            config=config,
            scope=scope,
            cache_ttl_seconds=cache_ttl_seconds,
            origin=origin,
        )
        environment = ActivityEnvironment()
        # The run a node belongs to comes from the activity's info, as on a worker.
        environment.info = replace(
            environment.info, workflow_id="test-wf", workflow_run_id="test-run"
        )
        result: NodeResult = await environment.run(activity, node_input)
        return result
    finally:
        if owned:
            await resources.aclose()
