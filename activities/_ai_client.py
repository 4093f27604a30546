"""One chat completion for the AI family: the model's provider, structured output, repairs,
budgets, errors.

:func:`session` picks the model a node uses (:mod:`activities._models`) and its provider: an
OpenAI-compatible endpoint's client (one per endpoint and key, created once per worker through
``ctx.resources``) or a local model served by xllamacpp (:mod:`activities._local_model`),
loaded on first use and kept warm by :class:`LocalModels`, at most ``ai.max_local_models`` at
once. Replies to a JSON Schema are parsed and validated here; a reply
that does not fit is sent back to the model with the problem, ``schema_repairs`` times at most.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from temporalio.exceptions import ApplicationError

from activities._context import NodeContext
from activities._local_model import LocalModelServer, model_file
from activities._models import OPENAI_BASE_URL, ModelChoice, Target, Task, choose
from activities.errors import PermanentNodeError, RetryableNodeError
from activities.settings import AISettings, WorkerSettings
from interpreter.node_io import BUDGET_EXCEEDED

if TYPE_CHECKING:
    from jsonschema.protocols import Validator
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion

T = TypeVar("T")

LOCAL_DEFAULT_MAX_TOKENS = 1024
# Statuses another attempt may not see again (the openai client retries the same ones).
_RETRYABLE_STATUS = frozenset({408, 409, 429})
_HEARTBEAT_SECONDS = 5.0
_FENCE = re.compile(r"^```[A-Za-z]*\s*(.*?)\s*```$", re.DOTALL)


@dataclass
class Provider:
    """Where chat completions go: an endpoint's client, or a loaded local model's."""

    name: str
    """``openai-compatible:<host>`` or ``local:<model>``: named in every output."""
    client: AsyncOpenAI
    base_url: str
    timeout: float
    local: LocalModelServer | None = None


@dataclass
class Answer:
    """A model's reply: text, or the parsed JSON when a schema was asked for."""

    text: str
    data: Any
    model: str
    provider: str
    finish_reason: str | None = None
    logprobs: list[Any] | None = None
    """The reply's token log-probabilities (``logprobs.content``) when asked and given."""
    fallback_from: str | None = None
    """What the node asked for, when its ``fallback_model`` answered instead."""


@dataclass
class Session:
    """One node's use of a model: the chosen target and its provider (see :func:`session`)."""

    target: Target
    provider: Provider
    fallback_from: str | None = None

    @property
    def local(self) -> bool:
        """Whether a local model answers (bounded strings, no cost)."""
        return self.provider.local is not None


@asynccontextmanager
async def session(
    ctx: NodeContext,
    requested: str | ModelChoice | dict[str, Any] | None,
    *,
    task: Task,
    fallback: str | None = None,
    prompt_chars: int = 0,
    max_tokens: int = 0,
) -> AsyncIterator[Session]:
    """The model a node uses (:func:`activities._models.choose`), ready to answer: a local
    model stays loaded (and counted among the resident ones) until the block ends."""
    ai = ctx.settings.ai
    chosen = choose(
        requested,
        task=task,
        ai=ai,
        fallback=fallback,
        prompt_tokens=estimate_tokens(prompt_chars),
        max_tokens=max_tokens,
    )
    target = chosen.target
    if target.local is not None:
        pool = await ctx.resources.get("ai.local", lambda: LocalModels(ctx.settings), _close_pool)
        async with pool.use(target.local) as found:
            yield Session(target, found, chosen.fallback_from)
        return
    found = await ctx.resources.get(
        f"ai.endpoint:{target.base_url}:{_key_id(target.api_key)}",
        lambda: _open_endpoint(target, ai),
        close=_close,
    )
    yield Session(target, found, chosen.fallback_from)


def estimate_tokens(chars: int) -> int:
    """Tokens a prompt of ``chars`` characters takes, roughly (4 characters a token)."""
    return (chars + 3) // 4


def _key_id(api_key: str | None) -> str:
    # Keys a cached client by its key without keeping the key in the name.
    return hashlib.sha256((api_key or "").encode()).hexdigest()[:12]


def _open_endpoint(target: Target, ai: AISettings) -> Provider:
    from openai import AsyncOpenAI

    base_url = target.base_url or OPENAI_BASE_URL
    client = AsyncOpenAI(
        base_url=base_url,
        # The client insists on a key; many self-hosted endpoints ignore it.
        api_key=target.api_key or "unused",
        timeout=ai.request_timeout_seconds,
        max_retries=0,  # Temporal retries the activity; one request per attempt.
    )
    host = urlsplit(base_url).netloc or base_url
    return Provider(
        name=f"openai-compatible:{host}",
        client=client,
        base_url=base_url,
        timeout=ai.request_timeout_seconds,
    )


