"""The API's one error shape, ``{"detail": "...", "problems": [...]}``, and the handlers that turn
every error a route may raise (definition and input problems, refused control requests, Temporal
errors, malformed requests) into it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Route
from temporalio.client import WorkflowQueryFailedError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from interpreter import DefinitionError, Problem
from interpreter.inputs import InputError
from starter import client as tideflow


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


def field_error(field: str, message: str) -> ApiError:
    """A 422 naming one request field."""
    problem = FieldProblem(field=field, message=message, text=f"{field}: {message}")
    return ApiError(422, "invalid request", [problem])


def definition_error(error: DefinitionError) -> ApiError:
    """A 422 listing every located problem of a definition."""
    problems: list[ProblemOut | FieldProblem] = [ProblemOut.of(p) for p in error.problems]
    return ApiError(422, "invalid definition", problems)


def rpc_error(error: RPCError) -> ApiError:
    """The answer to a Temporal RPC error."""
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


def error_response(error: ApiError) -> JSONResponse:
    """The JSON answer of an error."""
    body = ErrorOut(detail=error.detail, problems=error.problems)
    return JSONResponse(body.model_dump(mode="json"), status_code=error.status)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "malformed request (a body that is not UTF-8 JSON, an argument Temporal refuses)"),
        (404, "unknown definition or run"),
        (409, "refused by the run, or an Idempotency-Key used for another request"),
        (413, "the request body is too large"),
        (422, "invalid definition, inputs or request"),
        (502, "Temporal or the run failed to answer"),
        (503, "Temporal is unreachable"),
        (504, "Temporal did not answer in time"),
    )
}
"""The error answers most routes document in the OpenAPI schema."""


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers, over all routes (Starlette's 405 names only
    those of the first route matching the path: ``POST`` for ``/runs``, which also has ``GET``)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error a route raises in the one error shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(DefinitionError)
    async def _definition(request: Request, error: DefinitionError) -> JSONResponse:
        return error_response(definition_error(error))

    @app.exception_handler(InputError)
    async def _inputs(request: Request, error: InputError) -> JSONResponse:
        return error_response(ApiError(422, "invalid inputs", input_problems(error)))

    @app.exception_handler(tideflow.ControlError)
    async def _refused(request: Request, error: tideflow.ControlError) -> JSONResponse:
        return error_response(ApiError(409, str(error)))

    @app.exception_handler(RPCError)
    async def _rpc(request: Request, error: RPCError) -> JSONResponse:
        return error_response(rpc_error(error))

    @app.exception_handler(WorkflowAlreadyStartedError)
    async def _started(request: Request, error: WorkflowAlreadyStartedError) -> JSONResponse:
        return error_response(ApiError(409, f"a run with id {error.workflow_id!r} exists"))

    @app.exception_handler(WorkflowQueryFailedError)
    async def _query(request: Request, error: WorkflowQueryFailedError) -> JSONResponse:
        return error_response(ApiError(502, f"the run could not answer: {error.message}"))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        response = error_response(ApiError(error.status_code, str(error.detail)))
        response.headers.update(error.headers or {})
        if error.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response

    @app.exception_handler(RequestValidationError)
    async def _request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems: list[ProblemOut | FieldProblem] = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()))
            message = str(item.get("msg", "invalid"))
            problems.append(FieldProblem(field=where, message=message, text=f"{where}: {message}"))
        return error_response(ApiError(422, "invalid request", problems))
