"""The registry's commands: ``deploy`` (validate, test, record a version, put its triggers into
effect), ``definitions``, ``history`` (changes with unified diffs), ``rollback``, ``undeploy``;
and what lets ``run``/``start`` take a deployed ``NAME`` or ``NAME@VERSION`` for a file."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starter.cli.arguments import Commands, load_definition, print_json
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Exit

if TYPE_CHECKING:
    from interpreter import Definition
    from starter.client import TideflowClient
    from starter.registry import Registry
    from starter.registry.lifecycle import TriggerSync

_DEPLOYED = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)(?:@(?P<version>\d+))?$")


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add(
        "deploy",
        _deploy,
        "validate definitions, run their tests (NAME.test.yaml) and record each as a new "
        "version in the registry, then put its triggers into effect; refused if a test fails",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--message", "-m", default="", help="why (kept in the history)")

    p = commands.add("definitions", _definitions, "list the registry's deployed definitions")
    p.add_argument("--json", action="store_true")

    p = commands.add(
        "history", _history, "a definition's changes, with a unified diff between versions"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-diff", action="store_true", help="changes only")

    p = commands.add("rollback", _rollback, "make an earlier version of a definition active")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION", type=int)
    p.add_argument("--message", "-m", default="", help="why (kept in the history)")

    p = commands.add(
        "undeploy", _undeploy, "deactivate a deployed definition (its versions stay recorded)"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--message", "-m", default="", help="why (kept in the history)")


def _registry() -> Registry:
    from starter.registry import Registry

    try:
        return Registry.open()
    except Exception as e:  # a store URL that cannot be reached
        raise Exit(EXIT_FAILED, f"cannot open the registry's store: {e}") from None


async def _client() -> TideflowClient:
    from starter.cli.connection import connect

    return await connect()


# --- run/start NAME[@VERSION] ------------------------------------------------------------------


def run_target(target: str) -> tuple[Definition, dict[str, Any] | None]:
    """The definition ``run``/``start`` name: a file, or a deployed ``NAME``/``NAME@VERSION``
    (then the memo naming the version, which the run keeps); exit code 2 for neither."""
    match = _DEPLOYED.match(target)
    if match is None or Path(target).exists():
        return load_definition(target), None
    from interpreter import DefinitionError
    from starter.registry import RegistryError

    version_text = match.group("version")
    try:
        found = _registry().version(
            match.group("name"), int(version_text) if version_text else None
        )
        return found.definition(), found.memo()
    except RegistryError as e:
        raise Exit(EXIT_BAD_INPUT, f"{target}: no such file, and {e}") from None
    except DefinitionError as e:
        raise Exit(EXIT_BAD_INPUT, str(e)) from None


# --- deploy ------------------------------------------------------------------------------------


async def _deploy(args: argparse.Namespace) -> int:
    from interpreter import DefinitionError
    from starter.client import acting_user
    from starter.registry.lifecycle import DeployRefused, deploy
    from starter.testing import HarnessError, TestFileError

    registry = _registry()
    try:
        outcome = await deploy(
            args.files, registry=registry, by=acting_user(), message=args.message, client=_client
        )
    except DefinitionError as e:
        raise Exit(EXIT_BAD_INPUT, str(e)) from None
    except TestFileError as e:
        raise Exit(EXIT_BAD_INPUT, str(e)) from None
    except HarnessError as e:
        raise Exit(EXIT_FAILED, f"deploy: {e}") from None
    except DeployRefused as e:
        for case in e.report.cases:
            print(case.line_text())
        raise Exit(EXIT_FAILED, f"deploy: refused: {e}") from None
    if outcome.tests is not None:
        for case in outcome.tests.cases:
            print(case.line_text())
        print(outcome.tests.summary())
    for path in outcome.untested:
        print(f"note: {path} has no tests (write {path.stem}.test.yaml beside it)", file=sys.stderr)
    for item in outcome.deployed:
        version = item.version
        if item.new:
            print(
                f"deployed {version.name} version {version.version} "
                f"(sha256 {version.content_hash[:12]}, by {version.deployed_by})"
            )
        else:
            print(f"{version.name} is unchanged: version {version.version} has the same content")
    _print_sync(outcome.triggers)
    return EXIT_OK


def _print_sync(sync: TriggerSync) -> None:
    for change in sync.changes:
        if change.action != "unchanged":
            print(f"schedule {change.schedule_id}: {change.action} {change.detail}".rstrip())
    if sync.error:
        print(
            f"note: schedules not put into effect yet ({sync.error}); "
            "`tideflow triggers --registry` syncs them",
            file=sys.stderr,
        )


# --- reading -----------------------------------------------------------------------------------


def _definitions(args: argparse.Namespace) -> int:
    deployed = _registry().definitions()
    if args.json:
        print_json(
            [
                {
                    "name": d.name,
                    "active_version": d.active.version if d.active else None,
                    "latest_version": d.latest,
                    "definition_version": d.active.display_version if d.active else None,
                    "deployed_at": d.active.deployed_at if d.active else None,
                    "deployed_by": d.active.deployed_by if d.active else None,
                    "message": d.active.message if d.active else None,
                    "content_hash": d.active.content_hash if d.active else None,
                }
                for d in deployed
            ]
        )
        return EXIT_OK
    if not deployed:
        print("no deployed definitions (tideflow deploy FILE)")
        return EXIT_OK
    rows: list[tuple[str, ...]] = [
        ("NAME", "VERSION", "OF", "DEFINITION", "DEPLOYED AT", "BY", "MESSAGE")
    ]
    for d in deployed:
        active = d.active
        if active is None:
            rows.append((d.name, "-", str(d.latest), "(undeployed)", "", "", ""))
            continue
        rows.append(
            (
                d.name,
                str(active.version),
                str(d.latest),
                active.display_version,
                active.deployed_at,
                active.deployed_by,
                active.message,
            )
        )
    _print_rows(rows)
    return EXIT_OK


def _print_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _history(args: argparse.Namespace) -> int:
    from starter.registry import RegistryError, unified_diff

    registry = _registry()
    try:
        changes = registry.changes(args.name)
    except RegistryError as e:
        raise Exit(EXIT_BAD_INPUT, f"history: {e}") from None
    versions = {v.version: v for v in registry.versions(args.name)}
    if args.json:
        out = []
        for change in changes:
            item: dict[str, Any] = {
                "action": change.action,
                "version": change.version,
                "previous_version": change.previous_version,
                "by": change.by,
                "at": change.at,
                "message": change.message,
            }
            if change.action == "deploy" and change.version in versions:
                item["content_hash"] = versions[change.version].content_hash
                if not args.no_diff:
                    item["diff"] = unified_diff(
                        versions.get(change.version - 1), versions[change.version]
                    )
            out.append(item)
        print_json(out)
        return EXIT_OK
    for change in changes:
        said = f"  {change.message}" if change.message else ""
        if change.action == "deploy":
            version = versions.get(change.version or 0)
            digest = f" (sha256 {version.content_hash[:12]})" if version else ""
            print(f"{change.at}  deploy   version {change.version}{digest} by {change.by}{said}")
            if not args.no_diff and version is not None:
                sys.stdout.write(unified_diff(versions.get(version.version - 1), version))
        elif change.action == "rollback":
            print(
                f"{change.at}  rollback to version {change.version} "
                f"(from {change.previous_version}) by {change.by}{said}"
            )
        else:
            print(
                f"{change.at}  undeploy (was version {change.previous_version}) by {change.by}"
                f"{said}"
            )
    return EXIT_OK


# --- changing ----------------------------------------------------------------------------------


async def _rollback(args: argparse.Namespace) -> int:
    from starter.client import acting_user
    from starter.registry import RegistryError
    from starter.registry.lifecycle import rollback

    try:
        version, sync = await rollback(
            args.name,
            args.version,
            registry=_registry(),
            by=acting_user(),
            message=args.message,
            client=_client,
        )
    except RegistryError as e:
        raise Exit(EXIT_BAD_INPUT, f"rollback: {e}") from None
    print(f"{version.name} is at version {version.version} again (deployed {version.deployed_at})")
    _print_sync(sync)
    return EXIT_OK


async def _undeploy(args: argparse.Namespace) -> int:
    from starter.client import acting_user
    from starter.registry import RegistryError
    from starter.registry.lifecycle import undeploy

    try:
        was, sync = await undeploy(
            args.name, registry=_registry(), by=acting_user(), message=args.message, client=_client
        )
    except RegistryError as e:
        raise Exit(EXIT_BAD_INPUT, f"undeploy: {e}") from None
    print(f"undeployed {was.name} (was version {was.version}); runs in flight go on")
    _print_sync(sync)
    return EXIT_OK
