"""The ``documents.parse`` node type (aliases document_parser, parse_document, text_extraction).

Reads one document from a path, ``file://``, ``s3://bucket/key`` or ``http(s)://`` — local paths
only below the worker's file roots, URLs only to addresses the worker allows (redirects followed
up to five times, each hop checked), and nothing larger than ``max_download_mb``: see
:mod:`activities.files` and :mod:`activities.egress` — and returns
``{text, pages: [{number, text}], tables: [{header, rows}], metadata, mime_type}``:

========  =========================================================================================
format    what comes out
========  =========================================================================================
TXT, MD   ``text`` is the file; MD's first ``# heading`` is ``metadata.title``
JSON      ``text`` is the file; ``metadata.keys`` (top-level keys) and ``metadata.data`` (the value)
CSV/TSV   ``text`` is the file; one table, ``header`` = first row, ``rows`` = the rest (strings)
HTML      visible text (no script/style/head), one line per block, table cells tab-separated;
          tables (``header`` = the ``<th>``/``<thead>`` row, else ``[]``); title, description,
          author, keywords, lang in ``metadata``
PDF       one page per PDF page (pypdf); title, author, dates, ``page_count``; no tables. Pages
          without a text layer are OCRed (``ocr: auto``); ``ocr_pages`` lists them
DOCX      paragraphs and tables in document order (cells tab-separated); tables with ``header`` =
          first row; core properties in ``metadata``. Headers and footers are not read
images    PNG, JPEG, TIFF (one page per frame), GIF, BMP, WEBP by OCR; width/height in metadata
========  =========================================================================================

The type comes from the file extension; without a known one, from the content's magic bytes,
then from the Content-Type the server declared, then UTF-8 text is read as plain text.
``output_format: text`` keeps the same shape but leaves out the structured parts: ``tables`` is
``[]`` and ``metadata`` has no ``data``. OCR uses Debian's ``tesseract-ocr`` through pytesseract
(PDF pages are rendered with pypdfium2 first).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import mimetypes
import re
import shutil
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from activities import egress, files
from activities._context import NodeContext
from activities._registry import node_type
from activities.errors import (
    NodeConfigError,
    NodeError,
    PermanentNodeError,
    RetryableNodeError,
)
from activities.settings import DocumentsSettings

if TYPE_CHECKING:
    from bs4 import BeautifulSoup, Tag
    from PIL.Image import Image

OutputFormat = Literal["text", "json"]


class DocumentsParseConfig(BaseModel):
    """Config of ``documents.parse``."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        description="A path, file:// URI, s3://bucket/key or http(s):// URL; default the run's "
        "document input (what a document_upload trigger sets).",
        json_schema_extra={"default_expression": "${{ inputs.document }}"},
    )
    output_format: OutputFormat = Field(
        default="json",
        description="json: everything; text: the same shape without tables and parsed data.",
    )
    ocr: Literal["auto", "always", "never"] = Field(
        default="auto",
        description=(
            "auto: OCR images and PDF pages that have no text layer; always: OCR every page; "
            "never: no OCR (image pages come out empty)."
        ),
    )
    ocr_language: str = Field(
        default="eng",
        pattern=r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$",
        description="Tesseract language(s), e.g. eng or eng+deu (Debian: tesseract-ocr-<lang>).",
    )
    ocr_psm: Literal[1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13] = Field(
        default=4,
        description=(
            "Tesseract page segmentation mode. 4 (default): one column of lines, which keeps the "
            "rows of invoices, forms and tables together; 3: fully automatic, for multi-column "
            "articles; 6: one uniform block of text."
        ),
    )
    max_pages: int | None = Field(
        default=None, ge=1, description="Read at most this many PDF pages or TIFF frames."
    )

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        try:
            _parse_source(value)
        except NodeConfigError as e:
            raise ValueError(e.message) from e
        return value


# --- where a document comes from ------------------------------------------------------------

