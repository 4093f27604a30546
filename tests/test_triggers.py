"""Triggers against the real Temporal dev server and a real worker: schedules synced to Temporal
Schedules (idempotent, updated, deleted), watched folders and S3 prefixes starting exactly one
run per document (also across restarts), events starting runs (``tideflow emit`` included), and
the trigger loop inside ``tideflow api``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
)
from temporalio.service import RPCError

from activities import WorkerSettings, registry
from interpreter import load_string
from interpreter.control import RunInput
from interpreter.model import DocumentUploadTrigger, TriggerFilter
from interpreter.workflow import DEFINITION_KEY, VERSION_KEY
from starter import client as tideflow_client
from starter._catalog import Entry
from starter.api import create_app
from starter.client import TideflowClient
from starter.triggers import (
    DocumentWatcher,
    TriggerRunner,
    _Found,
    _Ledger,
    guess_mime,
    matches_filter,
    new_catalog,
    schedule_id,
    start_runs_for_event,
    sync_schedules,
)
from tests.polling import eventually
from tests.servers.s3 import S3Server
from tests.servers.tideflow_worker import Tideflow

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 60.0
"""Longest a test waits for something to show up (a hang guard, not a timing assertion)."""
AN_HOUR_AGO = time.time() - 3600


def _yaml(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(_yaml(text))
    return path


# The CLI runs in a child process. It exits through os._exit once main() returned: a short-lived
# process holding a Temporal client aborts now and then while Python finalizes
# (temporalio/sdk-python#300, "PyGILState_Release ... finalizing"), which has nothing to do with
# what these tests check.
_CLI = (
    "import os, sys\n"
    "from starter.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "sys.stdout.flush(); sys.stderr.flush()\n"
    "os._exit(code)\n"
)


async def _tideflow(tideflow: Tideflow, home: Path, *args: str) -> str:
    """Run ``tideflow ARGS`` against the test server and worker queue; its stdout."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": tideflow.address,
        "TIDEFLOW_TASK_QUEUE": tideflow.task_queue,
        "TIDEFLOW_HOME": str(home),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CLI,
        *args,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), DEADLINE)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


def _settings(tideflow: Tideflow, home: Path) -> WorkerSettings:
    return WorkerSettings(home=home, task_queue=tideflow.task_queue)


def _client(tideflow: Tideflow) -> TideflowClient:
    """The session's Temporal client, as the triggers take it."""
    return TideflowClient(tideflow.client, task_queue=tideflow.task_queue)


def _getter(client: Client) -> Callable[[], Awaitable[TideflowClient]]:
    async def get() -> TideflowClient:
        return TideflowClient(client)

    return get


async def _runs_of(client: Client, slug: str) -> list[str]:
    query = f'{DEFINITION_KEY.name} = "{slug}"'
    return [w.id async for w in client.list_workflows(query)]


@pytest_asyncio.fixture
async def clean_schedules(tideflow: Tideflow, tmp_path: Path) -> AsyncIterator[None]:
    """Delete every tideflow- schedule after the test (a sync against an empty folder)."""
    yield
    empty = tmp_path / "no-definitions"
    empty.mkdir(exist_ok=True)
    await sync_schedules(_client(tideflow), new_catalog(empty), task_queue=tideflow.task_queue)


# --- filters ------------------------------------------------------------------------------------


def test_filter_matches_mime_types_with_wildcards_and_globs_from_the_right() -> None:
    pdf = TriggerFilter(mime_types=["application/pdf"])
    assert matches_filter(pdf, "a/b/invoice.PDF", guess_mime("invoice.PDF"))
    assert not matches_filter(pdf, "notes.txt", guess_mime("notes.txt"))
    images = TriggerFilter(mime_types=["image/*"], glob="scans/*.png")
    assert matches_filter(images, "2024/scans/page.png", "image/png")
    assert not matches_filter(images, "2024/other/page.png", "image/png")
    assert not matches_filter(images, "scans/page.pdf", "application/pdf")
    assert matches_filter(TriggerFilter(), "anything.bin", "application/octet-stream")
    # A name without a known extension falls back to the type the client declared.
    assert guess_mime("README", "text/plain; charset=utf-8") == "text/plain"
    assert guess_mime("blob", None) == "application/octet-stream"


