"""Checked extraction: each rule fires on a crafted wrong answer from our OpenAI-compatible stub,
the model gets one targeted repair round, and what stays wrong is marked ``needs_review``."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities import registry
from interpreter import DefinitionError, load_string
from interpreter.expressions import compile_value, evaluate
from tests.nodes import run_node
from tests.servers.openai_stub import OpenAIStub
from tests.test_ai import INVOICE, remote

ENTITIES = ["invoice_number", "date", "subtotal", "tax", "total_amount", "line_items"]


def invoice(**changes: Any) -> dict[str, Any]:
    """The Acme invoice as a right extraction, with ``changes``."""
    right: dict[str, Any] = {
        "invoice_number": "INV-10487",
        "date": "2024-03-14",
        "subtotal": 524.48,
        "tax": 41.96,
        "total_amount": 566.44,
        "line_items": [
            {"description": "Rocket skates", "quantity": 2, "unit_price": 149.99, "amount": 299.98},
            {"description": "Magnet", "quantity": 1, "unit_price": 89.5, "amount": 89.5},
            {"description": "Anvil, 50 lb", "quantity": 3, "unit_price": 45.0, "amount": 135.0},
        ],
    }
    return {**right, **changes}


def with_line(index: int, **changes: Any) -> list[dict[str, Any]]:
    items = [dict(item) for item in invoice()["line_items"]]
    items[index].update(changes)
    return items


@pytest.fixture
def stub(openai_stub: OpenAIStub) -> OpenAIStub:
    openai_stub.reset()
    return openai_stub


CASES = {
    # The issue's own case: line 3 read as 4 x 3 (truth: 3 x 45 = 135).
    "line arithmetic": (
        invoice(line_items=with_line(2, quantity=4, unit_price=3)),
        ["line_items"],
        "line_items[2]: quantity 4 * unit_price 3 = 12, not amount 135",
    ),
    "lines against the subtotal": (
        invoice(line_items=with_line(1, unit_price=98.5, amount=98.5)),
        ["line_items", "subtotal"],
        "the line amounts add up to 533.48, not subtotal 524.48",
    ),
    "subtotal plus tax against the total": (
        invoice(total_amount=656.44),
        ["subtotal", "tax", "total_amount"],
        "subtotal 524.48 + tax 41.96 = 566.44, not total_amount 656.44",
    ),
    "a date that does not exist": (
        invoice(date="2024-02-30"),
        ["date"],
        "date: '2024-02-30' is not a date (YYYY-MM-DD)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_rule_fires_then_repair_then_needs_review(stub: OpenAIStub, case: str) -> None:
    wrong, fields, problem = CASES[case]
    stub.reply(json_content=wrong)
    stub.reply(json_content=wrong)  # the repair round changes nothing
    # A schema without "format": date, so the date reaches the rules (not the schema check).
    config: dict[str, Any] = {"text": INVOICE, "entities": ENTITIES}
    if case == "a date that does not exist":
        config = {"text": INVOICE, "schema": _schema_without_formats()}
    result = await run_node("ai.extract", config, settings=remote(stub))
    assert result.output["entities"] == wrong
    assert result.output["needs_review"] == fields
    assert result.output["problems"] == [problem]
    assert result.output["repaired"] is True
    first, repair = stub.requests
    # The repair round repeats the conversation and names exactly what is wrong.
    assert repair["messages"][: len(first["messages"])] == first["messages"]
    assert repair["messages"][-2]["role"] == "assistant"
    assert f"- {problem}" in repair["messages"][-1]["content"]
    assert result.usage is not None
    assert result.usage.prompt_tokens == 20  # both calls count


async def test_a_successful_repair_leaves_nothing_to_review(stub: OpenAIStub) -> None:
    stub.reply(json_content=invoice(line_items=with_line(2, quantity=4, unit_price=3)))
    stub.reply(json_content=invoice())
    result = await run_node(
        "ai.extract", {"text": INVOICE, "entities": ENTITIES}, settings=remote(stub)
    )
    assert result.output["entities"] == invoice()
    assert result.output["needs_review"] == []
    assert result.output["problems"] == []
    assert result.output["repaired"] is True


async def test_a_right_answer_is_not_sent_back(stub: OpenAIStub) -> None:
    stub.reply(json_content=invoice())
    result = await run_node(
        "ai.extract", {"text": INVOICE, "entities": ENTITIES}, settings=remote(stub)
    )
    assert result.output["needs_review"] == []
    assert result.output["repaired"] is False
    assert len(stub.requests) == 1


async def test_subtotal_tax_and_total_rows_are_not_line_items(stub: OpenAIStub) -> None:
    def row(description: str, amount: float) -> dict[str, Any]:
        return {"description": description, "quantity": None, "unit_price": None, "amount": amount}

    listed = [
        *invoice()["line_items"],
        row("Subtotal", 524.48),
        row("Sales tax (8%)", 41.96),
        row("Total due", 566.44),
    ]
    stub.reply(json_content=invoice(line_items=listed))
    result = await run_node(
        "ai.extract", {"text": INVOICE, "entities": ENTITIES}, settings=remote(stub)
    )
    assert result.output["entities"] == invoice()
    assert result.output["needs_review"] == []
    # The model is told which party is the vendor and which lines are items.
    system = stub.requests[0]["messages"][0]["content"]
    assert "the subtotal, tax and total lines are not items" in system
    assert len(stub.requests) == 1


async def test_the_vendor_is_the_issuer_not_the_billed_party(stub: OpenAIStub) -> None:
    stub.reply(json_content={"vendor_name": "Acme Corporation", "customer": "Northwind"})
    await run_node(
        "ai.extract",
        {"text": INVOICE, "entities": ["vendor_name", "customer"]},
        settings=remote(stub),
    )
    system = stub.requests[0]["messages"][0]["content"]
    assert "vendor_name: the company that issued the document" in system


async def test_user_checks_in_cel_over_the_entities(stub: OpenAIStub) -> None:
    wrong = invoice(invoice_number="10487")
    stub.reply(json_content=wrong)
    stub.reply(json_content=wrong)
    result = await run_node(
        "ai.extract",
        {
            "text": INVOICE,
            "entities": ENTITIES,
            "checks": [
                "entities.total_amount > 0.0",
                {
                    "check": "entities.invoice_number.startsWith('INV-')",
                    "message": "invoice numbers start with INV-",
                },
                "${{ entities.line_items.all(i, i.quantity >= 1) }}",
            ],
        },
        settings=remote(stub),
    )
    assert result.output["needs_review"] == ["invoice_number"]
    assert result.output["problems"] == ["invoice numbers start with INV-"]
    assert "- invoice numbers start with INV-" in stub.requests[1]["messages"][-1]["content"]


async def test_needs_review_can_wait_for_a_person(stub: OpenAIStub) -> None:
    wrong = invoice(total_amount=656.44)
    stub.reply(json_content=wrong)
    stub.reply(json_content=wrong)
    result = await run_node(
        "ai.extract",
        {"text": INVOICE, "entities": ENTITIES, "review": True},
        settings=remote(stub),
    )
    assert result.review is not None
    assert result.review.field == "entities"
    assert result.review.proposed == result.output
    assert result.review.details["needs_review"] == ["subtotal", "tax", "total_amount"]
    assert "656.44" in result.review.message


async def test_without_repair_the_first_answer_is_flagged(stub: OpenAIStub) -> None:
    stub.reply(json_content=invoice(total_amount=656.44))
    result = await run_node(
        "ai.extract",
        {"text": INVOICE, "entities": ENTITIES, "repair": False},
        settings=remote(stub),
    )
    assert result.output["needs_review"] == ["subtotal", "tax", "total_amount"]
    assert len(stub.requests) == 1


def test_a_check_that_does_not_compile_is_a_located_load_error() -> None:
    text = """\