_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class _Source:
    """A parsed ``source``: where to read and what to call it in messages."""

    kind: Literal["file", "s3", "http"]
    location: str
    """The path, the URL, or the bucket for S3."""
    key: str = ""
    """The S3 key."""
    display: str = ""
    """The source as messages show it (no credentials, no query string)."""
    name: str = ""
    """The file name: its extension decides the format."""


def _parse_source(source: str) -> _Source:
    text = source.strip()
    if not text:
        raise NodeConfigError("source is empty")
    match = _URI.match(text)
    scheme = match.group(1).lower() if match else ""
    if scheme in ("http", "https"):
        parts = urlsplit(text)
        if not parts.hostname:
            raise NodeConfigError(f"source {text!r} has no host")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host + (f":{parts.port}" if parts.port else "")
        display = f"{parts.scheme}://{netloc}{parts.path}" + ("?…" if parts.query else "")
        name = PurePosixPath(unquote(parts.path)).name
        return _Source("http", text, display=display, name=name)
    if scheme == "s3":
        # Parsed by hand: S3 keys may hold '?' and '#', which urlsplit would cut off.
        bucket, _, key = text[len("s3://") :].partition("/")
        if text[3:5] != "//" or not bucket or not key:
            raise NodeConfigError(f"source {text!r} is not s3://bucket/key")
        return _Source("s3", bucket, key=key, display=text, name=PurePosixPath(key).name)
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise NodeConfigError(f"source {text!r}: file:// URIs must name a local path")
        path = url2pathname(unquote(parts.path))
        return _Source("file", path, display=text, name=Path(path).name)
    if match and text[match.end() : match.end() + 2] == "//":
        raise NodeConfigError(
            f"source {text!r}: unsupported scheme {scheme!r} (use a path, file://, s3:// or "
            "http(s)://)"
        )
    path = str(Path(text).expanduser())
    return _Source("file", path, display=text, name=Path(path).name)


@dataclass
class _Fetched:
    data: bytes
    content_type: str | None = None
    """The Content-Type the server declared, if any."""


async def _fetch(source: _Source, ctx: NodeContext) -> _Fetched:
    settings = ctx.settings
    cap = settings.max_download_bytes
    if source.kind == "file":
        path = files.confine(
            Path(source.location).absolute(), settings.allowed_file_roots(), shown=source.display
        )
        data = await asyncio.to_thread(files.read_file, path, shown=source.display, max_bytes=cap)
        return _Fetched(data)
    if source.kind == "s3":
        client = await files.s3_client(ctx)
        data, content_type = await asyncio.to_thread(
            files.read_s3, client, source.location, source.key, max_bytes=cap
        )
        return _Fetched(data, content_type)
    http = await egress.client_for(ctx)
    return await _read_http(http, source, settings.documents.fetch_timeout_seconds, cap)


# Statuses a later attempt may not see again.
_HTTP_RETRYABLE = frozenset({408, 425, 429})
_MAX_REDIRECTS = 5


async def _read_http(
    client: httpx.AsyncClient, source: _Source, timeout: float, max_bytes: int
) -> _Fetched:
    try:
        response = await egress.request(
            client,
            "GET",
            source.location,
            shown=source.display,
            max_bytes=max_bytes,
            max_redirects=_MAX_REDIRECTS,
            timeout=timeout,
        )
    except httpx.TimeoutException as e:
        raise RetryableNodeError(f"{source.display}: download timed out: {e!r}") from e
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
        raise PermanentNodeError(f"{source.display}: {e}") from e
    except httpx.HTTPError as e:
        raise RetryableNodeError(f"{source.display}: download failed: {e!r}") from e
    status = response.status_code
    if not 200 <= status < 300:
        message = f"{source.display}: HTTP {status} {response.reason_phrase}"
        if status >= 500 or status in _HTTP_RETRYABLE:
            raise RetryableNodeError(message)
        raise PermanentNodeError(message)
    return _Fetched(response.content, response.content_type)


