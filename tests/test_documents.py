"""documents.parse: every format, OCR, the four kinds of source and the failure modes.

Documents are generated here (fpdf2, python-docx, Pillow) or taken from examples/documents;
S3 is moto's real server (tests/servers/s3.py), HTTP a small http.server on loopback.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import WorkerResources, WorkerSettings, registry
from activities.settings import DocumentsSettings
from interpreter.node_io import NodeInput
from tests.nodes import run_node as run_any_node
from tests.servers._quiet_http import QuietHTTPServer
from tests.servers.s3 import S3Server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "documents"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract is not installed (Debian package tesseract-ocr: apt-get install -y "
    "tesseract-ocr)",
)


ALLOWED: list[Path] = [EXAMPLES]
"""Folders the tests' worker may read: the sample documents and (added by a fixture) the
session's temporary folders."""


@pytest.fixture(autouse=True, scope="module")
def _allow_temporary_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    ALLOWED.append(tmp_path_factory.getbasetemp().resolve())
    yield
    ALLOWED.pop()


def worker_settings(**overrides: Any) -> WorkerSettings:
    """Settings that let documents.parse read the test folders and the loopback servers."""
    return WorkerSettings(
        **{"file_roots": list(ALLOWED), "allow_private_networks": True, **overrides}
    )


async def run_node(node_type: str, config: dict[str, Any], **options: Any) -> Any:
    """``tests.nodes.run_node`` with :func:`worker_settings` unless settings are given."""
    options.setdefault("settings", worker_settings())
    return await run_any_node(node_type, config, **options)


async def parse(
    source: str | Path, *, settings: WorkerSettings | None = None, **config: Any
) -> dict[str, Any]:
    """The output of documents.parse for ``source``."""
    result = await run_node(
        "documents.parse", {"source": str(source), **config}, settings=settings or worker_settings()
    )
    output: dict[str, Any] = result.output
    return output


async def parse_error(
    source: str | Path, *, settings: WorkerSettings | None = None, **config: Any
) -> ApplicationError:
    """The failure documents.parse reports for ``source``."""
    with pytest.raises(ApplicationError) as caught:
        await run_node(
            "documents.parse",
            {"source": str(source), **config},
            settings=settings or worker_settings(),
        )
    return caught.value


# --- document makers --------------------------------------------------------------------------


