"""``/registry``: the deployed definitions, their versions and change history (with diffs), and
starting a run of a deployed version (it keeps that version while later ones are deployed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from interpreter import DefinitionError
from starter.api import starting
from starter.api.errors import ERROR_RESPONSES, ApiError, definition_error
from starter.api.models import RunStarted, StartRequest
from starter.api.runtime import ClientParam, RuntimeParam
from starter.registry import Registry, RegistryCatalog, RegistryError, Version, unified_diff

router = APIRouter(tags=["registry"], responses=ERROR_RESPONSES)

_MAX_VERSION = 2**31 - 1
"""Version numbers are stored as 32-bit integers."""


def _registry(request: Request) -> Registry:
    catalog = request.app.state.tideflow.catalog
    if isinstance(catalog, RegistryCatalog):
        return catalog.registry
    found = getattr(request.app.state, "tideflow_registry", None)
    if found is None:
        found = request.app.state.tideflow_registry = Registry.open()
    return found


RegistryParam = Annotated[Registry, Depends(_registry)]


class VersionOut(BaseModel):
    """One recorded version of a definition."""

    name: str
    version: int
    definition_name: str
    definition_version: str
    content_hash: str = Field(description="sha256 of the definition's source text")
    deployed_by: str
    deployed_at: str
    message: str

    @classmethod
    def of(cls, version: Version) -> VersionOut:
        """From the registry's record."""
        return cls(
            name=version.name,
            version=version.version,
            definition_name=version.display_name,
            definition_version=version.display_version,
            content_hash=version.content_hash,
            deployed_by=version.deployed_by,
            deployed_at=version.deployed_at,
            message=version.message,
        )


class VersionDetail(VersionOut):
    """A version with its source text."""

    content: str


class DeployedOut(BaseModel):
    """A definition of the registry."""

    name: str
    active: VersionOut | None = Field(description="null once undeployed")
    latest_version: int


class DefinitionVersions(DeployedOut):
    """A definition with every version it had."""

    versions: list[VersionOut]


class ChangeOut(BaseModel):
    """One change of a definition: a deploy (with the diff from the version before), a
    rollback or an undeploy."""

    action: str
    version: int | None
    previous_version: int | None
    by: str
    at: str
    message: str
    diff: str | None = None


class RegistryRunRequest(StartRequest):
    """Start a run of a deployed definition."""

    version: int | None = Field(
        default=None, ge=1, le=_MAX_VERSION, description="default: the active version"
    )


def _lookup(registry: Registry, name: str, version: int | None = None) -> Version:
    try:
        return registry.version(name, version)
    except RegistryError as e:
        raise ApiError(404, str(e)) from None


@router.get("/registry", response_model=list[DeployedOut])
async def list_deployed(registry: RegistryParam) -> list[DeployedOut]:
    """Every definition ever deployed, with its active version."""
    return [
        DeployedOut(
            name=d.name,
            active=VersionOut.of(d.active) if d.active else None,
            latest_version=d.latest,
        )
        for d in registry.definitions()
    ]


@router.get("/registry/{name}", response_model=DefinitionVersions)
async def deployed(name: str, registry: RegistryParam) -> DefinitionVersions:
    """A definition's versions, oldest first, and which one is active."""
    versions = registry.versions(name)
    if not versions:
        raise ApiError(404, f"no definition {name!r} in the registry")
    active = next((d.active for d in registry.definitions() if d.name == name), None)
    return DefinitionVersions(
        name=name,
        active=VersionOut.of(active) if active else None,
        latest_version=versions[-1].version,
        versions=[VersionOut.of(v) for v in versions],
    )


@router.get("/registry/{name}/versions/{version}", response_model=VersionDetail)
async def version_detail(
    name: str, version: Annotated[int, Path(ge=1, le=_MAX_VERSION)], registry: RegistryParam
) -> VersionDetail:
    """One version, with its source text."""
    found = _lookup(registry, name, version)
    return VersionDetail(**VersionOut.of(found).model_dump(), content=found.content)


@router.get("/registry/{name}/history", response_model=list[ChangeOut])
async def history(name: str, registry: RegistryParam) -> list[ChangeOut]:
    """The change history, oldest first; each deploy with the unified diff from the version
    before it."""
    try:
        changes = registry.changes(name)
    except RegistryError as e:
        raise ApiError(404, str(e)) from None
    versions = {v.version: v for v in registry.versions(name)}
    out = []
    for change in changes:
        diff: str | None = None
        if change.action == "deploy" and change.version in versions:
            diff = unified_diff(versions.get(change.version - 1), versions[change.version])
        out.append(
            ChangeOut(
                action=change.action,
                version=change.version,
                previous_version=change.previous_version,
                by=change.by,
                at=change.at,
                message=change.message,
                diff=diff,
            )
        )
    return out


@router.post(
    "/registry/{name}/runs",
    status_code=201,
    response_model=RunStarted,
    responses=starting.EARLIER_RUN,
)
async def start_deployed(
    name: str,
    body: RegistryRunRequest,
    registry: RegistryParam,
    runtime: RuntimeParam,
    client: ClientParam,
    response: Response,
) -> RunStarted:
    """Start a run of a deployed definition (its active version, or ``version``)."""
    found = _lookup(registry, name, body.version)
    try:
        definition = found.definition()
    except DefinitionError as e:
        raise definition_error(e) from None
    memo: dict[str, Any] = found.memo()
    run = await client.start(
        definition,
        body.inputs,
        workflow_id=body.workflow_id,
        task_queue=runtime.settings.task_queue,
        memo=memo,
    )
    return starting.run_started(run.id, run.run_id, definition.slug)