# --- schedules ------------------------------------------------------------------------------------

SCHEDULED = """
name: {name}
version: "2"
inputs:
  label: {{type: string, default: none}}
triggers:
  - type: schedule
    cron: "{cron}"
    timezone: Europe/Paris
    inputs: {{label: nightly}}
  - type: schedule
    every: 1h
vars: {{label: ""}}
tasks:
  - id: mark
    type: set
    config: {{label: "${{{{ inputs.label }}}}"}}
outputs:
  label: ${{{{ vars.label }}}}
"""


async def test_schedules_are_synced_idempotently_and_a_trigger_runs(
    tideflow: Tideflow, tmp_path: Path, clean_schedules: None
) -> None:
    client = tideflow.client
    folder = tmp_path / "definitions"
    folder.mkdir()
    name = f"Nightly {uuid.uuid4().hex[:6]}"
    path = _write(folder, "nightly.yaml", SCHEDULED.format(name=name, cron="0 3 * * *"))
    catalog = new_catalog(folder)
    slug = catalog.entries()[0].slug
    nightly, hourly = schedule_id(slug, 0), schedule_id(slug, 1)

    changes = await sync_schedules(_client(tideflow), catalog, task_queue=tideflow.task_queue)
    assert {(c.schedule_id, c.action) for c in changes} >= {
        (nightly, "created"),
        (hourly, "created"),
    }

    described = await client.get_schedule_handle(nightly).describe()
    spec = described.schedule.spec
    assert spec.time_zone_name == "Europe/Paris"
    calendar = spec.calendars[0]  # the server keeps a cron as a calendar
    assert (calendar.hour[0].start, calendar.hour[0].end) == (3, 3)
    assert (calendar.minute[0].start, calendar.minute[0].end) == (0, 0)
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.id == f"{slug}-scheduled"
    assert action.task_queue == tideflow.task_queue
    assert action.typed_search_attributes.get(DEFINITION_KEY) == slug
    assert action.typed_search_attributes.get(VERSION_KEY) == "2"
    (run_input,) = await client.data_converter.decode(list(action.args), [RunInput])
    assert run_input.inputs == {"label": "nightly"}
    assert run_input.plan is not None and run_input.plan["name"] == name
    hourly_spec = (await client.get_schedule_handle(hourly).describe()).schedule.spec
    assert hourly_spec.intervals[0].every == timedelta(hours=1)

    # Syncing again changes nothing.
    again = await sync_schedules(_client(tideflow), catalog, task_queue=tideflow.task_queue)
    assert {(c.schedule_id, c.action) for c in again if c.definition == slug} == {
        (nightly, "unchanged"),
        (hourly, "unchanged"),
    }

    # The schedule starts a run that completes.
    handle = client.get_schedule_handle(nightly)
    await handle.trigger()
    described = await eventually(
        handle.describe, lambda d: bool(d.info.recent_actions), "the triggered action"
    )
    started = described.info.recent_actions[0].action
    assert isinstance(started, ScheduleActionExecutionStartWorkflow)
    assert started.workflow_id.startswith(f"{slug}-scheduled")
    report = await tideflow_client.result(client, started.workflow_id)
    assert report.status == "completed", report.error
    assert report.outputs == {"label": "nightly"}

    # A change to a schedule updates it (and only it: the other schedule's run input, the
    # plan, did not change), keeping a pause an operator made.
    await handle.pause(note="paused by ops")
    path.write_text(_yaml(SCHEDULED.format(name=name, cron="30 4 * * *")))
    changed = await sync_schedules(_client(tideflow), catalog, task_queue=tideflow.task_queue)
    assert {(c.schedule_id, c.action) for c in changed if c.definition == slug} == {
        (nightly, "updated"),
        (hourly, "unchanged"),
    }
    described = await handle.describe()
    assert described.schedule.spec.calendars[0].hour[0].start == 4
    assert described.schedule.state.paused is True

    # While the file does not validate, its schedules are kept as they are.
    path.write_text("name: " + name + "\ntasks: [{id: x, type: nope}]\n")
    kept = await sync_schedules(_client(tideflow), catalog, task_queue=tideflow.task_queue)
    assert {(c.schedule_id, c.action) for c in kept if c.definition == slug} == {
        (nightly, "kept"),
        (hourly, "kept"),
    }

    # A trigger removed from the definition: its schedule is deleted, the other one stays.
    fixed = _yaml(SCHEDULED.format(name=name, cron="30 4 * * *"))
    path.write_text(fixed.split("  - type: schedule\n    every: 1h\n")[0] + fixed.split("1h\n")[1])
    removed = await sync_schedules(_client(tideflow), catalog, task_queue=tideflow.task_queue)
    assert (hourly, "deleted") in {(c.schedule_id, c.action) for c in removed}
    with pytest.raises(RPCError):
        await client.get_schedule_handle(hourly).describe()
    assert (await handle.describe()).schedule.state.paused is True