# --- which format it is -----------------------------------------------------------------------

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/tiff", "image/gif", "image/bmp", "image/webp"}
)
# fmt: off
_TEXT_TYPES = frozenset({
    "text/plain", "text/markdown", "application/json", "text/csv", "text/tab-separated-values",
    "text/html",
})
# fmt: on
_SUPPORTED = frozenset({PDF, DOCX, *_IMAGE_TYPES, *_TEXT_TYPES})

_BY_EXTENSION = {
    ".txt": "text/plain", ".text": "text/plain", ".log": "text/plain",
    ".md": "text/markdown", ".markdown": "text/markdown",
    ".json": "application/json",
    ".csv": "text/csv", ".tsv": "text/tab-separated-values",
    ".html": "text/html", ".htm": "text/html", ".xhtml": "text/html",
    ".pdf": PDF,
    ".docx": DOCX,
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".tif": "image/tiff", ".tiff": "image/tiff", ".gif": "image/gif",
    ".bmp": "image/bmp", ".webp": "image/webp",
}  # fmt: skip

# Other names servers give the same types.
_DECLARED_ALIASES = {
    "application/x-pdf": PDF,
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "text/x-markdown": "text/markdown",
    "text/json": "application/json",
    "application/xhtml+xml": "text/html",
    "application/csv": "text/csv",
}


def _media_type(content_type: str | None) -> tuple[str | None, str | None]:
    """The media type and charset of a Content-Type header value."""
    if not content_type:
        return None, None
    kind, *params = (p.strip() for p in content_type.split(";"))
    charset = next(
        (p.split("=", 1)[1].strip("\"' ") for p in params if p.lower().startswith("charset=")),
        None,
    )
    kind = kind.lower()
    return _DECLARED_ALIASES.get(kind, kind), charset


def _sniff_binary(data: bytes) -> str | None:
    """The type of a binary document by its magic bytes."""
    head = data[:16]
    if b"%PDF-" in data[:1024]:  # the spec allows junk before the header
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"BM"):
        return "image/bmp"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile:
            return "application/zip"
        return DOCX if "word/document.xml" in names else "application/zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "application/x-ole-storage"  # legacy .doc/.xls
    return None


def _looks_textual(data: bytes) -> bool:
    sample = data[:8192]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut at the end of the sample is still text.
        return e.start >= len(sample) - 3
    return True


def _sniff_text(data: bytes) -> str:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"{", b"[")):
        try:
            json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError):
            pass
        else:
            return "application/json"
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head or b"<html" in head:
        return "text/html"
    return "text/plain"


def _detect(source: _Source, fetched: _Fetched) -> str:
    """The media type of a document: extension, magic bytes, declared type, then text."""
    extension = PurePosixPath(source.name.lower()).suffix
    if extension in _BY_EXTENSION:
        return _BY_EXTENSION[extension]
    sniffed = _sniff_binary(fetched.data)
    if sniffed in _SUPPORTED:
        return sniffed
    declared, _ = _media_type(fetched.content_type)
    if declared in _SUPPORTED:
        return declared
    if sniffed is None and _looks_textual(fetched.data):
        return _sniff_text(fetched.data)
    guessed = mimetypes.guess_type(source.name)[0] if extension else None
    return guessed or sniffed or declared or "application/octet-stream"


# --- parsing ----------------------------------------------------------------------------------


@dataclass
class _Parsed:
    """A parsed document before the output shape is applied."""

    text: str
    pages: list[str]
    tables: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Job:
    """What every parser needs: the document, the node's config and context."""

    data: bytes
    source: _Source
    config: DocumentsParseConfig
    ctx: NodeContext
    charset: str | None = None
    _ocr: _Ocr | None = None

    @property
    def ocr(self) -> _Ocr:
        if self._ocr is None:
            self._ocr = _Ocr(self.ctx.settings.documents, self.config, self.source)
        return self._ocr

    def page_started(self, number: int) -> None:
        """Heartbeat with the page number; stop if Temporal cancelled the node."""
        self.ctx.heartbeat(number)
        if self.ctx.is_cancelled():
            raise asyncio.CancelledError(f"{self.source.display}: cancelled at page {number}")

    def text(self) -> tuple[str, str]:
        """The document decoded as text, and the encoding used."""
        for encoding in (self.charset, "utf-8-sig"):
            if encoding:
                try:
                    return _newlines(self.data.decode(encoding)), encoding.replace("-sig", "")
                except (UnicodeDecodeError, LookupError):
                    continue
        # Not UTF-8: most such files in the wild are Windows-1252.
        return _newlines(self.data.decode("cp1252", errors="replace")), "cp1252"


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _parse_plain(job: _Job) -> _Parsed:
    text, encoding = job.text()
    return _Parsed(text, [text], metadata={"encoding": encoding})


