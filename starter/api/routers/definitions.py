"""``/definitions``: the definition files of the folder, with their problems and graphs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from starter import client as tideflow
from starter._catalog import Entry
from starter.api.errors import ERROR_RESPONSES, ProblemOut
from starter.api.models import DefinitionDetail, DefinitionSummary
from starter.api.permissions import IdentityParam
from starter.api.runtime import RuntimeParam
from starter.graph import mermaid

router = APIRouter(tags=["definitions"])


def _summary(entry: Entry) -> dict[str, Any]:
    definition = entry.definition
    return {
        "slug": entry.slug,
        "name": definition.display_name if definition else None,
        "version": definition.display_version if definition else None,
        "description": definition.description if definition else None,
        "file": str(entry.file),
        "valid": entry.valid,
        "triggers": [t.model_dump(mode="json", exclude_none=True) for t in definition.triggers]
        if definition
        else [],
        "problems": [ProblemOut.of(p) for p in entry.problems],
        "trigger_problems": [
            ProblemOut.of(p)
            for index in sorted(entry.trigger_problems)
            for p in entry.trigger_problems[index]
        ],
    }


@router.get("/definitions", response_model=list[DefinitionSummary])
async def list_definitions(runtime: RuntimeParam, identity: IdentityParam) -> list[dict[str, Any]]:
    """Every definition file of the folder (that the caller may read); invalid ones with
    their located problems."""
    return [_summary(entry) for entry in runtime.catalog.entries() if identity.covers(entry.slug)]


@router.get("/definitions/{slug}", response_model=DefinitionDetail, responses=ERROR_RESPONSES)
async def get_definition(slug: str, runtime: RuntimeParam) -> dict[str, Any]:
    """A definition as JSON, with its graph in Mermaid."""
    entry = runtime.entry(slug)
    detail = _summary(entry)
    if entry.definition is not None and entry.valid:
        detail["definition"] = tideflow.definition_json(entry.definition)
        detail["mermaid"] = mermaid(entry.definition)
    return detail