async def test_trigger_inputs_that_cannot_start_a_run_are_located_definition_problems(
    tideflow: Tideflow, tmp_path: Path, clean_schedules: None
) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    _write(
        folder,
        "bad-triggers.yaml",
        """
        name: Bad Triggers
        inputs:
          amount: {type: number, required: true}
        triggers:
          - type: schedule
            every: 1d
            inputs: {amount: lots}
          - type: event
            name: bad.triggers
        tasks:
          - id: a
            type: set
            config: {}
        """,
    )
    catalog = new_catalog(folder)
    (entry,) = catalog.entries()
    assert not entry.valid  # a trigger that cannot start a valid run makes the file invalid
    located = [(p.line, p.column, p.message) for p in entry.problems]
    assert located == [
        (7, 22, "input 'amount' must be a number, got string 'lots'"),
        (8, 5, "an event trigger passes its payload as inputs.event: declare an `event` input"),
        (
            8,
            5,
            "event trigger starts runs without the required input 'amount': give it in the "
            "trigger's inputs",
        ),
    ]

    changes = await sync_schedules(_client(tideflow), catalog, task_queue=tideflow.task_queue)
    mine = [(c.schedule_id, c.action) for c in changes if c.definition == "bad-triggers"]
    assert mine == []  # an invalid file's triggers never become schedules
    starts = await start_runs_for_event(
        _client(tideflow), catalog, "bad.triggers", {"x": 1}, task_queue=tideflow.task_queue
    )
    assert starts.started == [] and starts.refused == []  # an invalid file listens to nothing


async def test_a_cron_the_server_refuses_fails_alone(
    tideflow: Tideflow, tmp_path: Path, clean_schedules: None
) -> None:
    folder = tmp_path / "definitions"
    folder.mkdir()
    _write(folder, "bad-cron.yaml", SCHEDULED.format(name="Bad Cron", cron="99 * * * *"))
    _write(folder, "good-cron.yaml", SCHEDULED.format(name="Good Cron", cron="0 3 * * *"))
    changes = await sync_schedules(
        _client(tideflow), new_catalog(folder), task_queue=tideflow.task_queue
    )
    actions = {c.schedule_id: c.action for c in changes}
    assert actions[schedule_id("bad-cron", 0)] == "failed"
    assert actions[schedule_id("bad-cron", 1)] == "created"
    assert actions[schedule_id("good-cron", 0)] == "created"