class LocalModels:
    """The worker's loaded local models: loaded on first use, kept warm, at most
    ``ai.max_local_models`` at once (the least recently used idle one is unloaded first; a
    node needing another model waits while every loaded one is answering)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self._settings = settings
        self._loaded: OrderedDict[str, Provider] = OrderedDict()
        self._users: dict[str, int] = {}
        self._changed = asyncio.Condition()

    @property
    def resident(self) -> list[str]:
        """The keys of the loaded models, least recently used first."""
        return list(self._loaded)

    @asynccontextmanager
    async def use(self, key: str) -> AsyncIterator[Provider]:
        """The provider of local model ``key``, loaded (and kept) for the block."""
        limit = self._settings.ai.max_local_models
        async with self._changed:
            while key not in self._loaded and len(self._loaded) >= limit:
                idle = [k for k in self._loaded if not self._users.get(k)]
                if idle:
                    await _close(self._loaded.pop(idle[0]))
                    break
                await self._changed.wait()
            if key not in self._loaded:
                # Loaded under the lock: two nodes never load two copies, and memory stays
                # bounded while a model loads.
                self._loaded[key] = await _open_local(self._settings, key)
            self._loaded.move_to_end(key)
            self._users[key] = self._users.get(key, 0) + 1
            found = self._loaded[key]
        try:
            yield found
        finally:
            async with self._changed:
                self._users[key] -= 1
                self._changed.notify_all()

    async def aclose(self) -> None:
        """Unload every model."""
        while self._loaded:
            await _close(self._loaded.popitem()[1])


async def _close_pool(pool: LocalModels) -> None:
    await pool.aclose()


async def _open_local(settings: WorkerSettings, local: str) -> Provider:
    from openai import AsyncOpenAI

    ai = settings.ai
    name, path = await asyncio.to_thread(model_file, local, settings.home)
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
        timeout=ai.local_request_timeout_seconds,
        max_retries=0,
    )
    return Provider(
        name=f"local:{name}",
        client=client,
        base_url=server.base_url,
        timeout=ai.local_request_timeout_seconds,
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
    using: Session,
    messages: list[dict[str, str]],
    *,
    temperature: float | None,
    max_tokens: int | None,
    schema: dict[str, Any] | None = None,
    schema_name: str = "output",
    options: dict[str, Any] | None = None,
    repairs: int | None = None,
) -> Answer:
    """Ask ``using``'s model; with ``schema`` the reply is parsed JSON that fits it (a reply
    that does not is sent back with the problem, ``repairs`` times, default
    ``ai.schema_repairs``).

    Usage (and cost, when the model's price is known) is added to ``ctx`` for every request,
    repairs included. Before each request, a node with a budget (``ctx.budget``) raises
    :data:`BUDGET_EXCEEDED` when the request could spend more than is left. Raises
    Retryable/PermanentNodeError per the provider's answer.
    """
    found, target = using.provider, using.target
    ai = ctx.settings.ai
    chosen = target.model_id
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
    allowed = ai.schema_repairs if repairs is None else repairs
    tries = 1 + max(allowed, 0) if schema is not None else 1
    problem = ""
    answered = chosen
    for _ in range(tries):
        check_budget(ctx, target, conversation, max_tokens)
        response = await _beating(ctx, _create(found, conversation, request))
        answered = response.model or chosen
        _record_usage(ctx, target, found, answered, response)
        if not response.choices:
            raise RetryableNodeError(f"model {chosen} at {found.name} answered with no choices")
        choice = response.choices[0]
        message = choice.message
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise PermanentNodeError(f"model {answered} at {found.name} refused: {refusal}")
        content = message.content or ""
        logprobs = choice.logprobs.content if choice.logprobs is not None else None
        reply = Answer(
            text=content,
            data=None,
            model=answered,
            provider=found.name,
            finish_reason=choice.finish_reason,
            logprobs=list(logprobs) if logprobs else None,
            fallback_from=using.fallback_from,
        )
        if check is None:
            return reply
        data, problem = _parse(content, check, choice.finish_reason, max_tokens)
        if not problem:
            reply.data = data
            return reply
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


def check_budget(
    ctx: NodeContext, target: Target, messages: list[dict[str, str]], max_tokens: int | None
) -> None:
    """Raise :data:`BUDGET_EXCEEDED` (non-retryable) when a request of ``messages`` with up to
    ``max_tokens`` could spend more than the node's budget has left."""
    budget = ctx.budget
    if budget is None:
        return
    prompt = estimate_tokens(sum(len(m.get("content") or "") for m in messages))
    most = prompt + (max_tokens or LOCAL_DEFAULT_MAX_TOKENS)
    used = ctx.usage.total_tokens if ctx.usage else 0
    spent = (ctx.usage.cost_usd or 0.0) if ctx.usage else 0.0
    if budget.tokens is not None and used + most > budget.tokens:
        raise ApplicationError(
            f"node {ctx.node_id!r}: the next call to {target.name} may use {most} tokens "
            f"({prompt} of prompt + {most - prompt} of answer) but the budget has "
            f"{max(budget.tokens - used, 0)} left",
            type=BUDGET_EXCEEDED,
            non_retryable=True,
        )
    cost = target.estimated_cost(prompt, most - prompt)
    if budget.cost_usd is not None and cost is not None and spent + cost > budget.cost_usd:
        raise ApplicationError(
            f"node {ctx.node_id!r}: the next call to {target.name} may cost ${cost:.4f} but "
            f"the budget has ${max(budget.cost_usd - spent, 0):.4f} left",
            type=BUDGET_EXCEEDED,
            non_retryable=True,
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
    target: Target,
    found: Provider,
    answered: str,
    response: ChatCompletion,
) -> None:
    usage = response.usage
    prompt = usage.prompt_tokens if usage else 0
    completion = usage.completion_tokens if usage else 0
    ctx.add_usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=target.estimated_cost(prompt, completion),
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
