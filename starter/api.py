"""``tideflow api``: the HTTP API (FastAPI; the OpenAPI schema is served at ``/openapi.json`` and
the interactive docs at ``/docs``).

Definitions are the YAML files of a folder (``--definitions``, ``TIDEFLOW_DEFINITIONS``, default
``examples/``), reloaded when they change. Runs are started, followed and operated through
:mod:`starter.client`; triggers (:mod:`starter.triggers`) run in the background. One Temporal
client is held for the app's lifetime; when Temporal cannot be reached, requests that need it
answer 503 and the API keeps serving the rest. docs/api.md documents every endpoint.

Errors share one shape, ``{"detail": "...", "problems": [...]}``: 422 for a definition problem
(``FILE:LINE:COL: message`` each) or an input problem (the field named), 404 for an unknown
definition or run, 409 for a request the run refuses, 415 for a document the trigger's filter
rejects, 503 when Temporal is unreachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import activities
from activities import WorkerSettings
from interpreter import Definition, DefinitionError, Problem, load_data, load_string
from interpreter.control import Approve, ControlAnswer, RetryNode, SetVars, SkipNode
from interpreter.inputs import InputError, resolve_inputs
from interpreter.model import DocumentUploadTrigger
from interpreter.report import RunReport, RunState
from interpreter.workflow import TideflowWorkflow
from starter import client as tideflow
from starter._catalog import Catalog, Entry, definitions_dir
from starter.graph import mermaid
from starter.triggers import (
    TriggerRunner,
    describe_filter,
    guess_mime,
    matches_filter,
    new_catalog,
    start_runs_for_event,
)

log = logging.getLogger("tideflow.api")

DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024
"""Largest document ``POST /definitions/{slug}/documents`` accepts (413 beyond)."""

_CONNECT_TIMEOUT = 10.0


# --- errors -----------------------------------------------------------------------------------


class ProblemOut(BaseModel):
    """A definition problem, located in its file."""

    file: str
    line: int
    column: int
    message: str
    text: str = Field(description="FILE:LINE:COL: message")

    @classmethod
    def of(cls, problem: Problem) -> ProblemOut:
        """From the interpreter's problem."""
        return cls(
            file=problem.file,
            line=problem.line,
            column=problem.column,
            message=problem.message,
            text=str(problem),
        )


class FieldProblem(BaseModel):
    """A problem of one input (or request field)."""

    field: str | None = Field(description="the input's name (or the request field's path)")
    message: str
    text: str


class ErrorOut(BaseModel):
    """Every error answer: what went wrong, and each problem when there are several."""

    detail: str
    problems: list[ProblemOut | FieldProblem] = Field(default_factory=list)


class ApiError(Exception):
    """An error answer: status, detail and problems."""

    def __init__(
        self, status: int, detail: str, problems: list[ProblemOut | FieldProblem] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.problems = problems or []


class TemporalUnavailable(ApiError):
    """Temporal could not be reached."""

    def __init__(self, reason: str) -> None:
        super().__init__(503, f"Temporal is unreachable: {reason}")


def input_problems(error: InputError) -> list[ProblemOut | FieldProblem]:
    """The problems of bad inputs, each naming its field."""
    return [
        FieldProblem(field=field, message=message, text=text)
        for (field, message), text in zip(error.fields, error.problems, strict=True)
    ]


def _definition_error(error: DefinitionError) -> ApiError:
    problems: list[ProblemOut | FieldProblem] = [ProblemOut.of(p) for p in error.problems]
    return ApiError(422, "invalid definition", problems)


def _rpc_error(error: RPCError) -> ApiError:
    message = error.message or str(error)
    if error.status == RPCStatusCode.NOT_FOUND:
        if "already completed" in message:
            return ApiError(409, f"the run has ended: {message}")
        return ApiError(404, message)
    if error.status == RPCStatusCode.UNAVAILABLE:
        return TemporalUnavailable(message)
    if error.status == RPCStatusCode.ALREADY_EXISTS:
        return ApiError(409, message)
    if error.status == RPCStatusCode.INVALID_ARGUMENT:
        return ApiError(400, message)
    if error.status == RPCStatusCode.DEADLINE_EXCEEDED:
        return ApiError(504, f"Temporal did not answer in time: {message}")
    return ApiError(502, f"Temporal: {message}")


def _error_response(error: ApiError) -> JSONResponse:
    body = ErrorOut(detail=error.detail, problems=error.problems)
    return JSONResponse(body.model_dump(mode="json"), status_code=error.status)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (404, "unknown definition or run"),
        (409, "refused by the run"),
        (422, "invalid definition, inputs or request"),
        (503, "Temporal is unreachable"),
    )
}


