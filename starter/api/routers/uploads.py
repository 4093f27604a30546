"""``POST /definitions/{slug}/documents``: upload a document and start a run of the
definition's document_upload trigger with its path."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile

from interpreter import Definition
from interpreter.inputs import resolve_inputs
from interpreter.model import DocumentUploadTrigger
from starter._catalog import Entry
from starter.api import starting
from starter.api.errors import (
    ERROR_RESPONSES,
    ApiError,
    ErrorOut,
    FieldProblem,
    ProblemOut,
    field_error,
)
from starter.api.idempotency import Idempotency, IdempotencyKeyParam
from starter.api.models import RunStarted
from starter.api.permissions import IdentityParam
from starter.api.runtime import RuntimeParam
from starter.api.starting import EARLIER_RUN
from starter.triggers import describe_filter, guess_mime, matches_filter

router = APIRouter(tags=["runs"])


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


def _extra_inputs(inputs: str | None) -> dict[str, Any]:
    if not inputs:
        return {}
    try:
        extra = json.loads(inputs)
    except ValueError as e:
        raise field_error("inputs", str(e)) from None
    if not isinstance(extra, dict):
        raise field_error("inputs", "must be a JSON object")
    return extra


async def _save_upload(upload: UploadFile, target: Path, limit: int) -> str:
    """Save the document and return its sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    digest = hashlib.sha256()
    try:
        with target.open("wb") as out:
            while chunk := await upload.read(1024 * 1024):
                written += len(chunk)
                if written > limit:
                    raise ApiError(413, f"the document is larger than {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise
    return digest.hexdigest()


@router.post(
    "/definitions/{slug}/documents",
    status_code=201,
    response_model=RunStarted,
    responses={
        **ERROR_RESPONSES,
        **EARLIER_RUN,
        413: {"model": ErrorOut, "description": "the document is too large"},
        415: {"model": ErrorOut, "description": "the trigger's filter refuses the document"},
    },
)
async def upload_document(
    slug: str,
    runtime: RuntimeParam,
    identity: IdentityParam,
    response: Response,
    file: Annotated[UploadFile, File(description="the document")],
    inputs: Annotated[str | None, Form(description="more inputs, as a JSON object")] = None,
    workflow_id: Annotated[str | None, Form()] = None,
    idempotency_key: IdempotencyKeyParam = None,
) -> RunStarted | Response:
    """Upload a document: it is saved under ``<TIDEFLOW_HOME>/uploads/<uuid>/<name>``,
    checked against the definition's document_upload trigger filter, and a run starts with
    ``inputs.<trigger.input>`` set to its path (202 while the start waits in the outbox: the
    document is kept for it)."""
    definition = runtime.valid_definition(slug)
    entry = runtime.entry(slug)
    name = _upload_name(file.filename)
    mime = guess_mime(name, file.content_type)
    trigger = _document_trigger(entry, definition, name, mime)
    extra = _extra_inputs(inputs)
    target = (runtime.settings.home / "uploads" / uuid.uuid4().hex / name).resolve()
    run_inputs = {**trigger.inputs, **extra, trigger.input: str(target)}
    resolve_inputs(definition, run_inputs)  # refuse bad inputs before saving anything
    digest = await _save_upload(file, target, runtime.limits.max_upload_bytes)
    request = {
        "start": "upload",
        "slug": slug,
        "inputs": extra,
        "workflow_id": workflow_id,
        "file": name,
        "sha256": digest,
    }
    try:
        started = await starting.start_run(
            runtime,
            definition,
            run_inputs,
            workflow_id,
            document=str(target),
            idempotency=Idempotency.of(idempotency_key, request),
            source="upload",
            caller=identity,
        )
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise
    if started.document != str(target):  # the earlier request's copy is the one its run reads
        shutil.rmtree(target.parent, ignore_errors=True)
    return started.answer(response)
