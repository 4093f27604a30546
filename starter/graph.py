"""``tideflow graph``: a definition as a Mermaid flowchart."""

from __future__ import annotations

from interpreter import Definition
from interpreter.model import Fallback


def mermaid(definition: Definition) -> str:
    """Mermaid ``flowchart TD`` source: nodes with their types, dependencies as arrows,
    conditions as edge labels, handlers dashed."""
    handlers = definition.handler_ids()
    lines = ["flowchart TD"]
    graph = definition.graph()
    for node in graph:
        label = f"{node.id}<br/><small>{node.type}</small>"
        shape = (
            f'{_ref(node.id)}(["{label}"])'
            if node.id in handlers
            else f'{_ref(node.id)}["{label}"]'
        )
        lines.append(f"  {shape}")
    for node in graph:
        condition = f"|{_escape(str(node.when))}|" if isinstance(node.when, str) else ""
        for dep in node.depends_on:
            lines.append(f"  {_ref(dep)} -->{condition} {_ref(node.id)}")
        if isinstance(node.on_error, Fallback):
            lines.append(f"  {_ref(node.id)} -. on error .-> {_ref(node.on_error.fallback)}")
        if node.compensate:
            lines.append(f"  {_ref(node.id)} -. compensate .-> {_ref(node.compensate)}")
    for handler in definition.error_handling.on_failure:
        lines.append(f"  run_failed((run failed)) -.-> {_ref(handler)}")
    return "\n".join(lines)


def _ref(node_id: str) -> str:
    return "n_" + node_id.replace("-", "_")


def _escape(text: str) -> str:
    text = text.replace("${{", "").replace("}}", "").strip()
    return text.replace('"', "'").replace("|", "/")
