"""``/ui/runs``: the run pages (a list of runs, a run's live graph, a node's input, output and
error) and the JSON they read, ``/ui/runs/{id}/live`` and ``/runs/{id}/nodes/{node}``; their
stylesheet and script are served from this package under ``/ui/assets``."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse

from starter.api.errors import ERROR_RESPONSES, ApiError, field_error
from starter.api.routers.runs import RUN_STATUSES
from starter.api.runtime import ClientParam
from starter.run_graph import layout
from starter.run_page import MAX_DRAWN_NODES, render_node, render_run, render_runs
from starter.run_view import NodeDetail, RunLive, graph_nodes, node_detail, run_live

router = APIRouter(tags=["runs"], responses=ERROR_RESPONSES)
pages = APIRouter(include_in_schema=False)

_ASSETS = {
    "run.css": "text/css",
    "run.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


def _assets_folder() -> Path:
    return Path(str(files("starter") / "ui_assets"))


@pages.get("/ui/assets/{name}")
async def asset(name: str) -> FileResponse:
    """The run pages' stylesheet, script and icon."""
    if name not in _ASSETS:
        raise ApiError(404, f"no asset {name!r}")
    return FileResponse(_assets_folder() / name, media_type=_ASSETS[name])


@pages.get("/ui", response_class=HTMLResponse)
@pages.get("/ui/runs", response_class=HTMLResponse)
async def runs_page(
    client: ClientParam,
    definition: Annotated[str | None, Query(pattern=r"^[a-z0-9-]+$", max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> HTMLResponse:
    """Recent runs, newest first, each linking to its run page."""
    if status is not None and status not in RUN_STATUSES:
        raise field_error("status", f"one of {', '.join(RUN_STATUSES)}")
    runs = await client.list_runs(definition=definition, status=status, limit=limit)
    return HTMLResponse(render_runs(runs, definition, status))


@pages.get("/ui/runs/{workflow_id}", response_class=HTMLResponse)
async def run_page(workflow_id: str, client: ClientParam) -> HTMLResponse:
    """A run's graph, each node coloured by its live status, and its nodes' table."""
    live, graph = await run_live(client, workflow_id)
    drawing = layout(graph_nodes(graph)) if 0 < len(graph.nodes) <= MAX_DRAWN_NODES else None
    return HTMLResponse(render_run(live, graph, drawing))


@pages.get("/ui/runs/{workflow_id}/nodes/{node}", response_class=HTMLResponse)
async def node_page(workflow_id: str, node: str, client: ClientParam) -> HTMLResponse:
    """A node's input, output and error."""
    detail = await node_detail(client, workflow_id, node)
    if detail is None:
        raise ApiError(404, f"run {workflow_id} has no node {node!r}")
    return HTMLResponse(render_node(detail))


@router.get("/ui/runs/{workflow_id}/live", response_model=RunLive)
async def live(workflow_id: str, client: ClientParam) -> RunLive:
    """What the run page shows, now: the run's status and each node's status, attempts,
    times, tokens and cost, and the spend against the budget (``answered`` is false while no
    worker answers for an open run)."""
    found, _ = await run_live(client, workflow_id)
    return found


@router.get("/runs/{workflow_id}/nodes/{node}", response_model=NodeDetail)
async def node(workflow_id: str, node: str, client: ClientParam) -> NodeDetail:
    """A node's status, the input its activity got (expressions evaluated), its output and
    its error."""
    detail = await node_detail(client, workflow_id, node)
    if detail is None:
        raise ApiError(404, f"run {workflow_id} has no node {node!r}")
    return detail