def make_pdf(pages: list[list[str]], *, title: str = "", author: str = "") -> bytes:
    """A text PDF: one list of lines per page."""
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    if author:
        pdf.set_author(author)
    pdf.set_font("Helvetica", size=12)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            pdf.cell(text=line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def text_image(lines: list[str]) -> Any:
    """A white image with the lines in large black DejaVu Sans."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, 40)
    image = Image.new("RGB", (1400, 120 + 70 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        draw.text((60, 60 + 70 * number), line, font=font, fill="black")
    return image


def png_bytes(image: Any) -> bytes:
    """``image`` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_docx() -> bytes:
    """A DOCX with a heading, paragraphs, a table and core properties."""
    import docx

    document = docx.Document()
    document.add_heading("Meeting notes", level=1)
    document.add_paragraph("Attendees: Ann, Bo")
    table = document.add_table(rows=2, cols=2)
    for row, values in zip(table.rows, (("Item", "Owner"), ("Budget", "Ann")), strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_paragraph("Next meeting on Friday.")
    document.core_properties.title = "Weekly sync"
    document.core_properties.author = "Ann Example"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


HTML = """<!DOCTYPE html>
<html lang="en"><head><title>Quarterly
  report</title><meta name="author" content="Jane Roe">
<style>body { color: red }</style><script>var secret = "hidden";</script></head>
<body>
<h1>Results</h1>
<p>Revenue grew <b>12%</b> this
   quarter.<br>Costs fell.</p>
<!-- not shown -->
<ul><li>North</li><li>South</li></ul>
<table><thead><tr><th>Region</th><th>Sales</th></tr></thead>
<tbody><tr><td>North</td><td>1,200</td></tr><tr><td>South</td><td>950</td></tr></tbody></table>
<noscript>Enable JavaScript</noscript>
</body></html>
"""
HTML_TEXT = (
    "Results\nRevenue grew 12% this quarter.\nCosts fell.\nNorth\nSouth\n"
    "Region\tSales\nNorth\t1,200\nSouth\t950"
)


# --- the text formats -------------------------------------------------------------------------


async def test_plain_text_keeps_the_file_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("Line one\r\nLine two — café\n".encode())
    out = await parse(path)
    assert out["text"] == "Line one\nLine two — café\n"
    assert out["pages"] == [{"number": 1, "text": out["text"]}]
    assert out["tables"] == []
    assert out["mime_type"] == "text/plain"
    assert out["metadata"] == {
        "filename": "notes.txt",
        "size_bytes": 29,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "encoding": "utf-8",
    }


async def test_text_that_is_not_utf8_is_read_as_windows_1252(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes("Prix: 5 € net".encode("cp1252"))
    out = await parse(path)
    assert out["text"] == "Prix: 5 € net"
    assert out["metadata"]["encoding"] == "cp1252"


async def test_markdown_title_goes_to_metadata() -> None:
    out = await parse(EXAMPLES / "article.md")
    assert out["mime_type"] == "text/markdown"
    assert out["text"] == (EXAMPLES / "article.md").read_text()
    assert out["metadata"]["title"] == "Riverside Warehouse Cuts Paper Invoices by 80 Percent"


async def test_json_text_keys_and_data(tmp_path: Path) -> None:
    body = '{"order": 42, "items": [{"sku": "A-1", "qty": 2}]}\n'
    path = tmp_path / "order.json"
    path.write_text(body)
    out = await parse(path)
    assert out["mime_type"] == "application/json"
    assert out["text"] == body
    assert out["metadata"]["keys"] == ["order", "items"]
    assert out["metadata"]["data"] == {"order": 42, "items": [{"sku": "A-1", "qty": 2}]}

    as_text = await parse(path, output_format="text")
    assert set(as_text) == set(out)  # the shape stays
    assert as_text["text"] == body
    assert "data" not in as_text["metadata"]
    assert as_text["metadata"]["keys"] == ["order", "items"]


async def test_csv_becomes_one_table() -> None:
    out = await parse(EXAMPLES / "stock-levels.csv")
    assert out["mime_type"] == "text/csv"
    assert out["text"] == (EXAMPLES / "stock-levels.csv").read_text()
    [table] = out["tables"]
    assert table["header"] == ["sku", "name", "on_hand", "reorder_level", "supplier_email"]
    assert len(table["rows"]) == 8
    assert table["rows"][0] == [
        "WID-1001",
        "Steel widget (10 mm)",
        "240",
        "100",
        "orders@widgetworks.example.com",
    ]
    below = [row[0] for row in table["rows"] if int(row[2]) < int(row[3])]
    assert below == ["WID-1002", "GSK-3100", "LUB-5005"]  # what the inventory demo expects
    assert out["metadata"]["row_count"] == 8

    as_text = await parse(EXAMPLES / "stock-levels.csv", output_format="text")
    assert as_text["tables"] == []
    assert as_text["text"] == out["text"]


async def test_csv_with_semicolons_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text('product;price\n"Bolt; M8";0,25\nNut;0,10\n')
    out = await parse(path)
    assert out["tables"] == [
        {"header": ["product", "price"], "rows": [["Bolt; M8", "0,25"], ["Nut", "0,10"]]}
    ]
    assert out["metadata"]["delimiter"] == ";"


async def test_html_visible_text_tables_and_title(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(HTML)
    out = await parse(path)
    assert out["mime_type"] == "text/html"
    assert out["text"] == HTML_TEXT
    assert out["tables"] == [
        {"header": ["Region", "Sales"], "rows": [["North", "1,200"], ["South", "950"]]}
    ]
    assert out["metadata"]["title"] == "Quarterly report"
    assert out["metadata"]["author"] == "Jane Roe"
    assert out["metadata"]["lang"] == "en"


async def test_html_charset_from_meta_tag(tmp_path: Path) -> None:
    path = tmp_path / "menu.htm"
    path.write_bytes(
        '<html><head><meta charset="iso-8859-1"><title>Café</title></head>'
        "<body><p>Crème brûlée</p></body></html>".encode("latin-1")
    )
    out = await parse(path)
    assert out["text"] == "Crème brûlée"
    assert out["metadata"]["title"] == "Café"


# --- PDF and DOCX -----------------------------------------------------------------------------


async def test_pdf_pages_text_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(
        make_pdf(
            [["Page one line one", "Second line: 42.00 USD"], ["Page two"]],
            title="Monthly report",
            author="Finance team",
        )
    )
    out = await parse(path)
    assert out["mime_type"] == "application/pdf"
    assert out["pages"] == [
        {"number": 1, "text": "Page one line one\nSecond line: 42.00 USD"},
        {"number": 2, "text": "Page two"},
    ]
    assert out["text"] == "Page one line one\nSecond line: 42.00 USD\n\nPage two"
    assert out["tables"] == []
    metadata = out["metadata"]
    assert metadata["page_count"] == 2
    assert metadata["title"] == "Monthly report"
    assert metadata["author"] == "Finance team"
    assert "ocr_pages" not in metadata
    assert "truncated" not in metadata

    first = await parse(path, max_pages=1)
    assert first["pages"] == [out["pages"][0]]
    assert first["metadata"]["page_count"] == 2
    assert first["metadata"]["truncated"] is True


async def test_pdf_heartbeats_once_per_page(tmp_path: Path) -> None:
    path = tmp_path / "three.pdf"
    path.write_bytes(make_pdf([["one"], ["two"], ["three"]]))
    heartbeats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    resources = WorkerResources(worker_settings())
    activity = next(
        a
        for a in registry.activities(resources)
        if a.__temporal_activity_definition.name == "documents.parse"  # type: ignore[attr-defined]
    )
    node_input = NodeInput(
        node_id="parse",
        config={"source": str(path)},
    )
    try:
        result = await env.run(activity, node_input)
    finally:
        await resources.aclose()
    assert [page["text"] for page in result.output["pages"]] == ["one", "two", "three"]
    assert heartbeats == [(1,), (2,), (3,)]


async def test_docx_paragraphs_tables_and_properties(tmp_path: Path) -> None:
    path = tmp_path / "notes.docx"
    path.write_bytes(make_docx())
    out = await parse(path)
    assert out["mime_type"] == (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    assert out["text"] == (
        "Meeting notes\nAttendees: Ann, Bo\nItem\tOwner\nBudget\tAnn\nNext meeting on Friday."
    )
    assert out["tables"] == [{"header": ["Item", "Owner"], "rows": [["Budget", "Ann"]]}]
    assert out["metadata"]["title"] == "Weekly sync"
    assert out["metadata"]["author"] == "Ann Example"
    assert out["metadata"]["table_count"] == 1

    as_text = await parse(path, output_format="text")
    assert as_text["tables"] == []
    assert as_text["text"] == out["text"]


# --- the demo samples -------------------------------------------------------------------------


def _amount(value: float) -> str:
    return f"{value:,.2f}"


@pytest.mark.parametrize("name", ["invoice-acme.pdf", "invoice-globex.docx"])
async def test_sample_invoices_hold_their_expected_values(name: str) -> None:
    expected = json.loads((EXAMPLES / "expected.json").read_text())[name]
    out = await parse(EXAMPLES / name)
    text = out["text"]
    for key in ("invoice_number", "vendor_name", "customer_name"):
        assert expected[key] in text
    assert _amount(expected["total_amount"]) in text
    for item in expected["line_items"]:
        assert item["description"] in text
        assert _amount(item["amount"]) in text


def test_make_samples_is_deterministic_and_matches_expected_json(tmp_path: Path) -> None:
    script = EXAMPLES / "make_samples.py"
    for folder in ("a", "b"):
        subprocess.run(
            [sys.executable, str(script), "--out", str(tmp_path / folder)],
            check=True,
            capture_output=True,
        )
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [
        "expected.json",
        "invoice-acme.pdf",
        "invoice-globex.docx",
        "invoice-initech-scan.png",
    ]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert json.loads((tmp_path / "a" / "expected.json").read_text()) == json.loads(
        (EXAMPLES / "expected.json").read_text()
    )
    # The three invoices really differ.
    expected = json.loads((EXAMPLES / "expected.json").read_text())
    for key in ("invoice_number", "date", "vendor_name", "total_amount"):
        assert len({fields[key] for fields in expected.values()}) == 3, key


# --- OCR --------------------------------------------------------------------------------------


@needs_tesseract
async def test_ocr_of_the_scanned_invoice() -> None:
    expected = json.loads((EXAMPLES / "expected.json").read_text())["invoice-initech-scan.png"]
    out = await parse(EXAMPLES / "invoice-initech-scan.png", output_format="text")
    assert out["mime_type"] == "image/png"
    text = out["text"]
    for value in (expected["invoice_number"], expected["vendor_name"], "05/21/2024"):
        assert value in text
    # The default page segmentation keeps table rows on one line.
    assert "Red stapler 2 18.50 37.00" in text
    assert "TOTAL: 120.09 USD" in text
    assert out["metadata"]["ocr_pages"] == [1]
    assert out["metadata"]["width"] == 1240


@needs_tesseract
async def test_image_only_pdf_page_is_ocred_only_where_there_is_no_text(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.cell(text="Cover letter with a text layer")
    pdf.add_page()
    scan = png_bytes(text_image(["Scanned receipt R-5521", "Total paid: 318.40 EUR"]))
    pdf.image(io.BytesIO(scan), x=10, y=10, w=190)
    path = tmp_path / "mixed.pdf"
    path.write_bytes(bytes(pdf.output()))

    out = await parse(path)
    assert out["pages"][0] == {"number": 1, "text": "Cover letter with a text layer"}
    assert "Scanned receipt R-5521" in out["pages"][1]["text"]
    assert "Total paid: 318.40 EUR" in out["pages"][1]["text"]
    assert out["metadata"]["ocr_pages"] == [2]

    never = await parse(path, ocr="never")
    assert never["pages"][1] == {"number": 2, "text": ""}
    assert never["text"] == "Cover letter with a text layer"
    assert "ocr_pages" not in never["metadata"]


@needs_tesseract
async def test_ocr_always_reads_pages_that_have_text(tmp_path: Path) -> None:
    path = tmp_path / "typed.pdf"
    path.write_bytes(make_pdf([["Purchase order PO-88412"]]))
    out = await parse(path, ocr="always")
    assert "PO-88412" in out["text"]
    assert out["metadata"]["ocr_pages"] == [1]


@needs_tesseract
async def test_missing_ocr_language_names_the_package(tmp_path: Path) -> None:
    error = await parse_error(EXAMPLES / "invoice-initech-scan.png", ocr_language="zzz")
    assert error.non_retryable is True
    assert "tesseract-ocr-zzz" in error.message


async def test_missing_tesseract_is_a_permanent_error_naming_the_package(tmp_path: Path) -> None:
    settings = worker_settings(documents=DocumentsSettings(tesseract_cmd=str(tmp_path / "nope")))
    with pytest.raises(ApplicationError) as caught:
        await run_node(
            "documents.parse",
            {"source": str(EXAMPLES / "invoice-initech-scan.png")},
            settings=settings,
        )
    assert caught.value.non_retryable is True
    assert caught.value.type == "PermanentNodeError"
    assert "tesseract-ocr" in caught.value.message
    assert "invoice-initech-scan.png" in caught.value.message

    # A PDF with a text layer needs no OCR, so it parses without tesseract.
    result = await run_node(
        "documents.parse", {"source": str(EXAMPLES / "invoice-acme.pdf")}, settings=settings
    )
    assert "INV-10487" in result.output["text"]


async def test_images_without_ocr_give_empty_pages(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    text_image(["anything"]).save(path, format="JPEG")
    out = await parse(path, ocr="never")
    assert out["mime_type"] == "image/jpeg"
    assert out["pages"] == [{"number": 1, "text": ""}]
    assert out["metadata"]["format"] == "JPEG"


# --- type detection ---------------------------------------------------------------------------


async def test_type_is_sniffed_when_the_extension_is_missing_or_unknown(tmp_path: Path) -> None:
    samples: dict[str, bytes] = {
        "pdf-upload": make_pdf([["Sniffed PDF"]]),
        "word.bin": make_docx(),
        "picture": png_bytes(text_image(["x"])),
        "data.dat": b'  {"a": [1, 2]}',
        "page": b"<!doctype html><html><body><p>Hi there</p></body></html>",
        "README": b"just some words\n",
    }
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
    mime = {name: (await parse(tmp_path / name, ocr="never"))["mime_type"] for name in samples}
    assert mime == {
        "pdf-upload": "application/pdf",
        "word.bin": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "picture": "image/png",
        "data.dat": "application/json",
        "page": "text/html",
        "README": "text/plain",
    }
    assert (await parse(tmp_path / "pdf-upload"))["text"] == "Sniffed PDF"
    assert (await parse(tmp_path / "page"))["text"] == "Hi there"


async def test_file_uri_and_seed_alias(tmp_path: Path) -> None:
    path = tmp_path / "my notes.txt"
    path.write_text("hello from a file URI")
    assert path.as_uri().endswith("my%20notes.txt")
    result = await run_node("parse_document", {"source": path.as_uri()})
    assert result.output["text"] == "hello from a file URI"
    assert result.output["metadata"]["filename"] == "my notes.txt"


# --- which files --------------------------------------------------------------------------------


async def test_files_outside_the_roots_are_refused_like_missing_ones(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "inbox").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (root / "inbox" / "link.txt").symlink_to(secret)
    settings = worker_settings(home=tmp_path / "home", file_roots=[root])
    sources: list[str | Path] = [
        secret,
        secret.as_uri(),
        root / "inbox" / "link.txt",
        f"{root}/inbox/../../secret.txt",
        tmp_path / "absent.txt",
    ]
    for source in sources:
        error = await parse_error(source, settings=settings)
        assert error.non_retryable is True
        assert error.type == "OutsideRootsError"
        assert "top secret" not in error.message
        assert f"{source}: outside the worker's file roots" in error.message
        assert str(root) in error.message and "TIDEFLOW_FILE_ROOTS" in error.message


async def test_the_default_roots_are_the_uploads_and_the_file_root(tmp_path: Path) -> None:
    settings = WorkerSettings(home=tmp_path)
    uploads = tmp_path / "uploads" / "u1" / "note.txt"
    stored = settings.resolved_file_root / "reports" / "r.md"
    in_store = tmp_path / "payloads" / "uploads" / "s.txt"
    for path, text in [(uploads, "uploaded"), (stored, "# Stored"), (in_store, "shared")]:
        path.parent.mkdir(parents=True)
        path.write_text(text)
        assert (await parse(path, settings=settings))["text"] == text
    assert settings.allowed_file_roots() == [
        (tmp_path / "files").resolve(),
        (tmp_path / "uploads").resolve(),
        (tmp_path / "payloads" / "uploads").resolve(),
    ]


async def test_a_file_over_the_download_cap_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 200_000)
    error = await parse_error(path, settings=worker_settings(max_download_mb=0.1))
    assert error.type == "TooLargeError"
    assert error.message.endswith(
        f"{path}: 0.191 MB, over the worker's download limit of 0.1 MB (setting "
        "max_download_mb (TIDEFLOW_MAX_DOWNLOAD_MB))"
    )


# --- failures ---------------------------------------------------------------------------------


async def test_missing_file_is_permanent(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "invoice.pdf"
    error = await parse_error(missing)
    assert error.non_retryable is True
    assert error.type == "PermanentNodeError"
    assert str(missing) in error.message
    assert "no such file" in error.message


async def test_directory_is_permanent(tmp_path: Path) -> None:
    error = await parse_error(tmp_path)
    assert error.non_retryable is True
    assert "directory" in error.message


async def test_corrupt_pdf_is_permanent_and_names_source_and_cause(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")
    error = await parse_error(path)
    assert error.non_retryable is True
    assert "broken.pdf" in error.message
    assert "not a readable PDF document" in error.message


async def test_corrupt_docx_is_permanent(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 truncated zip")
    error = await parse_error(path)
    assert error.non_retryable is True
    assert "broken.docx" in error.message
    assert "not a readable DOCX document" in error.message


async def test_invalid_json_is_permanent(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"a": ')
    error = await parse_error(path)
    assert error.non_retryable is True
    assert "bad.json: not valid JSON" in error.message


@pytest.mark.parametrize(
    ("name", "data", "mime"),
    [
        ("blob.bin", bytes(range(256)) * 4, "application/octet-stream"),
        ("archive.zip", b"PK\x05\x06" + bytes(18), "application/zip"),
        ("legacy.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "application/msword"),
    ],
)
async def test_unsupported_format_is_permanent(
    tmp_path: Path, name: str, data: bytes, mime: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    error = await parse_error(path)
    assert error.non_retryable is True
    assert name in error.message
    assert f"unsupported format {mime}" in error.message


@pytest.mark.parametrize(
    "config",
    [
        {"source": "ftp://example.com/a.pdf"},
        {"source": "s3://bucket-only"},
        {"source": ""},
        {"source": "a.pdf", "ocr_language": "eng -c x=1"},
        {"source": "a.pdf", "max_pages": 0},
        {"source": "a.pdf", "colour": "red"},
    ],
)
async def test_bad_config_is_a_config_error(config: dict[str, Any]) -> None:
    with pytest.raises(ApplicationError) as caught:
        await run_node("documents.parse", config)
    assert caught.value.type == "NodeConfigError"
    assert caught.value.non_retryable is True


# --- S3 ---------------------------------------------------------------------------------------


async def test_s3_source(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket("docs")
    client = s3_server.client()
    client.put_object(
        Bucket=bucket,
        Key="inbox/2024/invoice-acme.pdf",
        Body=(EXAMPLES / "invoice-acme.pdf").read_bytes(),
    )
    client.put_object(
        Bucket=bucket,
        Key="exports/stock",
        Body=(EXAMPLES / "stock-levels.csv").read_bytes(),
        ContentType="text/csv",
    )
    out = await parse(f"s3://{bucket}/inbox/2024/invoice-acme.pdf")
    assert out["mime_type"] == "application/pdf"
    assert "Invoice number: INV-10487" in out["text"]
    assert out["metadata"]["filename"] == "invoice-acme.pdf"

    # No extension: the declared Content-Type decides.
    csv_out = await parse(f"s3://{bucket}/exports/stock")
    assert csv_out["mime_type"] == "text/csv"
    assert len(csv_out["tables"][0]["rows"]) == 8


async def test_s3_missing_key_and_bucket_are_permanent(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket("docs")
    error = await parse_error(f"s3://{bucket}/missing/invoice.pdf")
    assert error.non_retryable is True
    assert error.type == "PermanentNodeError"
    assert f"s3://{bucket}/missing/invoice.pdf" in error.message
    assert "no such object" in error.message

    error = await parse_error("s3://tideflow-no-such-bucket/invoice.pdf")
    assert error.non_retryable is True
    assert "NoSuchBucket" in error.message


async def test_s3_server_errors_are_retryable(
    s3_server: S3Server, http_files: HttpFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An S3 endpoint that answers 503 to everything under /s3-down/ (path-style requests).
    http_files.routes["/s3-down/report.pdf"] = (503, "application/xml", b"<Error/>")
    monkeypatch.setenv("AWS_ENDPOINT_URL", http_files.base_url)
    error = await parse_error("s3://s3-down/report.pdf")
    assert error.non_retryable is False
    assert error.type == "RetryableNodeError"
    assert "s3://s3-down/report.pdf" in error.message
    assert "503" in error.message


async def test_s3_connection_refused_is_retryable(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    error = await parse_error("s3://any-bucket/report.pdf")
    assert error.non_retryable is False
    assert "s3://any-bucket/report.pdf" in error.message


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class HttpFiles:
    """A loopback HTTP server answering ``routes``: path (no query) → (status, type, body)."""

    base_url: str
    routes: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    held: dict[str, threading.Event] = field(default_factory=dict)
    """Paths whose answer waits until their event is set (or 10 s pass)."""
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    """More headers of a path's answer (a redirect's Location)."""


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def http_files() -> Iterator[HttpFiles]:
    """http.server in a thread on 127.0.0.1."""
    files = HttpFiles("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in files.held:
                files.held[path].wait(10)
            status, content_type, body = files.routes.get(path, (404, "text/plain", b"not found"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in files.headers.get(path, {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = QuietHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        files.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        yield files
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_http_source(http_files: HttpFiles) -> None:
    http_files.routes["/files/invoice-globex.docx"] = (
        200,
        "application/octet-stream",
        (EXAMPLES / "invoice-globex.docx").read_bytes(),
    )
    http_files.routes["/export"] = (200, "text/csv; charset=utf-8", b"a,b\n1,2\n")
    http_files.routes["/page"] = (200, "text/html; charset=utf-8", HTML.encode())

    out = await parse(f"{http_files.base_url}/files/invoice-globex.docx")
    assert "Invoice No.: GLX-2024-0392" in out["text"]
    assert out["metadata"]["filename"] == "invoice-globex.docx"

    csv_out = await parse(f"{http_files.base_url}/export?format=csv")
    assert csv_out["mime_type"] == "text/csv"
    assert csv_out["tables"] == [{"header": ["a", "b"], "rows": [["1", "2"]]}]

    html_out = await parse(f"{http_files.base_url}/page")
    assert html_out["text"] == HTML_TEXT


async def test_http_404_is_permanent_and_hides_the_query(http_files: HttpFiles) -> None:
    error = await parse_error(f"{http_files.base_url}/files/gone.pdf?token=s3cr3t")
    assert error.non_retryable is True
    assert f"{http_files.base_url}/files/gone.pdf" in error.message
    assert "404" in error.message
    assert "s3cr3t" not in error.message


async def test_http_503_is_retryable(http_files: HttpFiles) -> None:
    http_files.routes["/busy.pdf"] = (503, "text/plain", b"try later")
    error = await parse_error(f"{http_files.base_url}/busy.pdf")
    assert error.non_retryable is False
    assert error.type == "RetryableNodeError"
    assert "503" in error.message
    assert "/busy.pdf" in error.message


async def test_http_connection_refused_is_retryable() -> None:
    error = await parse_error(f"http://127.0.0.1:{closed_port()}/doc.pdf")
    assert error.non_retryable is False
    assert "/doc.pdf" in error.message


async def test_http_timeout_is_retryable(http_files: HttpFiles) -> None:
    http_files.routes["/slow.pdf"] = (200, "application/pdf", make_pdf([["late"]]))
    release = http_files.held["/slow.pdf"] = threading.Event()
    settings = worker_settings(documents=DocumentsSettings(fetch_timeout_seconds=0.2))
    try:
        with pytest.raises(ApplicationError) as caught:
            await run_node(
                "documents.parse", {"source": f"{http_files.base_url}/slow.pdf"}, settings=settings
            )
    finally:
        release.set()
    assert caught.value.non_retryable is False
    assert "/slow.pdf" in caught.value.message
    assert "timed out" in caught.value.message


async def test_redirects_are_followed_a_few_times_each_hop_checked(http_files: HttpFiles) -> None:
    http_files.routes["/final.csv"] = (200, "text/csv", b"a,b\n1,2\n")
    http_files.routes["/hop1"] = (301, "text/plain", b"")
    http_files.headers["/hop1"] = {"Location": "/hop2"}
    http_files.routes["/hop2"] = (302, "text/plain", b"")
    http_files.headers["/hop2"] = {"Location": f"{http_files.base_url}/final.csv"}
    out = await parse(f"{http_files.base_url}/hop1")
    assert out["tables"] == [{"header": ["a", "b"], "rows": [["1", "2"]]}]

    http_files.routes["/loop"] = (302, "text/plain", b"")
    http_files.headers["/loop"] = {"Location": "/loop"}
    error = await parse_error(f"{http_files.base_url}/loop")
    assert error.non_retryable is True
    assert error.message.endswith(f"{http_files.base_url}/loop: more than 5 redirects")

    http_files.routes["/to-file"] = (302, "text/plain", b"")
    http_files.headers["/to-file"] = {"Location": "file:///etc/passwd"}
    error = await parse_error(f"{http_files.base_url}/to-file")
    assert "redirected to a file: URL, not http(s)" in error.message

    http_files.routes["/to-metadata"] = (307, "text/plain", b"")
    http_files.headers["/to-metadata"] = {"Location": "http://[fd00:ec2::254]/latest/"}
    error = await parse_error(f"{http_files.base_url}/to-metadata")
    assert error.type == "BlockedAddressError"
    assert "fd00:ec2::254 is a cloud metadata address" in error.message


async def test_a_default_worker_refuses_loopback_sources(http_files: HttpFiles) -> None:
    http_files.routes["/doc.txt"] = (200, "text/plain", b"hello")
    error = await parse_error(f"{http_files.base_url}/doc.txt", settings=WorkerSettings())
    assert error.type == "BlockedAddressError"
    assert "127.0.0.1 is a loopback address" in error.message


async def test_downloads_over_the_cap_fail(http_files: HttpFiles, s3_server: S3Server) -> None:
    settings = worker_settings(max_download_mb=0.1)
    http_files.routes["/big.txt"] = (200, "text/plain", b"b" * 200_000)
    error = await parse_error(f"{http_files.base_url}/big.txt", settings=settings)
    assert error.type == "TooLargeError"
    assert "big.txt: 0.191 MB, over the worker's download limit of 0.1 MB" in error.message

    bucket = s3_server.new_bucket("docs")
    s3_server.client().put_object(Bucket=bucket, Key="big.txt", Body=b"c" * 200_000)
    error = await parse_error(f"s3://{bucket}/big.txt", settings=settings)
    assert error.type == "TooLargeError"
    assert f"s3://{bucket}/big.txt: 0.191 MB, over the worker's download limit" in error.message
