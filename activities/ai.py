"""The ``ai`` family: extract, classify, summarize and free prompts, through the openai client.

Every node asks the worker's provider (an OpenAI-compatible endpoint, or the embedded local
model when the worker has neither ``OPENAI_API_KEY`` nor ``OPENAI_BASE_URL``; see
:mod:`activities._ai_client`), reports token usage, and names ``provider`` and ``model`` in its
output. Structured replies use JSON Schema structured outputs (``strict``); they are validated
on the way back and sent back to the model with the problem up to ``schema_repairs`` times.

Node settings (``model``, ``temperature``, ``max_tokens``) win over the worker's
(``AISettings``). The local provider serves one model: a node's ``model`` is then ignored and
the output names the local model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities._ai_client import Answer, chat, check_schema, provider
from activities._context import NodeContext
from activities._registry import node_type
from activities.errors import NodeConfigError

# Longest string the local model may write into one field: tiny models under constrained
# decoding can repeat a token until max_tokens and leave cut-off JSON; a bound stops that.
_LOCAL_MAX_LENGTH = 200
_MAX_LIST_ITEMS = 50
_LINE_ITEM_FIELDS = ("description", "quantity", "unit_price", "amount")


class _AIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str | None = None
    """Model name; default the worker's ``ai.model`` (ignored by the local provider)."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    """Most tokens the reply may use."""
    instructions: str | None = None
    """Extra guidance added to the system message."""


class ExtractConfig(_AIConfig):
    """Config of ``ai.extract``: named entities or a JSON Schema → ``{entities}``.

    Entity names become a schema of nullable strings (dates as ISO ``YYYY-MM-DD``); a name
    ``items`` or ending in ``_items`` / ``_lines`` (``line_items``) becomes a list of
    ``{description, quantity, unit_price, amount}``. A given ``schema`` is used as is (OpenAI's
    strict mode wants an object root, every property required and ``additionalProperties:
    false``). Temperature defaults to 0 and max_tokens to 1024.
    """

    text: str = Field(
        min_length=1,
        description="The text to read; default the only dependency's output.text (what "
        "documents.parse gives).",
        json_schema_extra={"default_expression": "${{ upstream.output.text }}"},
    )
    """The text to extract from."""
    entities: list[str] | None = None
    """Names of the values to find, e.g. ``[invoice_number, date, total_amount]``."""
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    """A JSON Schema the extracted object must fit (instead of ``entities``)."""

    @field_validator("entities")
    @classmethod
    def _names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None:
            _check_names(names, "entities")
        return names

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_schema(schema) if schema is not None else None

    @model_validator(mode="after")
    def _one_target(self) -> ExtractConfig:
        if (self.entities is None) == (self.json_schema is None):
            raise ValueError("give either entities or schema (one of them)")
        return self


class ClassifyConfig(_AIConfig):
    """Config of ``ai.classify``: one label out of ``labels`` → ``{label, confidence}``.

    ``confidence`` is the model's own estimate, between 0 and 1. Temperature defaults to 0.
    """

    text: str = Field(
        min_length=1,
        description="The text to read; default the only dependency's output.text (what "
        "documents.parse gives).",
        json_schema_extra={"default_expression": "${{ upstream.output.text }}"},
    )
    labels: list[str] = Field(min_length=2)
    """The labels to choose from; the reply is constrained to them."""

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        _check_names(labels, "labels")
        return labels


class SummarizeConfig(_AIConfig):
    """Config of ``ai.summarize``: ``{summary}``.

    With ``max_words`` the summary is cut to that many words if the model writes more.
    """

    text: str = Field(
        min_length=1,
        description="The text to read; default the only dependency's output.text (what "
        "documents.parse gives).",
        json_schema_extra={"default_expression": "${{ upstream.output.text }}"},
    )
    max_words: int | None = Field(default=None, gt=0)


