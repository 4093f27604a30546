"""Extension hooks: an extension installed into the environment and named in the worker
configuration (seed 003's form) sees the events of every run the worker executes, in order;
a hook that raises or hangs is disabled on that worker and the runs go on."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

import tests.testing_node_types  # noqa: F401  (registers test.* before the worker is built)
from activities import WorkerSettings, registry
from activities.hooks import ExtensionError, load_hooks
from interpreter import load_string
from starter import client as tideflow
from tests.polling import eventually

ROOT = Path(__file__).resolve().parent.parent
CUSTOM_LOGGER = ROOT / "examples" / "extensions" / "custom_logger"

SEED_003_CONFIG = """\
workflow_engine:
  type: "sequential"
  max_concurrent_workflows: 20
  state_persistence: true
  error_handling:
    retry_attempts: 3
    backoff_strategy: "exponential"
  monitoring:
    enabled: true
    metrics: ["latency", "throughput", "failures"]
  extensions:
    - name: "custom_logger"
      enabled: true
"""

TWO_NODES = """
name: hooked
tasks:
  - id: first
    type: test.echo
    config: {value: 1}
  - id: second
    type: test.echo
    depends_on: [first]
    config: {value: 2}
"""


@pytest.fixture(scope="module")
def installed_logger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/extensions/custom_logger pip-installed into a folder of its own (offline: the
    venv's setuptools builds it, from a copy, so no build folder lands in the checkout)."""
    source = tmp_path_factory.mktemp("custom-logger-source") / "custom_logger"
    shutil.copytree(CUSTOM_LOGGER, source)
    target = tmp_path_factory.mktemp("custom-logger-site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert list(target.glob("tideflow_custom_logger-*.dist-info"))
    return target


def _bad_hooks(site: Path) -> None:
    """An extension whose hooks misbehave: one raises on every event, one never returns."""
    package = site / "tideflow_bad_hooks"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            import asyncio

            CALLS = []

            def setup(hooks):
                @hooks.on()
                def explode(event):
                    CALLS.append(("explode", event.event))
                    raise RuntimeError("hook broken on purpose")

                @hooks.on("node_ended")
                async def hang(event):
                    CALLS.append(("hang", event.event))
                    await asyncio.sleep(3600)
            """
        )
    )
    info = site / "tideflow_bad_hooks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tideflow-bad-hooks\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[tideflow.extensions]\nbad_hooks = tideflow_bad_hooks:setup\n"
    )


async def test_hooks_see_a_runs_events_in_order_and_a_broken_hook_never_fails_it(
    temporal_env: WorkflowEnvironment,
    installed_logger: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from worker import running_worker

    bad_site = tmp_path / "bad-site"
    bad_site.mkdir()
    _bad_hooks(bad_site)
    monkeypatch.syspath_prepend(str(installed_logger))
    monkeypatch.syspath_prepend(str(bad_site))
    # Seed 003's configuration as written, plus the misbehaving extension (native entry form).
    config = tmp_path / "worker.yaml"
    config.write_text(
        SEED_003_CONFIG
        + "    - {name: bad_hooks, enabled: true, timeout_seconds: 0.5}\n"
        + "    - {name: not_loaded, enabled: false}\n"
    )
    queue = f"hooks-{uuid.uuid4().hex[:8]}"
    env = {"TIDEFLOW_CONFIG": str(config), "TIDEFLOW_HOME": str(tmp_path)}
    settings = WorkerSettings.from_env({**env, "TIDEFLOW_TASK_QUEUE": queue})
    log_file = tmp_path / "custom_logger.jsonl"
    definition = load_string(TWO_NODES, "hooked.yaml", catalog=registry)

    caplog.set_level(logging.ERROR, logger="tideflow.hooks")
    async with running_worker(temporal_env.client, settings):
        first = await tideflow.start(temporal_env.client, definition, task_queue=queue)
        report = await tideflow.result(temporal_env.client, first.id)
        assert report.status == "completed"
        # A second run, after both bad hooks were disabled, completes and is logged too.
        second = await tideflow.start(temporal_env.client, definition, task_queue=queue)
        assert (await tideflow.result(temporal_env.client, second.id)).status == "completed"
        await eventually(lambda: _events(log_file, second.id), lambda e: len(e) == 6)

    for run in (first, second):
        events = _events(log_file, run.id)
        assert [(e["event"], e.get("node"), e.get("status")) for e in events] == [
            ("run_started", None, None),
            ("node_started", "first", "running"),
            ("node_ended", "first", "completed"),
            ("node_started", "second", "running"),
            ("node_ended", "second", "completed"),
            ("run_ended", None, "completed"),
        ]
        assert {e["definition"] for e in events} == {"hooked"}
        assert {e["task_queue"] for e in events} == {queue}
        assert [e["attempts"] for e in events if e["event"] == "node_ended"] == [1, 1]
        # What a hook sees never carries the nodes' values.
        assert all("value" not in json.dumps(e) for e in events)

    from tideflow_bad_hooks import CALLS

    # Each misbehaving hook was called once, then left alone.
    assert CALLS == [("explode", "run_started"), ("hang", "node_ended")]
    assert "bad_hooks:explode raised RuntimeError: hook broken on purpose" in caplog.text
    assert "bad_hooks:hang did not return within 0.5 s on node_ended" in caplog.text


def _events(path: Path, workflow_id: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in lines if e["workflow_id"] == workflow_id]


def test_an_extension_that_is_not_installed_is_named_where_the_configuration_names_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("extensions:\n  - name: custom_loger\n")
    env = {"TIDEFLOW_CONFIG": str(config), "TIDEFLOW_HOME": str(tmp_path)}
    settings = WorkerSettings.from_env(env)
    with pytest.raises(ExtensionError) as error:
        load_hooks(settings)
    assert str(error.value).startswith(f"{config}:2:11: extension 'custom_loger' is not installed")
