"""Extensions add node types through the ``tideflow.node_types`` entry-point group, without
editing Tideflow: an installed distribution declares a module; importing it registers types."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _install_extension(site: Path) -> None:
    """A minimal installed distribution (dist-info with entry points) and its module."""
    package = site / "tideflow_hello"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel, ConfigDict

            from activities import node_type


            class HelloConfig(BaseModel):
                model_config = ConfigDict(extra="forbid")
                name: str


            @node_type("hello.greet", HelloConfig, aliases=["greet"])
            async def greet(config, ctx):
                return {"greeting": f"hello {config.name}"}
            """
        )
    )
    info = site / "tideflow_hello-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tideflow-hello\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tideflow.node_types]\nhello = tideflow_hello\n")


def test_an_installed_extension_registers_its_node_types(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install_extension(site)
    definition = tmp_path / "greet.yaml"
    definition.write_text(
        "name: greet\ntasks:\n  - id: hi\n    type: greet\n    config: {name: tideflow}\n"
        "  - id: bad\n    type: hello.greet\n    config: {nme: typo}\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    done = subprocess.run(
        [sys.executable, "-m", "starter.cli", "validate", str(definition)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The alias resolves and the extension's config model checks its config, with positions.
    assert done.returncode == 2, done.stderr
    assert done.stdout.splitlines() == [
        f"{definition}:8:13: hello.greet needs config name",
        f"{definition}:8:14: unknown config key 'nme' for hello.greet (did you mean 'name'?)",
    ]
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import activities; print(activities.load_extensions()); "
            "print(activities.registry.canonical('greet'))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.split() == ["['tideflow_hello']", "hello.greet"], probe.stderr