class PromptParameters(BaseModel):
    """Sampling parameters (the seeds' ``parameters``); top-level ones win."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)


_SHORTHAND: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "string[]": {"type": "array", "items": {"type": "string"}},
    "number[]": {"type": "array", "items": {"type": "number"}},
}


class PromptConfig(BaseModel):
    """Config of ``ai.prompt``: a prompt → ``{text}``, or ``{json}`` with a schema.

    The prompt is ``prompt_template`` (or ``prompt``) with ``{{ name }}`` / ``{{ name.key }}``
    placeholders filled from ``variables``, then from ``input`` (its keys, or ``{{ input }}``
    itself; non-strings go in as JSON). When ``input`` is given and the template does not use
    it, it is appended after the prompt. Without a prompt, the prompt is ``input`` itself (JSON
    unless a string); a node with neither prompt nor input fails with a config error when it
    runs (its config still validates, as in the seeds' ``{model, max_tokens, temperature}``).

    ``output_schema`` (a JSON Schema) or ``output_mapping`` (field → ``string``, ``number``,
    ``integer``, ``boolean``, ``string[]``, ``number[]``, any of them with ``?`` for nullable,
    or a JSON Schema) asks for JSON that is validated, repaired, and returned as ``json``.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str | None = None
    """Model name; default the worker's ``ai.model`` (ignored by the local provider)."""
    prompt_template: str | None = None
    prompt: str | None = None
    """Same as ``prompt_template``; give one of them."""
    system: str | None = None
    """The system message."""
    parameters: PromptParameters = Field(default_factory=PromptParameters)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    output_schema: dict[str, Any] | None = None
    output_mapping: dict[str, str | dict[str, Any]] | None = None
    input: Any = Field(
        default=None,
        json_schema_extra={
            "default_expression": "${{ upstream.output }}",
            "default_optional": True,
        },
    )
    """Data for the prompt (``{{ input }}``, ``{{ input.key }}`` or ``{{ key }}``); default
    the output of the node's only dependency, when it has exactly one."""
    variables: dict[str, Any] = Field(default_factory=dict)
    """Values for ``{{ name }}`` placeholders."""

    @field_validator("output_schema")
    @classmethod
    def _schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_schema(schema) if schema is not None else None

    @field_validator("output_mapping")
    @classmethod
    def _mapping(
        cls, mapping: dict[str, str | dict[str, Any]] | None
    ) -> dict[str, str | dict[str, Any]] | None:
        if mapping is not None:
            _mapping_schema(mapping)
        return mapping

    @model_validator(mode="after")
    def _exclusive(self) -> PromptConfig:
        if self.prompt_template is not None and self.prompt is not None:
            raise ValueError("give either prompt_template or prompt, not both")
        if self.output_schema is not None and self.output_mapping is not None:
            raise ValueError("give either output_schema or output_mapping, not both")
        return self

    def output_json_schema(self) -> dict[str, Any] | None:
        """The schema the reply must fit, if any."""
        if self.output_mapping is not None:
            return _mapping_schema(self.output_mapping)
        return self.output_schema


@node_type("ai.extract", ExtractConfig)
async def extract(config: ExtractConfig, ctx: NodeContext) -> dict[str, Any]:
    """Extract named entities (or an object fitting a JSON Schema) from text."""
    found = await provider(ctx)
    if config.json_schema is not None:
        schema = config.json_schema
        ask = (
            "Reply with one JSON object that fits this JSON Schema: "
            f"{json.dumps(schema, ensure_ascii=False)}"
        )
    else:
        assert config.entities is not None
        schema = entity_schema(config.entities, bounded=found.local is not None)
        ask = _entity_request(config.entities)
    system = "You extract data from documents. " + ask + _more(config.instructions)
    answer = await chat(
        ctx,
        [{"role": "system", "content": system}, {"role": "user", "content": config.text}],
        model=config.model,
        temperature=_default(config.temperature, 0.0),
        max_tokens=config.max_tokens or 1024,
        schema=schema,
        schema_name="extraction",
    )
    return {"entities": answer.data, **_names(answer)}


@node_type("ai.classify", ClassifyConfig)
async def classify(config: ClassifyConfig, ctx: NodeContext) -> dict[str, Any]:
    """Put text into one of the given labels, with the model's confidence."""
    schema = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": config.labels},
            "confidence": {"type": "number"},
        },
        "required": ["label", "confidence"],
        "additionalProperties": False,
    }
    labels = ", ".join(json.dumps(label, ensure_ascii=False) for label in config.labels)
    system = (
        f"You classify texts. Choose the one label that fits the text best among: {labels}. "
        'Reply with JSON: {"label": the label, "confidence": how sure you are, from 0 to 1}.'
        + _more(config.instructions)
    )
    answer = await chat(
        ctx,
        [{"role": "system", "content": system}, {"role": "user", "content": config.text}],
        model=config.model,
        temperature=_default(config.temperature, 0.0),
        max_tokens=config.max_tokens or 100,
        schema=schema,
        schema_name="classification",
    )
    confidence = min(max(float(answer.data["confidence"]), 0.0), 1.0)
    return {"label": answer.data["label"], "confidence": confidence, **_names(answer)}