# --- request and response bodies --------------------------------------------------------------


class DefinitionSummary(BaseModel):
    """One definition file of the folder."""

    slug: str
    name: str | None = None
    version: str | None = None
    description: str | None = None
    file: str
    valid: bool
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    problems: list[ProblemOut] = Field(
        default_factory=list, description="why the file does not load (it cannot run)"
    )
    trigger_problems: list[ProblemOut] = Field(
        default_factory=list, description="triggers that stay inactive (the definition runs)"
    )


class DefinitionDetail(DefinitionSummary):
    """A definition with its JSON form and its graph."""

    definition: dict[str, Any] | None = None
    mermaid: str | None = Field(default=None, description="the graph as a Mermaid flowchart")


class StartRequest(BaseModel):
    """Start a run of a registered definition."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    workflow_id: str | None = Field(default=None, description="default <slug>-<random>")


class InlineRunRequest(StartRequest):
    """Start a run of a definition given in the request."""

    definition: str | dict[str, Any] = Field(description="YAML text or a JSON object")


class RunStarted(BaseModel):
    """A started run."""

    workflow_id: str
    run_id: str | None
    definition: str
    web_ui: str
    document: str | None = Field(default=None, description="the saved upload's path")


class RunStateOut(RunState):
    """The live state of a run (the ``state`` query)."""

    workflow_id: str


class ControlDone(BaseModel):
    """A signal or cancellation the run received."""

    workflow_id: str
    action: str


class ControlOut(ControlAnswer):
    """What the run answered to an update."""

    workflow_id: str


class EventRequest(BaseModel):
    """An event: delivered to waiting runs, and starting runs of definitions that listen."""

    payload: Any = None
    correlation: str | None = Field(
        default=None, description="deliver only to wait_for_event nodes with this correlation"
    )
    key: str | None = Field(
        default=None,
        description="an event id: the same key never starts a definition's run twice",
    )


class RefusedOut(BaseModel):
    """A definition that listens to the event but refused to start."""

    definition: str
    problems: list[str]


class EventOut(BaseModel):
    """What an event did."""

    delivered: list[str] = Field(description="open runs the event was delivered to")
    started: list[RunStarted]
    already_started: list[str] = Field(
        default_factory=list, description="runs this event's key had started before"
    )
    refused: list[RefusedOut] = Field(default_factory=list)


class HealthOut(BaseModel):
    """Whether the API, Temporal and the definitions are fine."""

    status: str
    temporal: str
    definitions: int
    invalid_definitions: int


# --- the app ------------------------------------------------------------------------------------


class _Temporal:
    """The app's one Temporal client, connected on first need (and again after a failure)."""

    def __init__(self, client: Client | None, settings: WorkerSettings) -> None:
        self._client = client
        self._settings = settings
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await self._connect()
        return self._client

    async def _connect(self) -> Client:
        from starter.server import ServerError, ensure_search_attributes

        try:
            client = await asyncio.wait_for(
                tideflow.connect(settings=self._settings), _CONNECT_TIMEOUT
            )
        except Exception as e:
            raise TemporalUnavailable(str(e) or type(e).__name__) from e
        try:
            await ensure_search_attributes(client, timeout=_CONNECT_TIMEOUT)
        except ServerError as e:  # runs still start when they are registered another way
            log.warning("%s", e)
        return client


@dataclass
class _Runtime:
    catalog: Catalog
    settings: WorkerSettings
    temporal: _Temporal
    max_upload_bytes: int


