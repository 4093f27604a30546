"""``tideflow templates`` and ``tideflow new``: definitions for the seeds' scenarios, made to
measure, with a test file that passes as written."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from starter.cli.arguments import Commands, pairs, print_json
from starter.cli.errors import EXIT_BAD_INPUT, EXIT_OK, Exit


def register(commands: Commands) -> None:
    """Add this module's commands."""
    p = commands.add("templates", _templates, "list the definition templates (tideflow new)")
    p.add_argument("--json", action="store_true")

    p = commands.add(
        "new",
        _new,
        "write NAME.yaml from a template, and NAME.test.yaml beside it (both validate and pass "
        "`tideflow test` as written)",
    )
    p.add_argument("name", metavar="NAME", help="the definition's name, and its files' names")
    p.add_argument("--template", "-t", required=True, metavar="T", help="see `tideflow templates`")
    p.add_argument(
        "--set",
        dest="values",
        action="append",
        default=[],
        metavar="K=V",
        help="a parameter's value (V as JSON when it parses; a list as a,b,c)",
    )
    p.add_argument("--dir", type=Path, default=Path("."), help="where to write (default .)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")


def _templates(args: argparse.Namespace) -> int:
    from starter.templates import templates

    found = templates()
    if args.json:
        print_json(
            [
                {
                    "name": t.name,
                    "description": t.description,
                    "scenario": t.scenario,
                    "parameters": [
                        {
                            "name": p.name,
                            "type": p.type,
                            "default": p.default,
                            "description": p.description,
                        }
                        for p in t.parameters
                    ],
                }
                for t in found
            ]
        )
        return EXIT_OK
    for t in found:
        print(f"{t.name}: {t.description}")
        for p in t.parameters:
            about = f"  {p.description}" if p.description else ""
            print(f"    --set {p.name}=…  ({p.type}, default {_shown(p.default)}){about}")
    print("\ntideflow new NAME --template T [--set key=value]…")
    return EXIT_OK


def _shown(value: object) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _new(args: argparse.Namespace) -> int:
    from interpreter import DefinitionError, load_file
    from starter.templates import TemplateError, template
    from starter.testing import TestFileError, load_test_file

    try:
        chosen = template(args.template)
        definition, tests = chosen.render(args.name, pairs(args.values, "--set"))
    except TemplateError as e:
        raise Exit(EXIT_BAD_INPUT, f"new: {e}") from None
    folder: Path = args.dir
    targets = [folder / f"{args.name}.yaml", folder / f"{args.name}.test.yaml"]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.force:
        verb = "exists" if len(existing) == 1 else "exist"
        raise Exit(EXIT_BAD_INPUT, f"new: {' and '.join(existing)} {verb} (--force overwrites)")
    # Both files are checked where nothing is overwritten yet, then moved in place.
    with tempfile.TemporaryDirectory(prefix="tideflow-new-") as scratch:
        draft = [Path(scratch) / t.name for t in targets]
        draft[0].write_text(definition, encoding="utf-8")
        draft[1].write_text(tests, encoding="utf-8")
        try:
            import activities

            activities.load_extensions()
            load_file(draft[0], activities.registry)
            load_test_file(draft[1])
        except (DefinitionError, TestFileError) as e:
            text = str(e).replace(scratch, str(folder))
            raise Exit(
                EXIT_BAD_INPUT, f"new: the values make an invalid definition:\n{text}"
            ) from None
        folder.mkdir(parents=True, exist_ok=True)
        for source, target in zip(draft, targets, strict=True):
            shutil.copyfile(source, target)
    print(f"wrote {targets[0]} and {targets[1]} (template {chosen.name})")
    print(f"  tideflow test {targets[1]}")
    return EXIT_OK