def _parse_markdown(job: _Job) -> _Parsed:
    parsed = _parse_plain(job)
    heading = re.search(r"^#\s+(.+?)\s*#*\s*$", parsed.text, re.MULTILINE)
    if heading:
        parsed.metadata["title"] = heading.group(1)
    return parsed


def _parse_json(job: _Job) -> _Parsed:
    parsed = _parse_plain(job)
    try:
        value = json.loads(parsed.text)
    except ValueError as e:
        raise PermanentNodeError(f"{job.source.display}: not valid JSON: {e}") from e
    if isinstance(value, dict):
        parsed.metadata["keys"] = list(value)
    elif isinstance(value, list):
        parsed.metadata["length"] = len(value)
    parsed.metadata["data"] = value
    return parsed


def _parse_csv(job: _Job, mime_type: str) -> _Parsed:
    parsed = _parse_plain(job)
    if mime_type == "text/tab-separated-values":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(parsed.text[:8192], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    try:
        rows = [row for row in csv.reader(io.StringIO(parsed.text), delimiter=delimiter) if row]
    except csv.Error as e:
        raise PermanentNodeError(f"{job.source.display}: not readable as CSV: {e}") from e
    if rows:
        parsed.tables = [{"header": rows[0], "rows": rows[1:]}]
    parsed.metadata.update(
        delimiter=delimiter,
        row_count=max(len(rows) - 1, 0),
        columns=rows[0] if rows else [],
    )
    return parsed


# Elements whose content is never visible text.
# fmt: off
_HTML_HIDDEN = [
    "script", "style", "noscript", "template", "head", "title", "meta", "link", "svg", "iframe",
    "object", "embed", "canvas",
]
# fmt: on
# Elements that start a new line.
# fmt: off
_HTML_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "caption", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
    "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "section", "summary", "table",
    "tbody", "thead", "tfoot", "ul", "body", "html", "option", "label", "legend",
})
# fmt: on


def _parse_html(job: _Job) -> _Parsed:
    from bs4 import BeautifulSoup

    # Bytes, not text: BeautifulSoup honours <meta charset> when the server declared none.
    soup = BeautifulSoup(job.data, "html.parser", from_encoding=job.charset)
    metadata: dict[str, Any] = {"encoding": soup.original_encoding}
    if soup.title and _collapse(soup.title.get_text(" ")):
        metadata["title"] = _collapse(soup.title.get_text(" "))
    for name in ("description", "author", "keywords"):
        meta = soup.find("meta", attrs={"name": re.compile(f"^{name}$", re.IGNORECASE)})
        content = meta.get("content") if meta is not None else None
        if isinstance(content, str) and content.strip():
            metadata[name] = content.strip()
    html = soup.find("html")
    lang = html.get("lang") if html is not None else None
    if isinstance(lang, str) and lang:
        metadata["lang"] = lang
    for hidden in soup.find_all(_HTML_HIDDEN):
        hidden.decompose()
    tables = [_html_table(table) for table in soup.find_all("table")]
    text = _html_text(soup)
    return _Parsed(text, [text], [t for t in tables if t["header"] or t["rows"]], metadata)


def _collapse(text: str) -> str:
    """HTML whitespace: any run of spaces and newlines reads as one space."""
    return re.sub(r"\s+", " ", text).strip()