name: checks
version: "1"
tasks:
  - id: extract
    type: ai.extract
    config:
      text: some invoice
      entities: [total_amount]
      checks:
        - entities.total_amount > 0.0
        - entities.total_amount >
        - totl.amount > 1
"""
    with pytest.raises(DefinitionError) as failed:
        load_string(text, "checks.yaml", catalog=registry)
    problems = [str(p) for p in failed.value.problems]
    assert len(problems) == 2
    assert problems[0].startswith("checks.yaml:11:")
    assert "does not compile" in problems[0]
    assert problems[1].startswith("checks.yaml:12:")
    assert "unknown name 'totl'" in problems[1]
    assert "names start from entities" in problems[1]


async def test_a_bad_check_at_run_time_is_a_config_error(stub: OpenAIStub) -> None:
    with pytest.raises(ApplicationError) as failed:
        await run_node(
            "ai.extract",
            {"text": INVOICE, "entities": ["total"], "checks": ["inputs.x > 1"]},
            settings=remote(stub),
        )
    assert failed.value.type == "NodeConfigError"
    assert "unknown name 'inputs'" in str(failed.value)
    assert stub.requests == []


def _schema_without_formats() -> dict[str, Any]:
    from activities.ai import entity_schema

    schema = entity_schema(ENTITIES, bounded=False)
    schema["properties"]["date"].pop("format")
    return schema


async def test_each_extracted_field_names_its_model_and_page(stub: OpenAIStub) -> None:
    # Lineage: a two-page document; the header is on page 1, the totals on page 2.
    pages = [
        {"number": 1, "text": "ACME Corp\nInvoice INV-10487\nDate: 2024-03-14\nRocket skates"},
        {"number": 2, "text": "Subtotal 524.48\nTax 41.96\nTotal due: $566.44"},
    ]
    stub.reply(json_content=invoice(date="2024-03-15"))
    result = await run_node(
        "ai.extract",
        {"text": INVOICE, "entities": ENTITIES, "pages": pages},
        settings=remote(stub),
    )
    sources = result.output["sources"]
    model = result.output["model"]
    assert set(sources) == set(ENTITIES)
    assert {s["model"] for s in sources.values()} == {model}
    assert sources["invoice_number"]["page"] == 1
    assert sources["line_items"]["page"] == 1  # its first item's description
    assert sources["total_amount"]["page"] == 2
    assert sources["tax"]["page"] == 2
    assert sources["date"]["page"] is None  # 2024-03-15 is printed on no page
    # Without pages, the model alone.
    stub.reply(json_content=invoice())
    plain = await run_node(
        "ai.extract", {"text": INVOICE, "entities": ENTITIES}, settings=remote(stub)
    )
    assert plain.output["sources"]["tax"] == {"model": model}


def test_extraction_after_a_parse_reads_its_pages_by_default() -> None:
    definition = load_string(
        """
        name: Pages by default
        inputs: {document: {type: string}}
        tasks:
          - {id: parse, type: documents.parse}
          - {id: fields, type: ai.extract, depends_on: [parse], config: {entities: [total]}}
        """.replace("\n        ", "\n"),
        "pages.yaml",
        registry,
    )
    assert definition.tasks is not None
    config = definition.tasks[1].config
    assert config["pages"] == (
        '${{ type(nodes["parse"].output) == type({}) && has(nodes["parse"].output.pages) '
        '? nodes["parse"].output.pages : null }}'
    )
    # Whatever the dependency answers, the default evaluates (no pages unless it has them).
    expression = compile_value(config["pages"])
    for output in ("text", ["a"], None, 5, {"text": "t"}):
        assert evaluate(expression, {"nodes": {"parse": {"output": output}}}) is None
    pages = [{"number": 1, "text": "x"}]
    assert evaluate(expression, {"nodes": {"parse": {"output": {"pages": pages}}}}) == pages