def create_app(
    definitions: str | Path | None = None,
    *,
    client: Client | None = None,
    settings: WorkerSettings | None = None,
    triggers: bool = True,
    poll_seconds: float = 2.0,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> FastAPI:
    """The API over a definitions folder; ``client`` is used as is when given (tests), else
    one is connected from ``TEMPORAL_ADDRESS``. ``triggers`` runs the trigger loop too."""
    settings = settings or WorkerSettings.from_env()
    runtime = _Runtime(
        catalog=new_catalog(definitions_dir(definitions)),
        settings=settings,
        temporal=_Temporal(client, settings),
        max_upload_bytes=max_upload_bytes,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await runtime.temporal.get()
        except TemporalUnavailable as e:
            log.warning("%s (requests that need it answer 503 until it is back)", e.detail)
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        if triggers:
            runner = TriggerRunner(
                runtime.catalog,
                runtime.temporal.get,
                settings=settings,
                poll_seconds=poll_seconds,
            )
            task = asyncio.create_task(runner.run(stop), name="tideflow-triggers")
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        title="Tideflow",
        version="1",
        summary="Durable YAML workflows on Temporal: start, follow and operate runs.",
        lifespan=lifespan,
    )
    app.state.tideflow = runtime
    _install_error_handlers(app)
    _routes(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, error: ApiError) -> JSONResponse:
        return _error_response(error)

    @app.exception_handler(DefinitionError)
    async def _definition(request: Request, error: DefinitionError) -> JSONResponse:
        return _error_response(_definition_error(error))

    @app.exception_handler(InputError)
    async def _inputs(request: Request, error: InputError) -> JSONResponse:
        return _error_response(ApiError(422, "invalid inputs", input_problems(error)))

    @app.exception_handler(tideflow.ControlError)
    async def _refused(request: Request, error: tideflow.ControlError) -> JSONResponse:
        return _error_response(ApiError(409, str(error)))

    @app.exception_handler(RPCError)
    async def _rpc(request: Request, error: RPCError) -> JSONResponse:
        return _error_response(_rpc_error(error))

    @app.exception_handler(WorkflowAlreadyStartedError)
    async def _started(request: Request, error: WorkflowAlreadyStartedError) -> JSONResponse:
        return _error_response(ApiError(409, f"a run with id {error.workflow_id!r} exists"))

    @app.exception_handler(WorkflowQueryFailedError)
    async def _query(request: Request, error: WorkflowQueryFailedError) -> JSONResponse:
        return _error_response(ApiError(502, f"the run could not answer: {error.message}"))

    @app.exception_handler(RequestValidationError)
    async def _request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems: list[ProblemOut | FieldProblem] = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()))
            message = str(item.get("msg", "invalid"))
            problems.append(FieldProblem(field=where, message=message, text=f"{where}: {message}"))
        return _error_response(ApiError(422, "invalid request", problems))


def _runtime(request: Request) -> _Runtime:
    runtime: _Runtime = request.app.state.tideflow
    return runtime


async def _client(request: Request) -> Client:
    return await _runtime(request).temporal.get()


Runtime = Annotated[_Runtime, Depends(_runtime)]
Temporal = Annotated[Client, Depends(_client)]


def _entry(runtime: _Runtime, slug: str) -> Entry:
    entry = runtime.catalog.get(slug)
    if entry is None:
        raise ApiError(404, f"no definition {slug!r} in {runtime.catalog.folder}")
    return entry


def _valid_definition(runtime: _Runtime, slug: str) -> Definition:
    entry = _entry(runtime, slug)
    if entry.definition is None or not entry.valid:
        raise ApiError(422, "invalid definition", [ProblemOut.of(p) for p in entry.problems])
    return entry.definition


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


def _started(
    workflow_id: str, run_id: str | None, slug: str, document: str | None = None
) -> RunStarted:
    return RunStarted(
        workflow_id=workflow_id,
        run_id=run_id,
        definition=slug,
        web_ui=tideflow.web_ui_url(workflow_id, run_id),
        document=document,
    )


async def _start(
    runtime: _Runtime,
    temporal: Client,
    definition: Definition,
    inputs: dict[str, Any],
    workflow_id: str | None,
    document: str | None = None,
) -> RunStarted:
    handle = await tideflow.start(
        temporal,
        definition,
        inputs,
        workflow_id=workflow_id,
        task_queue=runtime.settings.task_queue,
    )
    return _started(handle.id, handle.result_run_id, definition.slug, document)


def _upload_name(name: str | None) -> str:
    """The file name of an upload without any folder part (no escaping the upload folder)."""
    base = PurePosixPath((name or "").replace("\\", "/")).name.strip()
    return base if base and base not in (".", "..") else "upload"