@node_type("ai.summarize", SummarizeConfig)
async def summarize(config: SummarizeConfig, ctx: NodeContext) -> dict[str, Any]:
    """Summarize text, in at most ``max_words`` words when given."""
    length = f" in at most {config.max_words} words" if config.max_words else " briefly"
    system = f"Summarize the text{length}. Reply with the summary only." + _more(
        config.instructions
    )
    max_tokens = config.max_tokens or (config.max_words * 2 + 32 if config.max_words else 512)
    answer = await chat(
        ctx,
        [{"role": "system", "content": system}, {"role": "user", "content": config.text}],
        model=config.model,
        temperature=_default(config.temperature, 0.0),
        max_tokens=max_tokens,
    )
    summary = answer.text.strip()
    if config.max_words:
        words = summary.split()
        if len(words) > config.max_words:
            summary = " ".join(words[: config.max_words])
    return {"summary": summary, **_names(answer)}


@node_type("ai.prompt", PromptConfig)
async def prompt(config: PromptConfig, ctx: NodeContext) -> dict[str, Any]:
    """Send a prompt (a template filled from variables and input); text or validated JSON."""
    messages = []
    if config.system:
        messages.append({"role": "system", "content": config.system})
    messages.append({"role": "user", "content": _prompt_text(config)})
    parameters = config.parameters
    options = {
        key: value
        for key, value in parameters.model_dump(
            exclude={"temperature", "max_tokens"}, exclude_none=True
        ).items()
    }
    schema = config.output_json_schema()
    answer = await chat(
        ctx,
        messages,
        model=config.model,
        temperature=_default(config.temperature, parameters.temperature),
        max_tokens=config.max_tokens or parameters.max_tokens,
        schema=schema,
        options=options,
    )
    if schema is not None:
        return {"json": answer.data, **_names(answer)}
    return {"text": answer.text, **_names(answer)}


def entity_schema(names: list[str], *, bounded: bool) -> dict[str, Any]:
    """The JSON Schema of an extraction of ``names`` (see :class:`ExtractConfig`).

    ``bounded`` adds ``maxLength`` to strings, for the local model (OpenAI's strict mode does
    not take it).
    """

    def value(name: str) -> dict[str, Any]:
        if _is_amount(name):
            # A number, not text: "net amount: 4,399.00 EUR" cannot pass for a total.
            return {"type": ["number", "null"]}
        field: dict[str, Any] = {"type": ["string", "null"]}
        if _is_date(name):
            field["format"] = "date"
        if bounded:
            field["maxLength"] = _LOCAL_MAX_LENGTH
        return field

    properties: dict[str, Any] = {}
    for name in names:
        if _is_list(name):
            properties[name] = {
                "type": "array",
                "maxItems": _MAX_LIST_ITEMS,
                "items": _object({field: value(field) for field in _LINE_ITEM_FIELDS}),
            }
        else:
            properties[name] = value(name)
    return _object(properties)


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _entity_request(names: list[str]) -> str:
    keys = ", ".join(names)
    lists = [name for name in names if _is_list(name)]
    dates = [name for name in names if _is_date(name)]
    request = (
        f"Reply with one JSON object with exactly these keys: {keys}. "
        "Copy each value as it is written in the text; use null when the text does not give it."
    )
    if dates:
        request += f" Write {', '.join(dates)} as YYYY-MM-DD."
    amounts = [name for name in names if _is_amount(name)]
    if amounts:
        request += f" Write {', '.join(amounts)} as plain numbers, like 1234.5."
    if lists:
        request += (
            f" {', '.join(lists)}: a list with one entry per line of the document "
            f"({', '.join(_LINE_ITEM_FIELDS)})."
        )
    return request


