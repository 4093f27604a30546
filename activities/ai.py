"""The ``ai`` family: extract, classify, summarize and free prompts, through the openai client.

Every node picks its model (``model``: a catalogue name, ``local:NAME`` or ``{prefer: [...],
max_cost_per_call, min_context}``; ``fallback_model`` when that is unavailable; without one the
per-task default, see :mod:`activities._models`), reports token usage and cost, and names the
``provider`` and ``model`` that answered in its output. Structured replies use JSON Schema
structured outputs (``strict``); they are validated on the way back and sent back to the model
with the problem up to ``schema_repairs`` times.

* ``ai.extract`` checks what it extracted (:mod:`activities._extraction_checks`: line items and
  totals that add up, dates that exist, the user's CEL ``checks``), asks the model once to
  correct what breaks a rule, and lists what still does in ``needs_review``.
* ``ai.classify`` constrains the label to the given ones and measures its confidence from token
  log-probabilities (or, where the server gives none, the agreement of several samples); below
  ``min_confidence`` a person reviews the label.
* ``ai.summarize`` returns complete sentences within ``max_words`` (a cut-off answer is asked
  again shorter) and, when asked, the key facts as a list.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from activities._ai_client import Answer, Session, chat, check_schema, session
from activities._context import NodeContext
from activities._extraction_checks import (
    DEFAULT_TOLERANCE,
    Check,
    Violation,
    compile_check,
    violations,
)
from activities._models import ModelChoice, check_model_name, choose
from activities._registry import node_type
from activities.errors import NodeConfigError
from interpreter.node_io import NodeResult, ReviewRequest

# Longest string the local model may write into one field: tiny models under constrained
# decoding can repeat a token until max_tokens and leave cut-off JSON; a bound stops that.
_LOCAL_MAX_LENGTH = 200
_MAX_LIST_ITEMS = 50
_LINE_ITEM_FIELDS = ("description", "quantity", "unit_price", "amount")
# What a reviewer sees of the document (the whole text may be large).
_REVIEW_TEXT_CHARS = 4000
_TEXT_FIELD_DESCRIPTION = (
    "The text to read; default the only dependency's output.text (what documents.parse gives)."
)


def _text_field() -> Any:
    return Field(
        min_length=1,
        description=_TEXT_FIELD_DESCRIPTION,
        json_schema_extra={"default_expression": "${{ upstream.output.text }}"},
    )


class _AIConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str | ModelChoice | None = None
    """A catalogue name, ``local:NAME``, or ``{prefer: [...], max_cost_per_call,
    min_context}``; default the worker's ``ai.model`` or the task's default local model."""
    fallback_model: str | None = None
    """The model to use when ``model`` is not available (instead of failing)."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    """Most tokens the reply may use."""
    instructions: str | None = None
    """Extra guidance added to the system message."""

    @field_validator("model", "fallback_model")
    @classmethod
    def _model_name(cls, value: Any) -> Any:
        return check_model_name(value) if isinstance(value, str) else value


class CheckSpec(BaseModel):
    """A check with its own message: ``{check: "entities.total_amount > 0", message: ...}``."""

    model_config = ConfigDict(extra="forbid")

    check: str
    message: str | None = None


def _compiles(check: str | CheckSpec) -> str | CheckSpec:
    compile_check(check if isinstance(check, str) else check.check)
    return check


CheckItem = Annotated[str | CheckSpec, AfterValidator(_compiles)]
"""A check, compiled when the config is validated (a located error at load time)."""


class PageText(BaseModel):
    """One page of a parsed document (``documents.parse``'s ``pages`` items)."""

    model_config = ConfigDict(extra="ignore")

    number: int
    text: str


class ExtractConfig(_AIConfig):
    """Config of ``ai.extract``: named entities or a JSON Schema → ``{entities, needs_review,
    problems}``.

    Entity names become a schema of nullable strings (dates as ISO ``YYYY-MM-DD``, amounts as
    numbers); a name ``items`` or ending in ``_items`` / ``_lines`` (``line_items``) becomes a
    list of ``{description, quantity, unit_price, amount}``. A given ``schema`` is used as is
    (OpenAI's strict mode wants an object root, every property required and
    ``additionalProperties: false``). Temperature defaults to 0 and max_tokens to 1024.

    The answer is checked: each line's quantity * unit price = amount, line amounts = subtotal,
    subtotal + tax = total (when those entities are asked), dates that exist, and ``checks``.
    A broken rule is sent back to the model once; what still breaks one is listed in
    ``needs_review`` (field names) and ``problems`` (in words).
    """

    text: str = _text_field()
    """The text to extract from."""
    entities: list[str] | None = None
    """Names of the values to find, e.g. ``[invoice_number, date, total_amount]``."""
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    """A JSON Schema the extracted object must fit (instead of ``entities``)."""
    checks: list[CheckItem] = Field(default_factory=list)
    """Rules as CEL over ``entities`` that must hold, e.g. ``entities.total_amount > 0.0``."""
    tolerance: float = Field(default=DEFAULT_TOLERANCE, ge=0)
    """How far sums may be off (absolute; or 0.01% of the value when larger)."""
    repair: bool = True
    """Ask the model once to correct an answer that breaks a rule."""
    review: bool = False
    """When fields still need review, wait for a person to confirm or correct the entities
    (like an approval) instead of passing them on flagged."""
    pages: list[str | PageText] | None = Field(
        default=None,
        json_schema_extra={
            # Any output: a parsed document's pages, else none (has() fails on a non-map).
            "default_expression": "${{ type(upstream.output) == type({}) && "
            "has(upstream.output.pages) ? upstream.output.pages : null }}",
            "default_optional": True,  # no single dependency: no pages, no error
        },
    )
    """The document's pages (``documents.parse``'s ``pages``; default the only dependency's):
    ``sources`` then names the page each extracted value was read from."""

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

    def compiled_checks(self) -> list[Check]:
        """The user's checks, compiled."""
        return [
            compile_check(c) if isinstance(c, str) else compile_check(c.check, c.message)
            for c in self.checks
        ]


class Label(BaseModel):
    """A label and what it means (the model reads the description)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str | None = None


class ClassifyConfig(_AIConfig):
    """Config of ``ai.classify``: one label out of ``labels`` → ``{label, confidence,
    confidence_from, scores}``.

    ``labels`` are names, ``{name, description}`` mappings, or one mapping of name →
    description. The reply is constrained to them. ``confidence`` (0 to 1) comes from the
    token log-probabilities of the label when the server gives them (``confidence_from:
    logprobs``; ``scores`` then holds every label's probability), otherwise from how many of
    ``samples`` answers agree (``samples``). Below ``min_confidence`` the node waits for a
    person to confirm or change the label (like an approval; the reviewer's label becomes the
    output). Temperature defaults to 0.
    """

    text: str = _text_field()
    labels: list[Label]
    """The labels to choose from; the reply is constrained to them."""
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    """Below this confidence a person reviews the label."""
    samples: int = Field(default=5, ge=2, le=20)
    """How many answers are compared when the server gives no log-probabilities."""
    approvers: list[str] = Field(default_factory=list)
    """Who may answer a review (anyone when empty)."""

    @field_validator("labels", mode="before")
    @classmethod
    def _label_forms(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [{"name": k, "description": v} for k, v in value.items()]
        if isinstance(value, list):
            out = []
            for item in value:
                if isinstance(item, dict) and len(item) == 1 and "name" not in item:
                    [(name, description)] = item.items()
                    out.append({"name": name, "description": description})
                elif isinstance(item, str):
                    out.append({"name": item})
                else:
                    out.append(item)
            return out
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[Label]) -> list[Label]:
        if len(labels) < 2:
            raise ValueError("give at least 2 labels")
        _check_names([label.name for label in labels], "labels")
        return labels


class SummarizeConfig(_AIConfig):
    """Config of ``ai.summarize``: ``{summary, key_facts?, words}``.

    The summary is complete sentences within ``max_words``: an answer that is cut off, too
    long or ends mid-sentence is asked again shorter (twice at most), and a last resort keeps
    only the complete sentences that fit. ``key_facts`` asks for the main facts as a list too.
    """

    text: str = _text_field()
    max_words: int | None = Field(default=None, gt=0)
    key_facts: bool | int = False
    """``true`` (up to 5) or how many key facts to list as ``key_facts``."""


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
    it, it is appended after the prompt.

    Without a prompt the node analyses a document: the text of ``input`` (its ``text``, as
    ``documents.parse`` gives it), else the document ``input`` names (``document``,
    ``document_url``, ``url``, ``uri``, ``source``, ``file`` or ``path``: read like
    ``documents.parse`` reads it), else ``input`` itself as JSON. ``input`` defaults to the
    dependency's output (the seeds' ``{model, max_tokens, temperature}`` step after an input
    step analyses the document the run was given).

    ``output_schema`` (a JSON Schema) or ``output_mapping`` (field → ``string``, ``number``,
    ``integer``, ``boolean``, ``string[]``, ``number[]``, any of them with ``?`` for nullable,
    or a JSON Schema) asks for JSON that is validated, repaired, and returned as ``json``.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str | ModelChoice | None = None
    """A catalogue name, ``local:NAME``, or ``{prefer: [...], max_cost_per_call,
    min_context}``; default the worker's ``ai.model`` or the task's default local model."""
    fallback_model: str | None = None
    """The model to use when ``model`` is not available (instead of failing)."""
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

    @field_validator("model", "fallback_model")
    @classmethod
    def _model_name(cls, value: Any) -> Any:
        return check_model_name(value) if isinstance(value, str) else value

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


# --- ai.extract --------------------------------------------------------------------------------


@node_type("ai.extract", ExtractConfig)
async def extract(config: ExtractConfig, ctx: NodeContext) -> Any:
    """Extract named entities (or an object fitting a JSON Schema) from text, checked."""
    max_tokens = config.max_tokens or 1024
    async with session(
        ctx,
        config.model,
        task="extract",
        fallback=config.fallback_model,
        prompt_chars=len(config.text),
        max_tokens=max_tokens,
    ) as using:
        if config.json_schema is not None:
            schema = config.json_schema
            ask = (
                "Reply with one JSON object that fits this JSON Schema: "
                f"{json.dumps(schema, ensure_ascii=False)}"
            )
        else:
            assert config.entities is not None
            schema = entity_schema(config.entities, bounded=using.local)
            ask = _entity_request(config.entities)
        system = "You extract data from documents. " + ask + _more(config.instructions)
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": config.text},
        ]
        options: dict[str, Any] = {
            "temperature": _default(config.temperature, 0.0),
            "max_tokens": max_tokens,
            "schema": schema,
            "schema_name": "extraction",
        }
        answer = await chat(ctx, using, messages, **options)
        checks = config.compiled_checks()
        entities = _without_summary_lines(answer.data, config.entities)
        broken = _violations(entities, checks, config.tolerance)
        repaired = False
        if broken and config.repair:
            # One targeted round: the model sees exactly which values do not add up.
            repair = [
                *messages,
                {"role": "assistant", "content": answer.text},
                {"role": "user", "content": _repair_request(broken)},
            ]
            answer = await chat(ctx, using, repair, **options)
            entities, repaired = _without_summary_lines(answer.data, config.entities), True
            broken = _violations(entities, checks, config.tolerance)
    fields = list(dict.fromkeys(f for v in broken for f in v.fields))
    output = {
        "entities": entities,
        "needs_review": fields,
        "problems": [v.message for v in broken],
        "repaired": repaired,
        "sources": field_sources(entities, answer.model, config.pages),
        **_names(answer),
    }
    if broken and config.review:
        return NodeResult(
            output=output,
            review=ReviewRequest(
                message="the extraction breaks rules: " + "; ".join(output["problems"]),
                field="entities",
                details={
                    "text": config.text[:_REVIEW_TEXT_CHARS],
                    "entities": entities,
                    "needs_review": fields,
                    "problems": output["problems"],
                    "model": answer.model,
                },
            ),
        )
    return output


def field_sources(
    entities: Any, model: str, pages: list[str | PageText] | None
) -> dict[str, dict[str, Any]]:
    """Per extracted field (lineage): the model that read it and, when the document has pages,
    the first page whose text shows its value (None when no page shows it as written)."""
    if not isinstance(entities, dict):
        return {}
    texts = [
        (page.number, _folded(page.text)) if isinstance(page, PageText) else (n, _folded(page))
        for n, page in enumerate(pages or [], start=1)
    ]
    sources: dict[str, dict[str, Any]] = {}
    for name, value in entities.items():
        source: dict[str, Any] = {"model": model}
        if texts:
            shown = [
                re.compile(rf"(?<![0-9a-z]){re.escape(form)}(?![0-9a-z])")
                for form in _shown_as(value)
                if form
            ]
            source["page"] = next(
                (n for n, text in texts if any(p.search(text) for p in shown)), None
            )
        sources[str(name)] = source
    return sources


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def _shown_as(value: Any) -> list[str]:
    """How a value may be printed in a document (a list: how its first item may be)."""
    if isinstance(value, list):
        return _shown_as(value[0]) if value else []
    if isinstance(value, dict):
        first = next((v for v in value.values() if isinstance(v, str) and v.strip()), None)
        return _shown_as(first) if first is not None else []
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        forms = {f"{value:,.2f}", f"{value:.2f}", f"{value:,}", str(value)}
        if float(value).is_integer():
            forms |= {f"{int(value):,}", str(int(value))}
        return sorted(forms, key=len, reverse=True)
    return [_folded(str(value))]


def _violations(entities: Any, checks: list[Check], tolerance: float) -> list[Violation]:
    if not isinstance(entities, dict):
        return []
    return violations(entities, checks=checks, tolerance=tolerance)


def _repair_request(broken: list[Violation]) -> str:
    problems = "\n".join(f"- {v.message}" for v in broken)
    return (
        "Some values in your answer do not agree with each other:\n"
        f"{problems}\n"
        "Read the document again and reply with the whole corrected JSON object. Copy every "
        "number exactly as the document prints it."
    )


# --- ai.classify -------------------------------------------------------------------------------


@node_type("ai.classify", ClassifyConfig)
async def classify(config: ClassifyConfig, ctx: NodeContext) -> Any:
    """Put text into one of the given labels, with a measured confidence."""
    names = [label.name for label in config.labels]
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": names}},
        "required": ["label"],
        "additionalProperties": False,
    }
    listed = "\n".join(
        f"- {label.name}" + (f": {label.description}" if label.description else "")
        for label in config.labels
    )
    system = (
        "You classify texts. Choose the one label that fits the text best among:\n"
        f"{listed}\n"
        'Reply with JSON: {"label": the label}.' + _more(config.instructions)
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": config.text}]
    max_tokens = config.max_tokens or 30
    async with session(
        ctx,
        config.model,
        task="classify",
        fallback=config.fallback_model,
        prompt_chars=len(system) + len(config.text),
        max_tokens=max_tokens,
    ) as using:
        answer = await chat(
            ctx,
            using,
            messages,
            temperature=_default(config.temperature, 0.0),
            max_tokens=max_tokens,
            schema=schema,
            schema_name="classification",
            options={"logprobs": True, "top_logprobs": min(20, max(5, len(names)))},
        )
        label = answer.data["label"]
        scores = label_scores(answer, label, names)
        if scores is not None:
            confidence, method = scores[label], "logprobs"
        else:
            confidence, method = await _agreement(ctx, using, messages, schema, label, config)
    output: dict[str, Any] = {
        "label": label,
        "confidence": round(confidence, 4),
        "confidence_from": method,
        **({"scores": scores} if scores is not None else {}),
        **_names(answer),
    }
    if config.min_confidence is not None and confidence < config.min_confidence:
        return NodeResult(
            output=output,
            review=ReviewRequest(
                message=(
                    f"the model is {confidence:.0%} sure the label is {label!r} "
                    f"(below min_confidence {config.min_confidence:.0%}): confirm or choose "
                    "another label"
                ),
                options=names,
                field="label",
                details={
                    "text": config.text[:_REVIEW_TEXT_CHARS],
                    "label": label,
                    "confidence": output["confidence"],
                    "scores": scores,
                    "model": answer.model,
                },
                approvers=config.approvers,
            ),
        )
    return output


def label_scores(answer: Answer, label: str, names: list[str]) -> dict[str, float] | None:
    """Each label's probability, from the log-probabilities of the token where the label's
    value starts (renormalised over the tokens that begin a label, times the chosen label's
    later tokens); None when the reply carries no usable log-probabilities."""
    tokens = answer.logprobs
    if not tokens:
        return None
    text = "".join(t.token for t in tokens)
    match = re.search(r'"label"\s*:\s*"', text)
    if match is None:
        return None
    start = match.end()
    position = 0
    for index, token in enumerate(tokens):  # noqa: B007 (index is used after the loop)
        end = position + len(token.token)
        if end > start:
            break
        position = end
    else:
        return None
    inside = start - position  # characters of this token before the label's value
    masses = dict.fromkeys(names, 0.0)
    for candidate in token.top_logprobs or []:
        piece = candidate.token[inside:] if len(candidate.token) > inside else ""
        if candidate.token[:inside] != token.token[:inside] or not piece:
            continue
        fitting = [n for n in names if (n + '"').startswith(piece) or piece.startswith(n)]
        for name in fitting:
            masses[name] += math.exp(candidate.logprob) / len(fitting)
    total = sum(masses.values())
    if total <= 0:
        return None
    scores = {name: mass / total for name, mass in masses.items()}
    # The chosen label's later tokens may still have hesitated (a shared first token).
    chosen_end = start + len(label)
    later = 0.0
    position = end
    for token in tokens[index + 1 :]:
        if position >= chosen_end:
            break
        later += token.logprob
        position += len(token.token)
    if later < 0:
        scores[label] *= math.exp(later)
    return {name: round(score, 4) for name, score in scores.items()}


async def _agreement(
    ctx: NodeContext,
    using: Session,
    messages: list[dict[str, str]],
    schema: dict[str, Any],
    label: str,
    config: ClassifyConfig,
) -> tuple[float, str]:
    """The share of ``config.samples`` answers (the first one included) that agree."""
    agree = 1
    for sample in range(1, config.samples):
        answer = await chat(
            ctx,
            using,
            messages,
            temperature=1.0,
            max_tokens=config.max_tokens or 30,
            schema=schema,
            schema_name="classification",
            options={"seed": sample},
        )
        agree += answer.data["label"] == label
    return agree / config.samples, "samples"


# --- ai.summarize ------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"""[.!?]["')\]]*$""")
_SENTENCE_SPLIT = re.compile(r"""(?<=[.!?])["')\]]*\s+""")
_FACTS_HEADING = re.compile(r"^\s*\**\s*key\s+facts\s*\**\s*:?\s*\**\s*$", re.IGNORECASE | re.M)
_SUMMARY_HEADING = re.compile(r"^\s*\**\s*summary\s*\**\s*:\s*\**\s*", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)\s*$")
_SUMMARY_TRIES = 3


@node_type("ai.summarize", SummarizeConfig)
async def summarize(config: SummarizeConfig, ctx: NodeContext) -> dict[str, Any]:
    """Summarize text in complete sentences, in at most ``max_words`` words when given."""
    facts = 5 if config.key_facts is True else int(config.key_facts or 0)
    target = config.max_words
    async with session(
        ctx,
        config.model,
        task="summarize",
        fallback=config.fallback_model,
        prompt_chars=len(config.text),
        max_tokens=_summary_tokens(config, target, facts),
    ) as using:
        for attempt in range(_SUMMARY_TRIES):
            answer = await chat(
                ctx,
                using,
                [
                    {"role": "system", "content": _summary_request(config, target, facts)},
                    {"role": "user", "content": config.text},
                ],
                temperature=_default(config.temperature, 0.0),
                max_tokens=_summary_tokens(config, target, facts),
            )
            summary, key_facts, listed = _split_summary(answer.text, facts)
            words = len(summary.split())
            ran_out = answer.finish_reason == "length"
            if ran_out and listed and key_facts:
                # Cut off among the facts, after a whole summary: only the last fact may be cut.
                key_facts, ran_out = key_facts[:-1], False
            cut = ran_out or not _SENTENCE_END.search(summary)
            too_long = config.max_words is not None and words > config.max_words
            if summary and not cut and not too_long:
                break
            if attempt + 1 < _SUMMARY_TRIES:
                # Shorter next time: a model that ran out of room writes less when asked less.
                target = max(int((target or words or 60) * 0.6), 5)
    summary = complete_sentences(summary, config.max_words)
    output: dict[str, Any] = {"summary": summary, "words": len(summary.split())}
    if facts:
        output["key_facts"] = key_facts
    return {**output, "attempts": attempt + 1, **_names(answer)}


def _summary_request(config: SummarizeConfig, target: int | None, facts: int) -> str:
    length = f"in at most {target} words" if target else "briefly"
    request = (
        f"Summarize the text {length}, in complete sentences. Keep the names, numbers and "
        "dates that matter."
    )
    if facts:
        request += (
            " Then write a line 'Key facts:' followed by at most "
            f"{facts} of the most important facts, one per line, each starting with '- '."
            " Start your reply with 'Summary: '."
        )
    else:
        request += " Reply with the summary only."
    return request + _more(config.instructions)


def _summary_tokens(config: SummarizeConfig, target: int | None, facts: int) -> int:
    if config.max_tokens:
        return config.max_tokens
    words = target or 150
    return int(words * 2 + 48 + facts * 60)


def _split_summary(text: str, facts: int) -> tuple[str, list[str], bool]:
    """The summary and the key facts of a reply (facts only when asked), and whether the
    reply got as far as the facts."""
    text = text.strip()
    if not facts:
        return _SUMMARY_HEADING.sub("", text, count=1).strip(), [], False
    heading = _FACTS_HEADING.search(text)
    head, tail = (text[: heading.start()], text[heading.end() :]) if heading else (text, "")
    summary_lines, listed = [], []
    for line in head.splitlines():
        bullet = _BULLET.match(line)
        if bullet and heading is None:
            listed.append(bullet.group(1))
        elif line.strip():
            summary_lines.append(line.strip())
    for line in tail.splitlines():
        bullet = _BULLET.match(line)
        if bullet:
            listed.append(bullet.group(1))
        elif line.strip() and not listed:
            listed.append(line.strip())
    summary = _SUMMARY_HEADING.sub("", " ".join(summary_lines), count=1).strip()
    return summary, listed[:facts], heading is not None or bool(listed)


def complete_sentences(text: str, max_words: int | None = None) -> str:
    """The complete sentences of ``text`` that fit in ``max_words`` words: a sentence cut off
    at the end is dropped. When not even the first sentence fits or is complete, its first
    words (within ``max_words``) are kept with an ellipsis."""
    text = " ".join(text.split())
    sentences = [s for s in _SENTENCE_SPLIT.split(text) if s]
    kept: list[str] = []
    count = 0
    for sentence in sentences:
        words = len(sentence.split())
        if not _SENTENCE_END.search(sentence):
            break
        if max_words is not None and count + words > max_words:
            break
        kept.append(sentence)
        count += words
    if kept:
        return " ".join(kept)
    words_list = text.split()
    if max_words is not None:
        words_list = words_list[:max_words]
    return " ".join(words_list).rstrip(",;:") + ("…" if words_list else "")


# --- ai.prompt ---------------------------------------------------------------------------------

_DOCUMENT_KEYS = ("document", "document_url", "url", "uri", "source", "file", "path")
_ANALYSIS_REQUEST = (
    "Analyse the document below: say what kind of document it is, summarise its content, and "
    "list the parties, amounts, dates and any action it asks for."
)


@node_type("ai.prompt", PromptConfig)
async def prompt(config: PromptConfig, ctx: NodeContext) -> dict[str, Any]:
    """Send a prompt (a template filled from variables and input); text or validated JSON.
    Without a prompt: analyse the input's document."""
    messages = []
    if config.system:
        messages.append({"role": "system", "content": config.system})
    analysed: str | None = None
    if config.prompt_template is None and config.prompt is None:
        # An unavailable model fails before the document is read.
        choose(config.model, task="prompt", ai=ctx.settings.ai, fallback=config.fallback_model)
        text, analysed = await _analysis_text(config.input, ctx)
        messages.append({"role": "user", "content": text})
    else:
        messages.append({"role": "user", "content": _prompt_text(config)})
    parameters = config.parameters
    options = {
        key: value
        for key, value in parameters.model_dump(
            exclude={"temperature", "max_tokens"}, exclude_none=True
        ).items()
    }
    schema = config.output_json_schema()
    max_tokens = config.max_tokens or parameters.max_tokens
    async with session(
        ctx,
        config.model,
        task="prompt",
        fallback=config.fallback_model,
        prompt_chars=sum(len(m["content"]) for m in messages),
        max_tokens=max_tokens or 0,
    ) as using:
        answer = await chat(
            ctx,
            using,
            messages,
            temperature=_default(config.temperature, parameters.temperature),
            max_tokens=max_tokens,
            schema=schema,
            options=options,
        )
    source = {"analysed": analysed} if analysed else {}
    if schema is not None:
        return {"json": answer.data, **source, **_names(answer)}
    return {"text": answer.text, **source, **_names(answer)}


async def _analysis_text(value: Any, ctx: NodeContext) -> tuple[str, str]:
    """The prompt of a node without one, and what it analyses (``text of <node input>``,
    a document's location, or ``input``)."""
    if value is None:
        raise NodeConfigError(
            "nothing to ask: give prompt_template (or prompt), or input (a text, a document, "
            "or data) to analyse"
        )
    if isinstance(value, str):
        return f"{_ANALYSIS_REQUEST}\n\n{value}", "input"
    if isinstance(value, dict):
        text = value.get("text")
        if isinstance(text, str) and text.strip():
            return f"{_ANALYSIS_REQUEST}\n\n{text}", "input.text"
        for key in _DOCUMENT_KEYS:
            location = value.get(key)
            if isinstance(location, str) and location.strip():
                from activities.documents import DocumentsParseConfig, documents_parse

                try:
                    document = DocumentsParseConfig(source=location, output_format="text")
                except ValueError as e:
                    raise NodeConfigError(f"input.{key}: {e}") from None
                parsed = await documents_parse(document, ctx)
                return f"{_ANALYSIS_REQUEST}\n\n{parsed['text']}", location
    return f"{_ANALYSIS_REQUEST}\n\n{_as_text(value)}", "input"


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
            f" {', '.join(lists)}: a list with one entry per item line of the document "
            f"({', '.join(_LINE_ITEM_FIELDS)}); the subtotal, tax and total lines are not items."
        )
    issuers = [name for name in names if _is_issuer(name)]
    if issuers:
        # Small models take the billed party (after "Bill to") for the vendor.
        request += (
            f" {', '.join(issuers)}: the company that issued the document (its letterhead), "
            "not the party it is billed or addressed to."
        )
    return request


_ISSUER_WORDS = ("vendor", "seller", "supplier", "issuer")
_SUMMARY_LINE = re.compile(
    r"^\s*(sub\s*-?\s*total|total|net\s+(amount|total)|(sales\s+)?tax|vat|gst|amount\s+due|"
    r"balance(\s+due)?|grand\s+total)\b",
    re.IGNORECASE,
)


def _without_summary_lines(entities: Any, names: list[str] | None) -> Any:
    """The entities with the subtotal, tax and total rows taken out of their line-item lists:
    small models list them as items (no quantity, no unit price), and they are not."""
    if names is None or not isinstance(entities, dict):
        return entities
    cleaned = dict(entities)
    for name in names:
        items = cleaned.get(name)
        if _is_list(name) and isinstance(items, list):
            cleaned[name] = [item for item in items if not _is_summary_line(item)]
    return cleaned


def _is_summary_line(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    if item.get("quantity") is not None or item.get("unit_price") is not None:
        return False
    return bool(_SUMMARY_LINE.match(str(item.get("description") or "")))


def _is_issuer(name: str) -> bool:
    return any(word in name.lower() for word in _ISSUER_WORDS)


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
    names = {"provider": answer.provider, "model": answer.model}
    if answer.fallback_from is not None:
        names["fallback_from"] = answer.fallback_from
    return names
