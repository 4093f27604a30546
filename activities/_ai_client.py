"""One chat completion for the AI family: provider choice, structured output, repairs, errors.

The provider is an OpenAI-compatible endpoint (``AISettings.base_url`` / ``api_key``) or, when
neither is set, the embedded local model (:mod:`activities._local_model`), created once per
worker through ``ctx.resources``. Replies to a JSON Schema are parsed and validated here; a reply
that does not fit is sent back to the model with the problem, ``schema_repairs`` times at most.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from activities._context import NodeContext
from activities._local_model import LocalModelServer, model_file
from activities.errors import PermanentNodeError, RetryableNodeError
from activities.settings import AISettings, WorkerSettings

if TYPE_CHECKING:
    from jsonschema.protocols import Validator
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion

T = TypeVar("T")

OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_REMOTE_MODEL = "gpt-4o-mini"
LOCAL_DEFAULT_MAX_TOKENS = 1024
# Statuses another attempt may not see again (the openai client retries the same ones).
_RETRYABLE_STATUS = frozenset({408, 409, 429})
_HEARTBEAT_SECONDS = 5.0
_FENCE = re.compile(r"^```[A-Za-z]*\s*(.*?)\s*```$", re.DOTALL)


@dataclass
class Provider:
    """Where chat completions go, shared by every AI node of a worker."""

    name: str
    """``openai-compatible:<host>`` or ``local:<model>``: named in every output."""
    client: AsyncOpenAI
    default_model: str
    base_url: str
    timeout: float
    local: LocalModelServer | None = None

    def model_for(self, requested: str | None) -> str:
        """The model to ask: the node's choice, except that a local server has one model."""
        if self.local is not None:
            return self.local.name
        return requested or self.default_model


@dataclass
class Answer:
    """A model's reply: text, or the parsed JSON when a schema was asked for."""

    text: str
    data: Any
    model: str
    provider: str


async def provider(ctx: NodeContext) -> Provider:
    """The worker's provider, created on first use and closed when the worker stops."""
    settings = ctx.settings
    return await ctx.resources.get("ai.provider", lambda: _open(settings), close=_close)


async def _open(settings: WorkerSettings) -> Provider:
    from openai import AsyncOpenAI

    ai = settings.ai
    if ai.base_url is None and ai.api_key is None:
        return await _open_local(settings)
    base_url = (ai.base_url or OPENAI_BASE_URL).rstrip("/")
    client = AsyncOpenAI(
        base_url=base_url,
        # The client insists on a key; many self-hosted endpoints ignore it.
        api_key=ai.api_key or "unused",
        timeout=ai.request_timeout_seconds,
        max_retries=0,  # Temporal retries the activity; one request per attempt.
    )
    host = urlsplit(base_url).netloc or base_url
    return Provider(
        name=f"openai-compatible:{host}",
        client=client,
        default_model=ai.model or DEFAULT_REMOTE_MODEL,
        base_url=base_url,
        timeout=ai.request_timeout_seconds,
    )


async def _open_local(settings: WorkerSettings) -> Provider:
    from openai import AsyncOpenAI

    ai = settings.ai
    name, path = await asyncio.to_thread(model_file, ai.local_model, settings.home)
    try:
        # Bounded: a model that does not load in time must fail the node, not hang the worker.
        server = await asyncio.wait_for(
            asyncio.to_thread(LocalModelServer.start, name, path), ai.request_timeout_seconds
        )
    except TimeoutError as e:
        raise RetryableNodeError(
            f"local model {name} ({path}) did not start within {ai.request_timeout_seconds:g} s"
        ) from e
    client = AsyncOpenAI(
        base_url=server.base_url,
        api_key="local",
        timeout=ai.request_timeout_seconds,
        max_retries=0,
    )
    return Provider(
        name=f"local:{name}",
        client=client,
        default_model=name,
        base_url=server.base_url,
        timeout=ai.request_timeout_seconds,
        local=server,
    )


async def _close(found: Provider) -> None:
    await found.client.close()
    if found.local is not None:
        await asyncio.to_thread(found.local.close)


