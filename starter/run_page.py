"""The run pages of ``tideflow api`` as HTML: the list of runs, a run's live graph (SVG from
:mod:`starter.run_graph`) with a table of its nodes, and a node's input, output and error.

Plain server-rendered HTML: the page is complete without its script, which only refreshes the
statuses and figures from ``/ui/runs/{id}/live`` while the run runs. No build step and no CDN:
the stylesheet and script are files of this package (``starter/ui_assets``), served by the API.
Everything that comes from a run or a definition is escaped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from starter.run_graph import Box, Layout
from starter.run_view import NodeDetail, NodeLive, RunGraph, RunLive

ASSETS = "/ui/assets"
MAX_DRAWN_NODES = 400
"""Larger graphs get the node table only (an SVG of thousands of boxes helps nobody)."""
_LABEL_CHARS = 28


def _q(text: str) -> str:
    return quote(text, safe="")


def _head(title: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title>"
        f"<link rel='stylesheet' href='{ASSETS}/run.css'>"
        f"<link rel='icon' href='{ASSETS}/favicon.svg' type='image/svg+xml'></head>"
    )


def _status(status: str, element_id: str | None = None) -> str:
    ident = f" id='{element_id}'" if element_id else ""
    return f"<span class='badge status-{escape(status)}'{ident}>{escape(status)}</span>"


def seconds_text(value: float | None) -> str:
    """``850ms``, ``12.4s``, ``3m05s``."""
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _figures(node: NodeLive) -> str:
    parts = []
    if node.duration_seconds is not None:
        parts.append(seconds_text(node.duration_seconds))
    if node.tokens:
        parts.append(f"{node.tokens:,} tok")
    if node.cost_usd:
        parts.append(f"${node.cost_usd:.4f}")
    return " · ".join(parts)


def _state_line(node: NodeLive) -> str:
    line = node.status.replace("_", " ")
    if node.attention == "budget":
        line += " (budget)"
    elif node.waiting:
        line += f" ({node.waiting})"
    if node.attempts > 1:
        line += f" · attempt {node.attempts}"
    return line


def _label(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def _spend(live: RunLive) -> str:
    parts = []
    if live.usage.ai_tokens:
        cost = f" · ${live.usage.cost_usd:.4f}" if live.usage.cost_usd is not None else ""
        parts.append(f"AI: {live.usage.ai_tokens:,} tokens{cost}")
    budget = live.budget
    if budget is not None:
        limits = []
        if budget.cost_usd is not None:
            limits.append(f"${budget.spent_usd:.4f} of ${budget.cost_usd:.4f}")
        if budget.tokens is not None:
            limits.append(f"{budget.spent_tokens:,} of {budget.tokens:,} tokens")
        over = (budget.cost_usd is not None and budget.spent_usd > budget.cost_usd) or (
            budget.tokens is not None and budget.spent_tokens > budget.tokens
        )
        text = "budget: " + (", ".join(limits) or f"${budget.spent_usd:.4f} spent")
        parts.append(f"<span class='{'over' if over else ''}'>{escape(text)}</span>")
    return " · ".join(p if p.startswith("<span") else escape(p) for p in parts)


def render_run(live: RunLive, graph: RunGraph, drawing: Layout | None) -> str:
    """The run page."""
    wid = live.workflow_id
    title = f"{graph.name or live.definition} {graph.version}".strip() or wid
    body = [
        _head(f"{title} · {wid}"),
        f"<body data-live='/ui/runs/{escape(_q(wid))}/live' "
        f"data-ended='{str(live.ended).lower()}' data-polls='0'>",
        "<header>",
        "<nav><a href='/ui/runs'>Runs</a></nav>",
        f"<h1>{escape(title)} {_status(live.status, 'run-status')}</h1>",
        "<p class='meta'>",
        f"<span class='id'>{escape(wid)}</span> · run {escape(live.run_id)} · "
        f"<a id='web-ui' href='{escape(live.web_ui)}'>Temporal Web UI</a> · "
        f"<span id='updated'>as of {escape(live.updated_at[:19].replace('T', ' '))} UTC</span>",
        "</p>",
        f"<p class='spend' id='spend'>{_spend(live)}</p>",
        f"<p class='error' id='run-error'>{escape(live.error or '')}</p>",
    ]
    if not live.answered:
        body.append(
            "<p class='warning'>No worker answers for this run now: node statuses are unknown "
            "until one polls its task queue.</p>"
        )
    body.append("</header><main>")
    if drawing is not None:
        body.append(_svg(live, drawing))
    elif graph.nodes:
        body.append(
            f"<p class='note'>{len(graph.nodes):,} nodes: too many to draw; the table lists "
            "them.</p>"
        )
    body.append(_table(live, graph))
    body.append(
        f"</main><script src='{ASSETS}/run.js'></script>"
        "<noscript><p class='note'>Reload to see new statuses.</p></noscript></body></html>"
    )
    return "".join(body)


def _svg(live: RunLive, drawing: Layout) -> str:
    out = [
        f"<svg id='graph' xmlns='http://www.w3.org/2000/svg' width='{drawing.width:.0f}' "
        f"height='{drawing.height:.0f}' viewBox='0 0 {drawing.width:.0f} {drawing.height:.0f}' "
        "role='img' aria-label='the run graph'>",
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z'/></marker>"
        "</defs><g class='edges'>",
    ]
    for edge in drawing.edges:
        out.append(
            f"<path class='edge' d='{edge.path}' data-from='{escape(edge.source)}' "
            f"data-to='{escape(edge.target)}' marker-end='url(#arrow)'/>"
        )
    out.append("</g><g class='nodes'>")
    for box in drawing.boxes.values():
        out.append(_node_box(live, box))
    out.append("</g></svg>")
    return "".join(out)


def _node_box(live: RunLive, box: Box) -> str:
    node = box.node
    state = live.nodes.get(node.id, NodeLive())
    kind = f"{node.type} — {node.name}" if node.name else node.type
    handler = " handler" if node.handler else ""
    href = f"/ui/runs/{_q(live.workflow_id)}/nodes/{_q(node.id)}"
    return (
        f"<g class='node status-{escape(state.status)}{handler}' data-node='{escape(node.id)}' "
        f"data-status='{escape(state.status)}' transform='translate({box.x:.1f},{box.y:.1f})'>"
        f"<a href='{escape(href)}'><title>{escape(node.id)} ({escape(kind)})</title>"
        f"<rect width='{box.width:.0f}' height='{box.height:.0f}' rx='8'/>"
        f"<text class='node-id' x='10' y='19'>{escape(_label(node.id))}</text>"
        f"<text class='node-type' x='10' y='35'>{escape(_label(kind))}</text>"
        f"<text class='node-state' x='10' y='51'>{escape(_state_line(state))}</text>"
        f"<text class='node-figures' x='10' y='64'>{escape(_figures(state))}</text>"
        "</a></g>"
    )


def _table(live: RunLive, graph: RunGraph) -> str:
    rows = [
        "<table id='nodes'><thead><tr><th>node</th><th>type</th><th>status</th>"
        "<th>attempts</th><th>duration</th><th>tokens</th><th>cost</th><th>details</th>"
        "</tr></thead><tbody>"
    ]
    ids = [n["id"] for n in graph.nodes] + [i for i in live.nodes if i not in _ids(graph)]
    types = {n["id"]: n["type"] for n in graph.nodes}
    for node_id in ids:
        state = live.nodes.get(node_id, NodeLive())
        base = f"/ui/runs/{_q(live.workflow_id)}/nodes/{_q(node_id)}"
        links = " ".join(
            f"<a href='{escape(base)}#{part}'>{part}</a>" for part in ("input", "output", "error")
        )
        rows.append(
            f"<tr data-node='{escape(node_id)}' data-status='{escape(state.status)}'>"
            f"<td class='id'>{escape(node_id)}</td><td>{escape(types.get(node_id, ''))}</td>"
            f"<td class='state'>{_status(state.status)}"
            f"<span class='why'>{escape(_why(state))}</span></td>"
            f"<td class='attempts'>{state.attempts or ''}</td>"
            f"<td class='duration'>{seconds_text(state.duration_seconds)}</td>"
            f"<td class='tokens'>{state.tokens or ''}</td>"
            f"<td class='cost'>{f'${state.cost_usd:.4f}' if state.cost_usd else ''}</td>"
            f"<td>{links}<div class='node-error'>{escape(state.error or '')}</div></td></tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _ids(graph: RunGraph) -> set[str]:
    return {n["id"] for n in graph.nodes}


def _why(node: NodeLive) -> str:
    if node.attention == "budget":
        return " stopped by the budget"
    if node.waiting:
        return f" waiting for {node.waiting}"
    return ""


def render_node(detail: NodeDetail) -> str:
    """A node's page: status, input, output, error."""
    run_href = f"/ui/runs/{_q(detail.workflow_id)}"
    sections = []
    for part, value in (("input", detail.input), ("output", detail.output)):
        text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
        sections.append(f"<h2 id='{part}'>{part}</h2><pre>{escape(text)}</pre>")
    error = detail.error or ""
    sections.append(f"<h2 id='error'>error</h2><pre class='error'>{escape(error or 'none')}</pre>")
    if detail.usage:
        usage = json.dumps(detail.usage, indent=2, default=str)
        sections.append(f"<h2 id='usage'>usage</h2><pre>{escape(usage)}</pre>")
    return "".join(
        [
            _head(f"{detail.node} · {detail.workflow_id}"),
            "<body><header>",
            f"<nav><a href='/ui/runs'>Runs</a> / <a href='{escape(run_href)}'>"
            f"{escape(detail.workflow_id)}</a></nav>",
            f"<h1>{escape(detail.node)} {_status(detail.status)}</h1>",
            f"<p class='meta'>{escape(detail.type)} · attempts {detail.attempts}</p>",
            "</header><main class='detail'>",
            *sections,
            "</main></body></html>",
        ]
    )


def render_runs(runs: Sequence[Any], definition: str | None, status: str | None) -> str:
    """The list of recent runs."""
    rows = []
    for run in runs:
        href = f"/ui/runs/{_q(run.workflow_id)}"
        rows.append(
            f"<tr><td class='id'><a href='{escape(href)}'>{escape(run.workflow_id)}</a></td>"
            f"<td>{escape(run.definition)}</td><td>{escape(run.version)}</td>"
            f"<td>{_status(run.status)}</td>"
            f"<td>{escape(run.started_at[:19].replace('T', ' '))}</td></tr>"
        )
    filters = " · ".join(
        f"{name} {escape(value)}"
        for name, value in (("definition", definition), ("status", status))
        if value
    )
    empty = "<tr><td colspan='5'>no runs</td></tr>" if not rows else ""
    return "".join(
        [
            _head("Tideflow runs"),
            "<body><header><h1>Runs</h1>",
            f"<p class='meta'>{filters or 'most recent first'}</p></header><main>",
            "<table id='runs'><thead><tr><th>workflow id</th><th>definition</th>"
            "<th>version</th><th>status</th><th>started (UTC)</th></tr></thead><tbody>",
            *rows,
            empty,
            "</tbody></table></main></body></html>",
        ]
    )