# --- watched folders -----------------------------------------------------------------------------

WATCHED = """
name: {name}
inputs:
  document: {{type: string, required: true}}
  origin: {{type: string, default: unknown}}
triggers:
  - type: document_upload
    path: inbox
    filter: {{mime_types: [application/pdf]}}
    inputs: {{origin: folder}}
vars: {{seen: ""}}
tasks:
  - id: note
    type: set
    config: {{seen: "${{{{ inputs.document }}}}"}}
outputs:
  document: ${{{{ vars.seen }}}}
  origin: ${{{{ inputs.origin }}}}
"""


def _pdf(folder: Path, name: str, content: bytes = b"%PDF-1.4\n", *, old: bool = True) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if old:
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    return path


async def test_folder_watcher_starts_exactly_one_run_per_file(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    client = tideflow.client
    folder = tmp_path / "definitions"
    inbox = folder / "inbox"
    inbox.mkdir(parents=True)
    name = f"Watched {uuid.uuid4().hex[:6]}"
    _write(folder, "watched.yaml", WATCHED.format(name=name))
    home = tmp_path / "home"
    invoice = _pdf(inbox, "2024/invoice.pdf")
    _pdf(inbox, "notes.txt")  # filtered out: not a PDF
    _pdf(inbox, ".partial.pdf")  # hidden: a copy in progress
    _pdf(inbox, "fresh.pdf", old=False)  # modified within the settle time

    def runner(*, ledger: bool = True, settle: float = 600.0) -> TriggerRunner:
        return TriggerRunner(
            new_catalog(folder),
            _getter(client),
            settings=_settings(tideflow, home),
            settle_seconds=settle,
            ledger=ledger,
        )

    first = runner()
    result = await first.poll_once()
    assert [(r.source, r.new) for r in result.started] == [(str(invoice.resolve()), True)]
    workflow_id = result.started[0].workflow_id
    slug = result.started[0].definition
    assert workflow_id.startswith(f"{slug}-doc-")
    report = await tideflow_client.result(client, workflow_id)
    assert report.status == "completed", report.error
    assert report.outputs == {"document": str(invoice.resolve()), "origin": "folder"}

    # Polled again: nothing new.
    assert (await first.poll_once()).started == []
    # A restarted watcher (same home): its ledger knows the file.
    assert (await runner().poll_once()).started == []
    # A restarted watcher that lost its ledger: Temporal refuses the duplicate id.
    forgetful = await runner(ledger=False).poll_once()
    assert [(r.workflow_id, r.new) for r in forgetful.started] == [(workflow_id, False)]
    runs = await eventually(lambda: _runs_of(client, slug), bool, "the run in visibility")
    assert runs == [workflow_id]

    # The fresh file starts once it has settled; a changed file is a new document.
    os.utime(inbox / "fresh.pdf", (AN_HOUR_AGO, AN_HOUR_AGO))
    invoice.write_bytes(b"%PDF-1.4 second version\n")
    os.utime(invoice, (AN_HOUR_AGO + 60, AN_HOUR_AGO + 60))
    # Both changed since the last poll: they wait one more poll to be sure they are complete.
    assert (await first.poll_once()).started == []
    later = await first.poll_once()
    assert sorted(Path(r.source).name for r in later.started if r.new) == [
        "fresh.pdf",
        "invoice.pdf",
    ]
    assert workflow_id not in {r.workflow_id for r in later.started}


def test_a_file_whose_size_changes_between_polls_waits() -> None:
    definition = load_string(_yaml(WATCHED.format(name="Growing")), "<test>", registry)
    entry = Entry(Path("/defs/growing.yaml"), definition.slug, definition)
    trigger = definition.triggers[0]
    assert isinstance(trigger, DocumentUploadTrigger)
    watcher = DocumentWatcher(entry, 0, trigger, ledger=_Ledger(None), settle_seconds=1.0)
    now = 10_000.0
    small = _Found("/in/a.pdf", "a.pdf", "10:1", modified=now - 60)
    grown = _Found("/in/a.pdf", "a.pdf", "20:2", modified=now - 60)
    recent = _Found("/in/b.pdf", "b.pdf", "5:3", modified=now - 0.5)
    assert watcher.ready([small, recent], now) == [small]  # b.pdf was modified 0.5 s ago
    assert watcher.ready([grown], now) == []  # a.pdf grew since the last poll
    assert watcher.ready([grown], now) == [grown]  # unchanged since: complete


async def test_s3_prefix_watcher_starts_one_run_per_object(
    tideflow: Tideflow, tmp_path: Path, s3_server: S3Server
) -> None:
    client = tideflow.client
    bucket = s3_server.new_bucket("inbox")
    s3 = s3_server.client()
    s3.put_object(Bucket=bucket, Key="incoming/a.pdf", Body=b"%PDF-1.4 a")
    s3.put_object(Bucket=bucket, Key="incoming/b.txt", Body=b"not a pdf")
    s3.put_object(Bucket=bucket, Key="elsewhere/c.pdf", Body=b"%PDF-1.4 c")
    folder = tmp_path / "definitions"
    folder.mkdir()
    name = f"S3 Watched {uuid.uuid4().hex[:6]}"
    text = WATCHED.format(name=name).replace("path: inbox", f"path: s3://{bucket}/incoming/")
    _write(folder, "s3.yaml", text)
    home = tmp_path / "home"

    def runner(ledger: bool = True) -> TriggerRunner:
        return TriggerRunner(
            new_catalog(folder), _getter(client), settings=_settings(tideflow, home), ledger=ledger
        )

    watcher = runner()
    result = await watcher.poll_once()
    assert [(r.source, r.new) for r in result.started] == [(f"s3://{bucket}/incoming/a.pdf", True)]
    report = await tideflow_client.result(client, result.started[0].workflow_id)
    assert report.outputs["document"] == f"s3://{bucket}/incoming/a.pdf"
    assert (await watcher.poll_once()).started == []
    again = await runner(ledger=False).poll_once()
    assert [(r.workflow_id, r.new) for r in again.started] == [
        (result.started[0].workflow_id, False)
    ]

    # A watcher that fails (its bucket is gone) is reported; the other watchers go on.
    _write(
        folder,
        "gone.yaml",
        WATCHED.format(name=f"Gone {uuid.uuid4().hex[:6]}").replace(
            "path: inbox", f"path: s3://{bucket}-gone/incoming/"
        ),
    )
    s3.put_object(Bucket=bucket, Key="incoming/d.pdf", Body=b"%PDF-1.4 d")
    mixed = await watcher.poll_once()
    assert [r.source for r in mixed.started] == [f"s3://{bucket}/incoming/d.pdf"]
    assert len(mixed.errors) == 1 and f"{bucket}-gone" in mixed.errors[0]
    # The shared S3 error map: one line naming the prefix and what is wrong.
    assert mixed.errors[0].endswith(f"s3://{bucket}-gone/incoming/: no such bucket (NoSuchBucket)")


# --- events -------------------------------------------------------------------------------------

LISTENER = """
name: {name}
inputs:
  event: {{type: object, required: true}}
  channel: {{type: string, default: none}}
triggers:
  - type: event
    name: {event}
    inputs: {{channel: alerts}}
tasks:
  - id: noop
    type: set
    config: {{}}
outputs:
  level: ${{{{ inputs.event.level }}}}
  channel: ${{{{ inputs.channel }}}}
"""

NO_INPUTS_LISTENER = """
name: {name}
triggers:
  - type: event
    name: {event}
tasks:
  - id: noop
    type: set
    config: {{}}
outputs:
  event: ${{{{ inputs.event }}}}
"""


async def test_an_event_starts_runs_of_listening_definitions(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    event = f"alert.{uuid.uuid4().hex[:6]}"
    folder = tmp_path / "definitions"
    folder.mkdir()
    _write(folder, "listener.yaml", LISTENER.format(name="Alert Listener", event=event))
    _write(folder, "loose.yaml", NO_INPUTS_LISTENER.format(name="Loose Listener", event=event))
    _write(folder, "deaf.yaml", LISTENER.format(name="Deaf", event="other.event"))
    catalog = new_catalog(folder)

    starts = await start_runs_for_event(
        _client(tideflow), catalog, event, {"level": "high"}, task_queue=tideflow.task_queue
    )
    assert sorted(r.definition for r in starts.started) == ["alert-listener", "loose-listener"]
    reports = {
        r.definition: await tideflow_client.result(tideflow.client, r.workflow_id)
        for r in starts.started
    }
    assert reports["alert-listener"].outputs == {"level": "high", "channel": "alerts"}
    assert reports["loose-listener"].outputs == {"event": {"level": "high"}}


async def test_tideflow_emit_starts_runs_from_the_definitions_folder(
    tideflow: Tideflow, tmp_path: Path
) -> None:
    event = f"cli.{uuid.uuid4().hex[:6]}"
    folder = tmp_path / "definitions"
    folder.mkdir()
    _write(folder, "listener.yaml", LISTENER.format(name="CLI Listener", event=event))
    output = await _tideflow(
        tideflow,
        tmp_path / "home",
        *("emit", event, "--data", '{"level": "low"}', "--definitions", str(folder)),
    )
    assert f"emit {event}: started 1 run(s)" in output
    workflow_id = output.split("started 1 run(s)\n")[1].split()[0]
    assert workflow_id.startswith("cli-listener-")
    report = await tideflow_client.result(tideflow.client, workflow_id)
    assert report.outputs == {"level": "low", "channel": "alerts"}


async def test_tideflow_triggers_once_starts_runs_for_a_watched_folder(
    tideflow: Tideflow, tmp_path: Path, clean_schedules: None
) -> None:
    folder = tmp_path / "definitions"
    inbox = folder / "inbox"
    inbox.mkdir(parents=True)
    _write(folder, "watched.yaml", WATCHED.format(name=f"CLI Watched {uuid.uuid4().hex[:6]}"))
    document = _pdf(inbox, "scan.pdf")
    args = ("triggers", "--definitions", str(folder), "--once")
    outputs = [await _tideflow(tideflow, tmp_path / "home", *args) for _ in range(2)]
    started = [line for line in outputs[0].splitlines() if line.startswith("started ")]
    assert len(started) == 1 and started[0].endswith(f"for {document.resolve()}")
    assert "started " not in outputs[1]  # the second process starts nothing
    workflow_id = started[0].split()[1]
    report = await tideflow_client.result(tideflow.client, workflow_id)
    assert report.outputs["document"] == str(document.resolve())


async def test_the_api_runs_the_triggers_in_the_background(
    tideflow: Tideflow, tmp_path: Path, clean_schedules: None
) -> None:
    folder = tmp_path / "definitions"
    inbox = folder / "inbox"
    inbox.mkdir(parents=True)
    name = f"API Watched {uuid.uuid4().hex[:6]}"
    _write(folder, "watched.yaml", WATCHED.format(name=name))
    slug = new_catalog(folder).entries()[0].slug
    app = create_app(
        folder,
        client=tideflow.client,
        settings=_settings(tideflow, tmp_path / "home"),
        triggers=True,
        poll_seconds=0.1,
    )
    async with app.router.lifespan_context(app):
        document = _pdf(inbox, "dropped.pdf")
        runs = await eventually(
            lambda: _runs_of(tideflow.client, slug), bool, "a run started by the API's watcher"
        )
    report = await tideflow_client.result(tideflow.client, runs[0])
    assert report.outputs["document"] == str(document.resolve())