def _document_trigger(
    entry: Entry, definition: Definition, name: str, mime: str
) -> DocumentUploadTrigger:
    triggers = [
        (i, t) for i, t in enumerate(definition.triggers) if isinstance(t, DocumentUploadTrigger)
    ]
    if not triggers:
        raise ApiError(422, f"definition {entry.slug!r} has no document_upload trigger")
    usable = [(i, t) for i, t in triggers if i not in entry.trigger_problems]
    if not usable:
        problems: list[ProblemOut | FieldProblem] = [
            ProblemOut.of(p) for i, _ in triggers for p in entry.trigger_problems[i]
        ]
        raise ApiError(422, "the document_upload trigger is inactive", problems)
    for _, trigger in usable:
        if matches_filter(trigger.filter, name, mime):
            return trigger
    accepted = "; or ".join(describe_filter(t.filter) for _, t in usable)
    raise ApiError(415, f"{name} ({mime}) does not pass the trigger's filter: accepted {accepted}")


async def _save_upload(upload: UploadFile, target: Path, limit: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with target.open("wb") as out:
            while chunk := await upload.read(1024 * 1024):
                written += len(chunk)
                if written > limit:
                    raise ApiError(413, f"the document is larger than {limit} bytes")
                out.write(chunk)
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise


def _routes(app: FastAPI) -> None:
    @app.get(
        "/health",
        response_model=HealthOut,
        responses={503: {"model": HealthOut, "description": "Temporal is unreachable"}},
        tags=["api"],
    )
    async def health(runtime: Runtime) -> JSONResponse:
        """The API is up; ``temporal`` tells whether Temporal answers (503 when it does not)."""
        entries = runtime.catalog.entries()
        state = "ok"
        try:
            temporal = await runtime.temporal.get()
            await temporal.service_client.check_health(timeout=timedelta(seconds=5))
        except (ApiError, RPCError) as e:
            state = f"unreachable: {getattr(e, 'detail', None) or getattr(e, 'message', e)}"
        body = HealthOut(
            status="ok" if state == "ok" else "degraded",
            temporal=state,
            definitions=len(entries),
            invalid_definitions=sum(1 for e in entries if not e.valid),
        )
        return JSONResponse(body.model_dump(), status_code=200 if state == "ok" else 503)

    # -- definitions -------------------------------------------------------------------------

    @app.get("/definitions", response_model=list[DefinitionSummary], tags=["definitions"])
    async def list_definitions(runtime: Runtime) -> list[dict[str, Any]]:
        """Every definition file of the folder; invalid ones with their located problems."""
        return [_summary(entry) for entry in runtime.catalog.entries()]

    @app.get(
        "/definitions/{slug}",
        response_model=DefinitionDetail,
        responses=_ERRORS,
        tags=["definitions"],
    )
    async def get_definition(slug: str, runtime: Runtime) -> dict[str, Any]:
        """A definition as JSON, with its graph in Mermaid."""
        entry = _entry(runtime, slug)
        detail = _summary(entry)
        if entry.definition is not None and entry.valid:
            detail["definition"] = tideflow.definition_json(entry.definition)
            detail["mermaid"] = mermaid(entry.definition)
        return detail

    @app.post(
        "/definitions/{slug}/runs",
        status_code=201,
        response_model=RunStarted,
        responses=_ERRORS,
        tags=["runs"],
    )
    async def start_run(
        slug: str, body: StartRequest, runtime: Runtime, temporal: Temporal
    ) -> RunStarted:
        """Start a run of a definition of the folder (inputs are checked first)."""
        definition = _valid_definition(runtime, slug)
        return await _start(runtime, temporal, definition, body.inputs, body.workflow_id)

    @app.post(
        "/definitions/{slug}/documents",
        status_code=201,
        response_model=RunStarted,
        responses={**_ERRORS, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
        tags=["runs"],
    )
    async def upload_document(
        slug: str,
        runtime: Runtime,
        temporal: Temporal,
        file: Annotated[UploadFile, File(description="the document")],
        inputs: Annotated[str | None, Form(description="more inputs, as a JSON object")] = None,
        workflow_id: Annotated[str | None, Form()] = None,
    ) -> RunStarted:
        """Upload a document: it is saved under ``<TIDEFLOW_HOME>/uploads/<uuid>/<name>``,
        checked against the definition's document_upload trigger filter, and a run starts with
        ``inputs.<trigger.input>`` set to its path."""
        definition = _valid_definition(runtime, slug)
        entry = _entry(runtime, slug)
        name = _upload_name(file.filename)
        mime = guess_mime(name, file.content_type)
        trigger = _document_trigger(entry, definition, name, mime)
        extra: Any = {}
        if inputs:
            try:
                extra = json.loads(inputs)
            except ValueError as e:
                raise ApiError(
                    422,
                    "invalid request",
                    [FieldProblem(field="inputs", message=str(e), text=f"inputs: {e}")],
                ) from None
            if not isinstance(extra, dict):
                message = "must be a JSON object"
                raise ApiError(
                    422,
                    "invalid request",
                    [FieldProblem(field="inputs", message=message, text=f"inputs: {message}")],
                )
        target = (runtime.settings.home / "uploads" / uuid.uuid4().hex / name).resolve()
        run_inputs = {**trigger.inputs, **extra, trigger.input: str(target)}
        resolve_inputs(definition, run_inputs)  # refuse bad inputs before saving anything
        await _save_upload(file, target, runtime.max_upload_bytes)
        try:
            return await _start(
                runtime, temporal, definition, run_inputs, workflow_id, document=str(target)
            )
        except BaseException:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise

    # -- runs --------------------------------------------------------------------------------

    @app.post("/runs", status_code=201, response_model=RunStarted, responses=_ERRORS, tags=["runs"])
    async def start_inline(
        body: InlineRunRequest, runtime: Runtime, temporal: Temporal
    ) -> RunStarted:
        """Start a run of a definition given in the request (YAML text or a JSON object)."""
        activities.load_extensions()
        if isinstance(body.definition, str):
            definition = load_string(body.definition, "<request>", activities.registry)
        else:
            definition = load_data(body.definition, "<request>", activities.registry)
        return await _start(runtime, temporal, definition, body.inputs, body.workflow_id)

    @app.get("/runs", response_model=list[tideflow.RunSummary], responses=_ERRORS, tags=["runs"])
    async def list_runs(
        temporal: Temporal,
        definition: Annotated[str | None, Query(description="a definition slug")] = None,
        status: Annotated[
            str | None,
            Query(description="running, paused, waiting, needs_attention, completed, failed, …"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[tideflow.RunSummary]:
        """Recent runs, newest first."""
        try:
            runs = await tideflow.list_runs(
                temporal, definition=definition, status=status, limit=limit
            )
        except ValueError as e:
            raise ApiError(
                422,
                "invalid request",
                [FieldProblem(field="status", message=str(e), text=f"status: {e}")],
            ) from None
        return runs

    @app.get("/runs/{workflow_id}", response_model=RunStateOut, responses=_ERRORS, tags=["runs"])
    async def run_state(workflow_id: str, temporal: Temporal) -> RunStateOut:
        """The live state of a run: status, node statuses, vars, history."""
        state = await tideflow.status(temporal, workflow_id)
        return RunStateOut(workflow_id=workflow_id, **state.model_dump())

    @app.get(
        "/runs/{workflow_id}/report",
        response_model=RunReport,
        responses=_ERRORS,
        tags=["runs"],
    )
    async def run_report(
        workflow_id: str,
        temporal: Temporal,
        wait: Annotated[bool, Query(description="wait until the run ends")] = False,
    ) -> RunReport:
        """The run report: final once the run has ended, so far while it runs (or, with
        ``wait=true``, once it ends)."""
        handle = temporal.get_workflow_handle(workflow_id)
        described = await handle.describe()
        if wait or described.status != WorkflowExecutionStatus.RUNNING:
            return await tideflow.result(temporal, workflow_id)
        return await handle.query(TideflowWorkflow.report)

    async def _signal(temporal: Client, workflow_id: str, action: str) -> ControlDone:
        if action == "pause":
            await tideflow.pause(temporal, workflow_id)
        elif action == "resume":
            await tideflow.resume(temporal, workflow_id)
        else:
            described = await temporal.get_workflow_handle(workflow_id).describe()
            if described.status != WorkflowExecutionStatus.RUNNING:
                status = described.status.name.lower() if described.status else "closed"
                raise ApiError(409, f"the run has ended ({status}): nothing to cancel")
            await tideflow.cancel(temporal, workflow_id)
        return ControlDone(workflow_id=workflow_id, action=action)

    @app.post(
        "/runs/{workflow_id}/pause", response_model=ControlDone, responses=_ERRORS, tags=["control"]
    )
    async def pause(workflow_id: str, temporal: Temporal) -> ControlDone:
        """Let running nodes finish and start nothing new."""
        return await _signal(temporal, workflow_id, "pause")

    @app.post(
        "/runs/{workflow_id}/resume",
        response_model=ControlDone,
        responses=_ERRORS,
        tags=["control"],
    )
    async def resume(workflow_id: str, temporal: Temporal) -> ControlDone:
        """Start again what became ready while paused."""
        return await _signal(temporal, workflow_id, "resume")

    @app.post(
        "/runs/{workflow_id}/cancel",
        response_model=ControlDone,
        responses=_ERRORS,
        tags=["control"],
    )
    async def cancel(workflow_id: str, temporal: Temporal) -> ControlDone:
        """Cancel a run: running nodes are cancelled and compensations run."""
        return await _signal(temporal, workflow_id, "cancel")

    def _answer(workflow_id: str, answer: ControlAnswer) -> ControlOut:
        return ControlOut(workflow_id=workflow_id, **answer.model_dump())

    @app.post(
        "/runs/{workflow_id}/skip", response_model=ControlOut, responses=_ERRORS, tags=["control"]
    )
    async def skip(workflow_id: str, body: SkipNode, temporal: Temporal) -> ControlOut:
        """Skip a pending or failed node; downstream nodes see ``output``."""
        answer = await tideflow.skip(temporal, workflow_id, body.node, body.output)
        return _answer(workflow_id, answer)

    @app.post(
        "/runs/{workflow_id}/retry", response_model=ControlOut, responses=_ERRORS, tags=["control"]
    )
    async def retry(workflow_id: str, body: RetryNode, temporal: Temporal) -> ControlOut:
        """Run a node that needs attention again."""
        return _answer(workflow_id, await tideflow.retry(temporal, workflow_id, body.node))

    @app.post(
        "/runs/{workflow_id}/vars", response_model=ControlOut, responses=_ERRORS, tags=["control"]
    )
    async def set_vars(workflow_id: str, body: SetVars, temporal: Temporal) -> ControlOut:
        """Change a run's vars (type-checked against their declared values)."""
        return _answer(workflow_id, await tideflow.set_vars(temporal, workflow_id, body.values))

    @app.post(
        "/runs/{workflow_id}/approve",
        response_model=ControlOut,
        responses=_ERRORS,
        tags=["control"],
    )
    async def approve(workflow_id: str, body: Approve, temporal: Temporal) -> ControlOut:
        """Approve or reject a waiting approval node."""
        answer = await tideflow.approve(
            temporal, workflow_id, body.node, body.approved, body.comment, body.by
        )
        return _answer(workflow_id, answer)

    # -- events ------------------------------------------------------------------------------

    @app.post("/events/{name}", response_model=EventOut, responses=_ERRORS, tags=["events"])
    async def emit(name: str, body: EventRequest, runtime: Runtime, temporal: Temporal) -> EventOut:
        """Deliver an event to the open runs, then start a run of every definition with an
        ``event`` trigger of that name (``inputs.event`` = the payload)."""
        # Delivered first, so the runs the event starts do not also receive it as a signal.
        delivered = await tideflow.emit_event(
            temporal, name, body.payload, correlation=body.correlation
        )
        starts = await start_runs_for_event(
            temporal,
            runtime.catalog,
            name,
            body.payload,
            task_queue=runtime.settings.task_queue,
            key=body.key,
        )
        return EventOut(
            delivered=delivered,
            started=[
                _started(r.workflow_id, r.run_id, r.definition) for r in starts.started if r.new
            ],
            already_started=[r.workflow_id for r in starts.started if not r.new],
            refused=[
                RefusedOut(definition=r.definition, problems=r.problems) for r in starts.refused
            ],
        )


def serve(
    definitions: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    triggers: bool = True,
    poll_seconds: float = 2.0,
) -> None:
    """Run the API with uvicorn until interrupted."""
    import uvicorn

    app = create_app(definitions, triggers=triggers, poll_seconds=poll_seconds)
    uvicorn.run(app, host=host, port=port, log_level="info")


__all__ = ["ApiError", "ErrorOut", "create_app", "input_problems", "serve"]