def _html_rows(table: Tag) -> list[Tag]:
    """The rows of a table, not of the tables nested in it."""
    return [row for row in table.find_all("tr") if row.find_parent("table") is table]


def _html_cells(row: Tag) -> list[str]:
    return [_collapse(cell.get_text(" ")) for cell in row.find_all(["td", "th"], recursive=False)]


def _html_table(table: Tag) -> dict[str, Any]:
    rows = _html_rows(table)
    header: list[str] = []
    if rows:
        first = rows[0]
        cells = first.find_all(["td", "th"], recursive=False)
        in_head = first.find_parent("thead") is not None
        if in_head or (cells and all(cell.name == "th" for cell in cells)):
            header = _html_cells(first)
            rows = rows[1:]
    return {"header": header, "rows": [_html_cells(row) for row in rows]}


def _html_text(soup: BeautifulSoup) -> str:
    """Visible text, one line per block element, table cells separated by tabs."""
    from bs4.element import NavigableString, PreformattedString, Tag

    lines: list[str] = []
    current: list[str] = []

    def flush() -> None:
        line = _collapse("".join(current))
        if line:
            lines.append(line)
        current.clear()

    # Iterative walk: deeply nested pages must not hit the recursion limit.
    stack: list[tuple[Any, bool]] = [(soup, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            flush()
        elif isinstance(node, NavigableString):
            if not isinstance(node, PreformattedString):  # comments, doctypes, CDATA
                current.append(str(node))
        elif isinstance(node, Tag):
            if node.name == "br":
                flush()
            elif node.name == "tr":
                flush()
                cells = "\t".join(_html_cells(node))
                if cells.strip():
                    lines.append(cells)
            elif node.name == "pre":
                flush()
                lines.extend(line.rstrip() for line in node.get_text().strip("\n").split("\n"))
            else:
                if node.name in _HTML_BLOCKS:
                    flush()
                    stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.contents))
    flush()
    return "\n".join(lines)


# fmt: off
_DOCX_PROPERTIES = (
    "title", "author", "subject", "keywords", "category", "comments", "last_modified_by",
    "created", "modified", "revision",
)
# fmt: on


def _parse_docx(job: _Job) -> _Parsed:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(io.BytesIO(job.data))
    lines: list[str] = []
    tables: list[dict[str, Any]] = []
    paragraphs = 0
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            paragraphs += 1
            lines.append(block.text)
        elif isinstance(block, Table):
            rows = [[cell.text for cell in row.cells] for row in block.rows]
            lines.extend("\t".join(c.replace("\n", " ") for c in row) for row in rows)
            if rows:
                tables.append({"header": rows[0], "rows": rows[1:]})
    text = "\n".join(lines).strip("\n")
    props = document.core_properties
    metadata: dict[str, Any] = {
        name: _json_value(getattr(props, name))
        for name in _DOCX_PROPERTIES
        if getattr(props, name) not in (None, "")
    }
    metadata.update(paragraph_count=paragraphs, table_count=len(tables))
    return _Parsed(text, [text], tables, metadata)


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


# pdfium is not thread-safe, and node types run in threads: one document at a time.
_PDFIUM_LOCK = threading.Lock()


