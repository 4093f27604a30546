"""``tideflow schema``: the JSON Schema of the language, for editors (YAML language servers).

The definition's own schema, with each node's ``config`` tied to its ``type``: an editor then
completes and checks config keys per node type, aliases included. It accepts what the loader
accepts: every alias of a key (``with``, ``inputs``, ``retry_policy``, ``id``, edges' ``source`` and
``target``), and config fields that default to an expression are optional.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import AliasChoices, BaseModel

from interpreter.model import Definition
from interpreter.node_types import WORKFLOW_TYPE_CONFIGS
from interpreter.validate import DEFAULT_EXPRESSION, NodeCatalog


def json_schema(catalog: NodeCatalog | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a definition file."""
    schema = Definition.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Tideflow workflow definition"
    defs = schema.setdefault("$defs", {})
    _add_aliases(schema, Definition, defs)
    # `variables` is seed 002's list of {name, type, default}, or a mapping read as `vars`.
    listed = schema["properties"]["variables"]
    schema["properties"]["variables"] = {"anyOf": [listed, schema["properties"]["vars"]]}
    types: dict[str, type[BaseModel]] = dict(WORKFLOW_TYPE_CONFIGS)
    if catalog is not None:
        for name in catalog.names():
            model = catalog.config_model(name)
            if model is not None:
                types[name] = model
    rules = []
    for name, model in sorted(types.items()):
        config_schema = model.model_json_schema(by_alias=True, mode="validation")
        defs.update(config_schema.pop("$defs", {}))
        _add_aliases(config_schema, model, defs)
        defaulted = {
            field.alias or key
            for key, field in model.model_fields.items()
            if isinstance(field.json_schema_extra, dict)
            and DEFAULT_EXPRESSION in field.json_schema_extra
        }
        if "required" in config_schema:
            config_schema["required"] = [r for r in config_schema["required"] if r not in defaulted]
        ref = f"Config_{name.replace('.', '_')}"
        defs[ref] = config_schema
        rules.append(
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": {
                    "properties": {
                        "config": {"$ref": f"#/$defs/{ref}"},
                        "with": {"$ref": f"#/$defs/{ref}"},
                        "inputs": {"$ref": f"#/$defs/{ref}"},
                    }
                },
            }
        )
    node = defs.get("Node")
    if node is not None:
        node["allOf"] = rules
        node["properties"]["type"]["examples"] = sorted(types)
    return schema


def _add_aliases(schema: dict[str, Any], model: type[BaseModel], defs: dict[str, Any]) -> None:
    """Give every alias of a field the field's schema, in ``model``'s schema and its nested
    models' (found in ``defs`` by class name)."""
    seen: set[type[BaseModel]] = set()

    def visit(target: dict[str, Any], cls: type[BaseModel]) -> None:
        if cls in seen:
            return
        seen.add(cls)
        properties = target.get("properties", {})
        required = list(target.get("required", []))
        alternatives = []
        for field in cls.model_fields.values():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names = [str(c) for c in alias.choices]
                shown = next((n for n in names if n in properties), None)
                if shown is None:
                    continue
                for other in names:
                    properties.setdefault(other, properties[shown])
                if shown in required:
                    required.remove(shown)
                    alternatives.append({"anyOf": [{"required": [n]} for n in names]})
            for nested in _nested_models(field.annotation):
                if nested.__name__ in defs:
                    visit(defs[nested.__name__], nested)
        if "required" in target:
            target["required"] = required
        if alternatives:
            target.setdefault("allOf", []).extend(alternatives)

    visit(schema, model)


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            found.append(current)
            continue
        stack.extend(typing.get_args(current))
    return found
