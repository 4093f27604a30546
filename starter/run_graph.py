"""A run's graph laid out for drawing: layers from left to right, computed in Python.

Each node goes in the layer after its deepest dependency (longest path from the roots); the
order within a layer follows the mean position of a node's neighbours in the next layer on
each side, a few sweeps back and forth (the barycenter heuristic of Sugiyama-style layouts),
which keeps most edges short and uncrossed. Handlers (fallbacks, compensations, on_failure)
have no place in the flow: they go in a row of their own below it. The result is plain
coordinates; :mod:`starter.run_page` draws them as SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

NODE_WIDTH = 210
NODE_HEIGHT = 70
LAYER_GAP = 70
ROW_GAP = 22
MARGIN = 20
HANDLER_GAP = 50
_SWEEPS = 4


@dataclass(frozen=True)
class GraphNode:
    """A node as the plan gives it."""

    id: str
    type: str
    name: str | None = None
    depends_on: tuple[str, ...] = ()
    handler: bool = False


@dataclass(frozen=True)
class Box:
    """Where a node is drawn (top-left corner)."""

    node: GraphNode
    x: float
    y: float
    layer: int
    width: float = NODE_WIDTH
    height: float = NODE_HEIGHT


@dataclass(frozen=True)
class Edge:
    """A dependency, drawn from ``source``'s right side to ``target``'s left side."""

    source: str
    target: str
    path: str
    """An SVG path (a cubic Bézier curve)."""


@dataclass
class Layout:
    """Every node's box and every edge's path, and the size of the drawing."""

    boxes: dict[str, Box] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    width: float = 0.0
    height: float = 0.0


def layout(nodes: Sequence[GraphNode]) -> Layout:
    """Lay out ``nodes`` (dependencies on unknown nodes are ignored)."""
    flow = [n for n in nodes if not n.handler]
    handlers = [n for n in nodes if n.handler]
    ids = {n.id for n in flow}
    deps = {n.id: [d for d in dict.fromkeys(n.depends_on) if d in ids and d != n.id] for n in flow}
    layers = _layers(flow, deps)
    rows = _order(flow, deps, layers)
    out = Layout()
    tallest = max((len(r) for r in rows), default=0)
    flow_height = tallest * NODE_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    for layer, row in enumerate(rows):
        height = len(row) * NODE_HEIGHT + max(len(row) - 1, 0) * ROW_GAP
        top = MARGIN + (flow_height - height) / 2  # each layer centred on the tallest
        for index, node in enumerate(row):
            out.boxes[node.id] = Box(
                node,
                x=MARGIN + layer * (NODE_WIDTH + LAYER_GAP),
                y=top + index * (NODE_HEIGHT + ROW_GAP),
                layer=layer,
            )
    below = MARGIN + flow_height + (HANDLER_GAP if flow and handlers else 0)
    for index, node in enumerate(handlers):
        out.boxes[node.id] = Box(
            node, x=MARGIN + index * (NODE_WIDTH + ROW_GAP), y=below, layer=len(rows)
        )
    for node in flow:
        for dep in deps[node.id]:
            out.edges.append(Edge(dep, node.id, _curve(out.boxes[dep], out.boxes[node.id])))
    right = [b.x + b.width for b in out.boxes.values()]
    bottom = [b.y + b.height for b in out.boxes.values()]
    out.width = max(right, default=0) + MARGIN
    out.height = max(bottom, default=0) + MARGIN
    return out


def _layers(flow: Sequence[GraphNode], deps: dict[str, list[str]]) -> dict[str, int]:
    """Longest path from a root, iteratively (a cycle, which validation forbids, is cut)."""
    layer: dict[str, int] = {}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for start in flow:
        if start.id in layer:
            continue
        stack = [(start.id, iter(deps[start.id]))]
        state[start.id] = 1
        while stack:
            current, children = stack[-1]
            child = next((d for d in children if state.get(d) != 1), None)
            if child is not None and child not in layer:
                state[child] = 1
                stack.append((child, iter(deps[child])))
                continue
            if child is not None:
                continue
            stack.pop()
            state[current] = 2
            layer[current] = 1 + max((layer.get(d, -1) for d in deps[current]), default=-1)
    return layer


def _order(
    flow: Sequence[GraphNode], deps: dict[str, list[str]], layers: dict[str, int]
) -> list[list[GraphNode]]:
    """Nodes per layer, ordered to keep edges short (barycenter sweeps)."""
    count = max(layers.values(), default=-1) + 1
    rows: list[list[GraphNode]] = [[] for _ in range(count)]
    for node in flow:  # written order first: a stable start
        rows[layers[node.id]].append(node)
    after: dict[str, list[str]] = {n.id: [] for n in flow}
    for node_id, sources in deps.items():
        for dep in sources:
            after[dep].append(node_id)
    for sweep in range(_SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, count) if downward else range(count - 2, -1, -1)
        for i in indices:
            neighbour_row = rows[i - 1] if downward else rows[i + 1]
            place = {n.id: p for p, n in enumerate(neighbour_row)}
            neighbours = deps if downward else after
            current = {n.id: p for p, n in enumerate(rows[i])}
            # Nodes without neighbours on that side keep their place relative to the others.
            keys = {n.id: _centre(neighbours[n.id], place, current[n.id]) for n in rows[i]}
            rows[i].sort(key=lambda n: keys[n.id])
    return rows


def _centre(linked_ids: list[str], place: dict[str, int], own: int) -> float:
    """The mean position of a node's neighbours in the next layer (its own without any)."""
    linked = [place[o] for o in linked_ids if o in place]
    return sum(linked) / len(linked) if linked else float(own)


def _curve(source: Box, target: Box) -> str:
    x1, y1 = source.x + source.width, source.y + source.height / 2
    x2, y2 = target.x, target.y + target.height / 2
    bend = max((x2 - x1) / 2, 30.0)
    return (
        f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
    )