def _parse_pdf(job: _Job) -> _Parsed:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(job.data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise PermanentNodeError(f"{job.source.display}: the PDF is encrypted with a password")
    total = len(reader.pages)
    limit = min(total, job.config.max_pages or total)
    pages: list[str] = []
    ocr_pages: list[int] = []
    rendered: Any = None  # the pypdfium2 document, opened on the first page that needs OCR
    try:
        for index in range(limit):
            number = index + 1
            job.page_started(number)
            try:
                text = (reader.pages[index].extract_text() or "").strip("\n")
            except Exception as e:
                raise PermanentNodeError(
                    f"{job.source.display}: cannot read page {number}: {type(e).__name__}: {e}"
                ) from e
            wants_ocr = job.config.ocr == "always" or (
                job.config.ocr == "auto" and not text.strip()
            )
            if wants_ocr:
                job.ocr.check()
                if rendered is None:
                    rendered = _open_pdfium(job.data)
                text = job.ocr.read(
                    _render_page(rendered, index, job.ctx.settings.documents.ocr_dpi)
                )
                ocr_pages.append(number)
            pages.append(text)
    finally:
        if rendered is not None:
            with _PDFIUM_LOCK:
                rendered.close()
    metadata: dict[str, Any] = {"page_count": total, **_pdf_info(reader)}
    if limit < total:
        metadata["truncated"] = True
    if ocr_pages:
        metadata["ocr_pages"] = ocr_pages
        metadata["ocr_language"] = job.config.ocr_language
    return _Parsed("\n\n".join(p for p in pages if p), pages, [], metadata)


# fmt: off
_PDF_PROPERTIES = (
    "title", "author", "subject", "creator", "producer", "creation_date", "modification_date",
)
# fmt: on


def _pdf_info(reader: Any) -> dict[str, Any]:
    """Title, author, dates... of a PDF; a malformed entry is left out, not fatal."""
    info: dict[str, Any] = {}
    try:
        meta = reader.metadata
    except Exception:
        return info
    if meta is None:
        return info
    for name in _PDF_PROPERTIES:
        try:
            value = getattr(meta, name)
        except Exception:
            continue
        if value not in (None, ""):
            info[name] = _json_value(value) if isinstance(value, datetime) else str(value)
    return info


def _open_pdfium(data: bytes) -> Any:
    import pypdfium2

    with _PDFIUM_LOCK:
        return pypdfium2.PdfDocument(data)


def _render_page(document: Any, index: int, dpi: int) -> Image:
    with _PDFIUM_LOCK:
        page = document[index]
        try:
            image: Image = page.render(scale=dpi / 72).to_pil()
            return image
        finally:
            page.close()


def _parse_image(job: _Job) -> _Parsed:
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(job.data)) as image:
        # Only TIFF holds pages; the other frames of a GIF or WEBP are animation.
        frames = getattr(image, "n_frames", 1) if image.format == "TIFF" else 1
        limit = min(frames, job.config.max_pages or frames)
        metadata: dict[str, Any] = {
            "format": image.format,
            "width": image.width,
            "height": image.height,
            "page_count": frames,
        }
        pages: list[str] = []
        for index in range(limit):
            job.page_started(index + 1)
            image.seek(index)
            pages.append(job.ocr.read(image) if job.config.ocr != "never" else "")
    if limit < frames:
        metadata["truncated"] = True
    if job.config.ocr != "never":
        metadata["ocr_pages"] = list(range(1, limit + 1))
        metadata["ocr_language"] = job.config.ocr_language
    return _Parsed("\n\n".join(p for p in pages if p), pages, [], metadata)


class _Ocr:
    """Tesseract through pytesseract, checked once per node run before the first page."""

    def __init__(
        self, settings: DocumentsSettings, config: DocumentsParseConfig, source: _Source
    ) -> None:
        self._settings = settings
        self._language = config.ocr_language
        self._psm = config.ocr_psm
        self._source = source
        self._checked = False

    def check(self) -> None:
        """Fail clearly if tesseract or one of the languages is missing."""
        if self._checked:
            return
        import pytesseract

        command = shutil.which(self._settings.tesseract_cmd)
        if command is None:
            raise PermanentNodeError(
                f"{self._source.display} needs OCR, but tesseract "
                f"({self._settings.tesseract_cmd!r}) is not installed: install the Debian "
                "package tesseract-ocr (apt-get install tesseract-ocr)"
            )
        pytesseract.pytesseract.tesseract_cmd = command
        try:
            available = set(pytesseract.get_languages(config=""))
        except (OSError, pytesseract.TesseractError) as e:
            raise PermanentNodeError(f"{self._source.display}: tesseract does not run: {e}") from e
        missing = [lang for lang in self._language.split("+") if lang not in available]
        if missing:
            raise PermanentNodeError(
                f"{self._source.display}: OCR language {'+'.join(missing)} is not installed "
                f"(have {', '.join(sorted(available))}; Debian packages "
                f"{', '.join('tesseract-ocr-' + m.lower() for m in missing)})"
            )
        self._checked = True

    def read(self, image: Image) -> str:
        """The text tesseract reads in one image."""
        import pytesseract

        self.check()
        try:
            text = pytesseract.image_to_string(
                _flatten(image),
                lang=self._language,
                config=f"--psm {self._psm}",
                timeout=self._settings.ocr_page_timeout_seconds,
            )
        except RuntimeError as e:  # pytesseract's timeout
            raise PermanentNodeError(
                f"{self._source.display}: OCR of a page took longer than "
                f"{self._settings.ocr_page_timeout_seconds:g} s ({e})"
            ) from e
        except (OSError, pytesseract.TesseractError) as e:
            raise PermanentNodeError(f"{self._source.display}: OCR failed: {e}") from e
        return str(text).strip()


