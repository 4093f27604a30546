"""Deploying, rolling back and undeploying definitions: each validated first, a deploy's tests
run before anything is recorded, and the registry's triggers put into effect afterwards.

A deploy of several files is all or nothing: every file must validate and every test file
beside them must pass, or nothing is recorded. After any change the registry's schedules are
synced with Temporal (``tideflow-deployed.<slug>-<n>``) when a schedule trigger is concerned;
watched folders and event triggers of deployed definitions follow through the trigger loop
(``tideflow triggers --registry``, ``tideflow api --registry``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from interpreter import Definition, DefinitionError, Problem
from interpreter.model import ScheduleTrigger
from starter.client import TideflowClient, load
from starter.lifecycle_audit import record_lifecycle_action
from starter.registry.catalog import registry_catalog
from starter.registry.records import Registry, Version
from starter.testing import TestReport, load_all, run_test_files, test_file_for
from starter.triggers.schedules import ScheduleChange, sync_schedules

ClientGetter = Callable[[], Awaitable[TideflowClient]]
"""How a lifecycle action reaches Temporal to sync schedules (raises when it cannot)."""


class DeployRefused(Exception):
    """A deploy whose tests failed: nothing was recorded."""

    def __init__(self, message: str, report: TestReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class TriggerSync:
    """What putting the registry's schedules into effect did (or why it could not)."""

    changes: list[ScheduleChange] = field(default_factory=list)
    error: str | None = None
    needed: bool = False


@dataclass
class Deployed:
    """One file of a deploy: the version recorded (or the unchanged active one)."""

    file: Path
    version: Version
    new: bool


@dataclass
class DeployOutcome:
    """What a deploy did."""

    deployed: list[Deployed]
    tests: TestReport | None
    """None when no file had a test file beside it."""
    untested: list[Path]
    triggers: TriggerSync


def _load_all(paths: Sequence[Path]) -> list[Definition]:
    """Every definition, or DefinitionError with the problems of all of them (and of two files
    naming the same definition)."""
    definitions: list[Definition] = []
    problems: list[Problem] = []
    owners: dict[str, Path] = {}
    for path in paths:
        try:
            definition = load(path)
        except DefinitionError as e:
            problems.extend(e.problems)
            continue
        owner = owners.setdefault(definition.slug, path)
        if owner != path:
            problems.append(
                Problem(
                    str(path), 1, 1, f"{owner} deploys {definition.slug!r} too: one file a name"
                )
            )
        definitions.append(definition)
    if problems:
        raise DefinitionError(problems)
    return definitions


async def deploy(
    paths: Sequence[str | Path],
    *,
    registry: Registry,
    by: str,
    message: str = "",
    client: ClientGetter | None = None,
) -> DeployOutcome:
    """Validate ``paths``, run their tests, record each as a new version and put the
    registry's triggers into effect.

    Raises DefinitionError (every problem of every file), TestFileError (a test file with
    problems) or :class:`DeployRefused` (a case failed) before anything is recorded."""
    files = [Path(p) for p in paths]
    definitions = _load_all(files)
    tested = [(f, t) for f in files if (t := test_file_for(f)) is not None]
    report: TestReport | None = None
    if tested:
        loaded = [
            test_file for file, test in tested for test_file in load_all([test], definition=file)
        ]
        report = await run_test_files(loaded)
        if report.failed:
            names = ", ".join(sorted({Path(c.file).name for c in report.cases if not c.passed}))
            raise DeployRefused(
                f"the tests failed ({report.summary()} in {names}): nothing was deployed", report
            )
    deployed = []
    for file, definition in zip(files, definitions, strict=True):
        content = file.read_text(encoding="utf-8")
        version, new = registry.record(
            definition, content, file=str(file.resolve()), by=by, message=message
        )
        deployed.append(Deployed(file, version, new))
        if new:
            record_lifecycle_action(
                "deploy",
                version.name,
                by=by,
                details={"version": version.version, "hash": version.content_hash},
            )
    schedules = any(_has_schedules(d) for d in definitions)
    triggers = await put_triggers_into_effect(registry, client, needed=schedules)
    untested = [f for f in files if f not in {file for file, _ in tested}]
    return DeployOutcome(deployed, report, untested, triggers)


async def rollback(
    name: str,
    version: int,
    *,
    registry: Registry,
    by: str,
    message: str = "",
    client: ClientGetter | None = None,
) -> tuple[Version, TriggerSync]:
    """Make ``version`` of ``name`` active again (RegistryError for an unknown one)."""
    before = registry.version(name) if _is_active(registry, name) else None
    target = registry.rollback(name, version, by=by, message=message)
    record_lifecycle_action(
        "rollback",
        name,
        by=by,
        details={"version": version, "from": before.version if before else None},
    )
    needed = _has_schedules(target.definition()) or (
        before is not None and _has_schedules(before.definition())
    )
    return target, await put_triggers_into_effect(registry, client, needed=needed)


async def undeploy(
    name: str,
    *,
    registry: Registry,
    by: str,
    message: str = "",
    client: ClientGetter | None = None,
) -> tuple[Version, TriggerSync]:
    """Deactivate ``name``; its schedules are deleted (RegistryError when it is not active)."""
    was = registry.undeploy(name, by=by, message=message)
    record_lifecycle_action("undeploy", name, by=by, details={"version": was.version})
    needed = _has_schedules(was.definition())
    return was, await put_triggers_into_effect(registry, client, needed=needed)


def _is_active(registry: Registry, name: str) -> bool:
    return any(n == name for n, _ in registry.active_signature())


def _has_schedules(definition: Definition) -> bool:
    return any(isinstance(t, ScheduleTrigger) for t in definition.triggers)


async def put_triggers_into_effect(
    registry: Registry, client: ClientGetter | None, *, needed: bool
) -> TriggerSync:
    """Sync the registry's schedules with Temporal when a schedule trigger is concerned."""
    sync = TriggerSync(needed=needed)
    if not needed:
        return sync
    if client is None:
        sync.error = "no Temporal client"
        return sync
    try:
        connected = await client()
        sync.changes = await sync_schedules(connected, registry_catalog(registry))
    except Exception as e:  # deployed all the same: the trigger loop syncs them later
        sync.error = str(getattr(e, "message", None) or e) or type(e).__name__
    return sync
