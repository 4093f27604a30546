"""The Temporal Web UI reads as the workflow: a real UI (the dev server's), loaded in headless
Chromium, shows the run's summary and each node's activity summary."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from activities import WorkerSettings, registry
from interpreter import load_string
from starter import client as api
from starter.server import SEARCH_ATTRIBUTES, free_port
from tests.servers.temporal import temporal_cli_path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"
)

DEFINITION = """
name: Web UI check
version: "7"
tasks:
  - id: parse_invoice
    name: Parse the invoice
    type: test.echo
    config: {value: parsed}
  - id: store_result
    name: Store the result
    type: test.echo
    depends_on: [parse_invoice]
    config: {value: stored}
"""


@pytest_asyncio.fixture(scope="module")
async def ui_env() -> AsyncIterator[tuple[WorkflowEnvironment, int]]:
    ui_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=list(SEARCH_ATTRIBUTES),
        data_converter=api.data_converter(),
        ui=True,
        ui_port=ui_port,
    )
    yield env, ui_port
    await env.shutdown()


def render(url: str) -> str:
    """The DOM of ``url`` after its scripts ran, from headless Chromium."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=8000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


async def test_the_run_page_shows_the_definition_and_every_node_summary(
    ui_env: tuple[WorkflowEnvironment, int], tmp_path: object
) -> None:
    import tests.testing_node_types  # noqa: F401  (test.echo)
    from worker import running_worker

    env, ui_port = ui_env
    settings = WorkerSettings(home=tmp_path, task_queue="web-ui")  # type: ignore[arg-type]
    definition = load_string(DEFINITION, "ui.yaml", registry)
    async with running_worker(env.client, settings):
        report = await api.run(env.client, definition, {}, task_queue="web-ui")
    assert report.status == "completed"

    url = (
        f"http://localhost:{ui_port}/namespaces/default/workflows/"
        f"{report.workflow_id}/{report.run_id}/history"
    )
    page = render(url)
    assert "Web UI check 7" in page  # the run's static summary: name and version
    assert "parse_invoice — Parse the invoice" in page  # each activity names its node
    assert "store_result — Store the result" in page