def _flatten(image: Image) -> Image:
    """An RGB or grey image: transparency on white (tesseract reads transparent as black)."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


_LABELS = {PDF: "PDF", DOCX: "DOCX", "text/html": "HTML", "text/csv": "CSV"}


def _parse(job: _Job, mime_type: str) -> _Parsed:
    """Parse by type; failures of the parsing libraries become a PermanentNodeError."""
    try:
        if mime_type == PDF:
            return _parse_pdf(job)
        if mime_type == DOCX:
            return _parse_docx(job)
        if mime_type in _IMAGE_TYPES:
            return _parse_image(job)
        if mime_type == "text/html":
            return _parse_html(job)
        if mime_type in ("text/csv", "text/tab-separated-values"):
            return _parse_csv(job, mime_type)
        if mime_type == "application/json":
            return _parse_json(job)
        if mime_type == "text/markdown":
            return _parse_markdown(job)
        return _parse_plain(job)
    except (NodeError, asyncio.CancelledError):
        raise
    except Exception as e:
        # Corrupt documents make these libraries raise almost anything (KeyError, struct.error,
        # their own errors...): name the source and the cause.
        label = _LABELS.get(mime_type, mime_type)
        raise PermanentNodeError(
            f"{job.source.display}: not a readable {label} document: {type(e).__name__}: {e}"
        ) from e


@node_type("documents.parse", DocumentsParseConfig)
async def documents_parse(config: DocumentsParseConfig, ctx: NodeContext) -> dict[str, Any]:
    """Read a document (path, file://, s3://, http(s)://) into text, pages, tables, metadata.

    PDF, DOCX, HTML, TXT/MD, CSV, JSON; images and scanned PDF pages by OCR (tesseract).
    """
    source = _parse_source(config.source)
    fetched = await _fetch(source, ctx)
    mime_type = _detect(source, fetched)
    if mime_type not in _SUPPORTED:
        raise PermanentNodeError(
            f"{source.display}: unsupported format {mime_type} (documents.parse reads PDF, DOCX, "
            "HTML, TXT, MD, CSV, JSON and PNG/JPEG/TIFF/GIF/BMP/WEBP images)"
        )
    job = _Job(fetched.data, source, config, ctx, charset=_media_type(fetched.content_type)[1])
    # Parsing and OCR block: run them in a thread, heartbeating per page.
    parsed = await asyncio.to_thread(_parse, job, mime_type)
    metadata: dict[str, Any] = {
        "filename": source.name,
        "size_bytes": len(fetched.data),
        # What lineage traces records back to (tideflow lineage --document).
        "sha256": hashlib.sha256(fetched.data).hexdigest(),
    }
    metadata.update(parsed.metadata)
    if config.output_format == "text":
        metadata.pop("data", None)
    return {
        "text": parsed.text,
        "pages": [{"number": n, "text": t} for n, t in enumerate(parsed.pages, start=1)],
        "tables": parsed.tables if config.output_format == "json" else [],
        "metadata": metadata,
        "mime_type": mime_type,
    }