def _is_list(name: str) -> bool:
    lowered = name.lower()
    return lowered in ("items", "lines") or lowered.endswith(("_items", "_lines"))


def _is_date(name: str) -> bool:
    return "date" in name.lower()


_AMOUNT_WORDS = ("amount", "total", "price", "cost", "tax", "quantity", "qty")


def _is_amount(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _AMOUNT_WORDS)


def _mapping_schema(mapping: dict[str, str | dict[str, Any]]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, spec in mapping.items():
        if isinstance(spec, dict):
            properties[name] = check_schema(spec)
            continue
        base, nullable = spec.removesuffix("?"), spec.endswith("?")
        if base not in _SHORTHAND:
            known = ", ".join(_SHORTHAND)
            raise ValueError(f"output_mapping.{name}: unknown type {spec!r} (known: {known})")
        field = dict(_SHORTHAND[base])
        if nullable:
            field["type"] = [field["type"], "null"]
        properties[name] = field
    return _object(properties)


def _prompt_text(config: PromptConfig) -> str:
    template = config.prompt_template if config.prompt_template is not None else config.prompt
    if template is None:
        if config.input is None:
            raise NodeConfigError(
                "nothing to ask: give prompt_template (or prompt), or input to send as the prompt"
            )
        return _as_text(config.input)
    names: dict[str, Any] = {}
    if isinstance(config.input, dict):
        names.update(config.input)
    names.update(config.variables)
    if config.input is not None:
        names["input"] = config.input
    text, used = render_template(template, names)
    input_keys = set(config.input) if isinstance(config.input, dict) else set()
    if config.input is not None and not used & (input_keys | {"input"}):
        text += "\n\n" + _as_text(config.input)
    return text


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")


def render_template(template: str, names: dict[str, Any]) -> tuple[str, set[str]]:
    """Fill ``{{ name }}`` / ``{{ name.key.0 }}`` placeholders; returns the root names used.

    Strings go in as they are, other values as JSON. An unknown name is a NodeConfigError.
    """
    used: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        path = match.group(1).split(".")
        if path[0] not in names:
            known = ", ".join(sorted(names)) or "none"
            raise NodeConfigError(
                f"the prompt refers to {{{{ {match.group(1)} }}}} but variables and input have "
                f"no {path[0]!r} (known: {known})"
            )
        value = names[path[0]]
        for key in path[1:]:
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                raise NodeConfigError(
                    f"the prompt refers to {{{{ {match.group(1)} }}}}: there is no {key!r}"
                )
        used.add(path[0])
        return _as_text(value)

    return _PLACEHOLDER.sub(fill, template), used


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)


def _check_names(names: list[str], what: str) -> None:
    if any(not name.strip() for name in names):
        raise ValueError(f"{what} must be non-empty strings")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} must be unique")


def _more(instructions: str | None) -> str:
    return f"\n{instructions}" if instructions else ""


def _default(value: float | None, default: float | None) -> float | None:
    return value if value is not None else default


def _names(answer: Answer) -> dict[str, str]:
    return {"provider": answer.provider, "model": answer.model}
