"""``tideflow schema``: the JSON Schema of the language, for editors (YAML language servers).

The definition's own schema, with each node's ``config`` tied to its ``type``: an editor then
completes and checks config keys per node type, aliases included.
"""

from __future__ import annotations

from typing import Any

from interpreter.model import Definition
from interpreter.node_types import WORKFLOW_TYPE_CONFIGS
from interpreter.validate import NodeCatalog


def json_schema(catalog: NodeCatalog | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a definition file."""
    schema = Definition.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Tideflow workflow definition"
    defs = schema.setdefault("$defs", {})
    types: dict[str, Any] = {name: model for name, model in WORKFLOW_TYPE_CONFIGS.items()}
    if catalog is not None:
        for name in catalog.names():
            model = catalog.config_model(name)
            if model is not None:
                types[name] = model
    rules = []
    for name, model in sorted(types.items()):
        config_schema = model.model_json_schema(by_alias=True, mode="validation")
        nested = config_schema.pop("$defs", {})
        defs.update(nested)
        ref = f"Config_{name.replace('.', '_')}"
        defs[ref] = config_schema
        rules.append(
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": {
                    "properties": {
                        "config": {"$ref": f"#/$defs/{ref}"},
                        "with": {"$ref": f"#/$defs/{ref}"},
                    }
                },
            }
        )
    node = defs.get("Node")
    if node is not None:
        node["allOf"] = rules
        node["properties"]["type"]["examples"] = sorted(types)
    return schema
