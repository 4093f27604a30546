"""Templates: every shipped template renders (with its defaults and with other values),
validates, and its test file passes ``tideflow test`` as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from starter.client import validate
from starter.templates import TemplateError, template, templates
from tests.test_testing import tideflow

SCENARIOS = {
    "invoice-processing",
    "document-triage",
    "inventory-reorder",
    "contract-review",
    "automation",
}
"""The seeds' scenarios the issue names."""

OTHER_VALUES = {
    "invoice-processing": ["approvers=ana,bob", "approval_threshold=250", "table=bills"],
    "document-triage": ["labels=memo,minutes", 'folder=out "dir"', "max_words=20"],
    "inventory-reorder": ["table=orders", "notify_url=https://alerts.example.com/x"],
    "contract-review": ['approvers=["counsel"]', "review_within=12h"],
    "automation": ["source_url=https://a.example.com/x", "target_url=https://b.example.com/y"],
}


def test_the_seeds_scenarios_are_shipped() -> None:
    assert {t.name for t in templates()} == SCENARIOS
    for shipped in templates():
        assert shipped.description
        assert shipped.name in OTHER_VALUES


async def test_every_template_renders_validates_and_passes_its_tests(tmp_path: Path) -> None:
    listed = await tideflow("templates")
    assert listed.code == 0
    for name in sorted(SCENARIOS):
        assert listed.stdout.count(f"{name}: ") == 1
        defaults = await tideflow("new", f"my-{name}", "--template", name, "--dir", str(tmp_path))
        assert defaults.code == 0, defaults.stderr
        assert defaults.stdout.splitlines()[0] == (
            f"wrote {tmp_path}/my-{name}.yaml and {tmp_path}/my-{name}.test.yaml (template {name})"
        )
        values = [arg for value in OTHER_VALUES[name] for arg in ("--set", value)]
        custom = await tideflow("new", f"other-{name}", "-t", name, "--dir", str(tmp_path), *values)
        assert custom.code == 0, custom.stderr
    files = sorted(tmp_path.glob("*.yaml"))
    assert len(files) == 4 * len(SCENARIOS)
    checked = await tideflow("validate", *map(str, files))
    assert checked.code == 0, checked.stdout
    assert validate([f for f in files if not f.name.endswith(".test.yaml")]) == []
    ran = await tideflow("test", str(tmp_path))
    assert ran.code == 0, ran.stdout + ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[-1] == f"{len(lines) - 1} passed, 0 failed"
    assert len(lines) - 1 >= 2 * 2 * len(SCENARIOS)
    # The values reached the definitions.
    assert 'approvers: ["ana", "bob"]' in (tmp_path / "other-invoice-processing.yaml").read_text()
    assert "default: 250.0" in (tmp_path / "other-invoice-processing.yaml").read_text()
    triage = (tmp_path / "other-document-triage.yaml").read_text()
    assert 'uri: "file://out \\"dir\\"/${{ nodes.classify.output.label }}' in triage
    assert 'name: "other-document-triage"' in triage


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--template", "invoice"],
            "new: no template 'invoice' (did you mean 'invoice-processing'?)",
        ),
        (
            ["-t", "automation", "--set", "sourceurl=x"],
            "new: template automation has no parameter 'sourceurl' (did you mean 'source_url'?)",
        ),
        (
            ["-t", "document-triage", "--set", "max_words=many"],
            "new: parameter 'max_words': expected integer, got 'many'",
        ),
    ],
)
async def test_bad_values_are_one_line_and_write_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = await tideflow("new", "x", "--dir", str(tmp_path), *args)
    assert done.code == 2
    assert done.stderr.startswith(message)
    assert list(tmp_path.iterdir()) == []


async def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("mine")
    done = await tideflow("new", "x", "-t", "automation", "--dir", str(tmp_path))
    assert done.code == 2
    assert done.stderr.strip() == f"new: {tmp_path}/x.yaml exists (--force overwrites)"
    assert (tmp_path / "x.yaml").read_text() == "mine"
    forced = await tideflow("new", "x", "-t", "automation", "--dir", str(tmp_path), "--force")
    assert forced.code == 0
    assert (tmp_path / "x.yaml").read_text().startswith("# A nodes/edges automation")


def test_render_api() -> None:
    definition, tests = template("automation").render("pull", {"target_url": "https://x.test/"})
    assert 'name: "pull"' in definition
    assert 'default: "https://x.test/"' in definition
    assert "`tideflow test pull.test.yaml`" in tests
    with pytest.raises(TemplateError):
        template("automation").render("pull", {"nope": 1})