def validator(schema: dict[str, Any]) -> Validator:
    """A JSON Schema validator that also checks ``format`` (dates, e-mails...)."""
    from jsonschema import Draft202012Validator, validators

    cls = validators.validator_for(schema, default=Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def check_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` if it is a valid JSON Schema; ValueError naming the problem otherwise."""
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import SchemaError

    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "root"
        raise ValueError(f"not a valid JSON Schema at {where}: {e.message}") from e
    return schema


async def chat(
    ctx: NodeContext,
    messages: list[dict[str, str]],
    *,
    model: str | None,
    temperature: float | None,
    max_tokens: int | None,
    schema: dict[str, Any] | None = None,
    schema_name: str = "output",
    options: dict[str, Any] | None = None,
) -> Answer:
    """Ask the worker's provider; with ``schema`` the reply is parsed JSON that fits it.

    Usage (and cost, when ``AISettings.prices`` has the model) is added to ``ctx`` for every
    request, repairs included. Raises Retryable/PermanentNodeError per the provider's answer.
    """
    found = await provider(ctx)
    chosen = found.model_for(model)
    ai = ctx.settings.ai
    request: dict[str, Any] = {"model": chosen, **(options or {})}
    if temperature is not None:
        request["temperature"] = temperature
    if max_tokens is None and found.local is not None:
        # Unbounded, a small local model may write until its context is full.
        max_tokens = LOCAL_DEFAULT_MAX_TOKENS
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    if schema is not None:
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": schema, "strict": True},
        }
    check = validator(schema) if schema is not None else None
    conversation = list(messages)
    tries = 1 + max(ai.schema_repairs, 0) if schema is not None else 1
    problem = ""
    answered = chosen
    for _ in range(tries):
        response = await _beating(ctx, _create(found, conversation, request))
        answered = response.model or chosen
        _record_usage(ctx, ai, found, chosen, answered, response)
        if not response.choices:
            raise RetryableNodeError(f"model {chosen} at {found.name} answered with no choices")
        choice = response.choices[0]
        message = choice.message
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise PermanentNodeError(f"model {answered} at {found.name} refused: {refusal}")
        content = message.content or ""
        if check is None:
            return Answer(text=content, data=None, model=answered, provider=found.name)
        data, problem = _parse(content, check, choice.finish_reason, max_tokens)
        if not problem:
            return Answer(text=content, data=data, model=answered, provider=found.name)
        conversation += [
            {"role": "assistant", "content": content},
            {
                "role": "user",
                "content": f"That reply is not valid: {problem}. "
                "Reply again with only the corrected JSON.",
            },
        ]
    raise PermanentNodeError(
        f"model {answered} at {found.name} gave no reply that fits the output schema in "
        f"{tries} tries ({tries - 1} repairs): {problem}"
    )


async def _beating(ctx: NodeContext, waiting: Awaitable[T]) -> T:
    """Await ``waiting`` while heartbeating, so a slow model does not miss a heartbeat timeout."""
    task = asyncio.ensure_future(waiting)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_HEARTBEAT_SECONDS)
            if done:
                return task.result()
            ctx.heartbeat()
    finally:
        task.cancel()


async def _create(
    found: Provider, messages: list[dict[str, str]], request: dict[str, Any]
) -> ChatCompletion:
    import openai

    who = f"model {request['model']} at {found.name}"
    try:
        return await found.client.chat.completions.create(messages=messages, **request)  # type: ignore[arg-type]
    except openai.APITimeoutError as e:
        raise RetryableNodeError(f"{who}: no answer within {found.timeout:g} s") from e
    except openai.APIConnectionError as e:
        cause = e.__cause__ or e
        raise RetryableNodeError(f"{who}: cannot connect to {found.base_url}: {cause}") from e
    except openai.APIStatusError as e:
        message = f"{who} answered HTTP {e.status_code}: {_api_message(e)}"
        if e.status_code in _RETRYABLE_STATUS or e.status_code >= 500:
            raise RetryableNodeError(message) from e
        raise PermanentNodeError(message) from e


def _api_message(error: Any) -> str:
    body = error.body
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail") or json.dumps(body)
    elif body:
        text = str(body)
    else:
        text = error.message
    return str(text)[:500]


def _record_usage(
    ctx: NodeContext,
    ai: AISettings,
    found: Provider,
    requested: str,
    answered: str,
    response: ChatCompletion,
) -> None:
    usage = response.usage
    prompt = usage.prompt_tokens if usage else 0
    completion = usage.completion_tokens if usage else 0
    price = ai.prices.get(requested) or ai.prices.get(answered)
    cost = (
        (prompt * price.input_per_million + completion * price.output_per_million) / 1e6
        if price is not None
        else None
    )
    ctx.add_usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost,
        provider=found.name,
        model=answered,
    )


def _parse(
    content: str, check: Validator, finish_reason: str | None, max_tokens: int | None
) -> tuple[Any, str]:
    """The JSON in ``content`` and "" if it fits, else None and what is wrong with it."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:  # endpoints without structured outputs often wrap JSON in a code fence
        text = fenced.group(1)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if finish_reason == "length":
            return None, f"the JSON was cut off at max_tokens={max_tokens} ({e.msg})"
        return None, f"not JSON ({e.msg} at line {e.lineno} column {e.colno}): {text[:200]!r}"
    errors = sorted(check.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return data, ""
    parts = []
    for error in errors[:3]:
        where = "/".join(str(p) for p in error.absolute_path) or "the reply"
        parts.append(f"{where}: {error.message}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return None, "; ".join(parts) + more
