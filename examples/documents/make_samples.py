"""Regenerate the demo invoices and their true field values, byte for byte.

    python examples/documents/make_samples.py [--out FOLDER]

Writes ``invoice-acme.pdf`` (a text PDF, fpdf2), ``invoice-globex.docx`` (python-docx),
``invoice-initech-scan.png`` (a rendered page for OCR, Pillow with the DejaVu fonts of Debian's
``fonts-dejavu-core``) and ``expected.json`` (what an extraction should find in each) into
FOLDER, by default the folder of this script. Every invoice and ``expected.json`` come from the
same data below, so they cannot disagree. Timestamps are fixed, so a second run with the same
library versions writes the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

FIXED_TIME = datetime(2024, 6, 1, 9, 0, 0, tzinfo=UTC)
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class LineItem:
    """One line of an invoice."""

    description: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        """Quantity times unit price."""
        return (self.unit_price * self.quantity).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class Invoice:
    """The fields of one sample invoice."""

    filename: str
    invoice_number: str
    issued: date
    date_text: str
    """The date as the document prints it (each vendor writes dates its own way)."""
    vendor_name: str
    vendor_address: tuple[str, ...]
    customer_name: str
    customer_address: tuple[str, ...]
    currency: str
    tax_label: str
    tax_rate: Decimal
    items: tuple[LineItem, ...]
    terms: str

    @property
    def subtotal(self) -> Decimal:
        """Sum of the line amounts."""
        return sum((item.amount for item in self.items), Decimal("0"))

    @property
    def tax(self) -> Decimal:
        """Tax on the subtotal, rounded half up to the cent."""
        return (self.subtotal * self.tax_rate).quantize(CENT, ROUND_HALF_UP)

    @property
    def total(self) -> Decimal:
        """Subtotal plus tax: the amount due."""
        return self.subtotal + self.tax

    def expected(self) -> dict[str, Any]:
        """The true values an extraction of this invoice should return."""
        return {
            "invoice_number": self.invoice_number,
            "date": self.issued.isoformat(),
            "vendor_name": self.vendor_name,
            "customer_name": self.customer_name,
            "currency": self.currency,
            "subtotal": float(self.subtotal),
            "tax": float(self.tax),
            "total_amount": float(self.total),
            "line_items": [
                {
                    "description": item.description,
                    "quantity": item.quantity,
                    "unit_price": float(item.unit_price),
                    "amount": float(item.amount),
                }
                for item in self.items
            ],
        }


ACME = Invoice(
    filename="invoice-acme.pdf",
    invoice_number="INV-10487",
    issued=date(2024, 3, 14),
    date_text="March 14, 2024",
    vendor_name="Acme Corporation",
    vendor_address=("1200 Industrial Way", "Phoenix, AZ 85001", "billing@acme.example.com"),
    customer_name="Northwind Traders",
    customer_address=("88 Harbor Road", "Seattle, WA 98101"),
    currency="USD",
    tax_label="Sales tax (8%)",
    tax_rate=Decimal("0.08"),
    items=(
        LineItem("Rocket skates (pair)", 2, Decimal("149.99")),
        LineItem("Giant horseshoe magnet", 1, Decimal("89.50")),
        LineItem("Anvil, 50 lb", 3, Decimal("45.00")),
    ),
    terms="Net 30",
)

GLOBEX = Invoice(
    filename="invoice-globex.docx",
    invoice_number="GLX-2024-0392",
    issued=date(2024, 4, 2),
    date_text="2 April 2024",
    vendor_name="Globex Corporation",
    vendor_address=("Hauptstrasse 17", "10115 Berlin, Germany", "accounts@globex.example.com"),
    customer_name="Contoso GmbH",
    customer_address=("Marktplatz 4", "80331 Munich, Germany"),
    currency="EUR",
    tax_label="VAT (19%)",
    tax_rate=Decimal("0.19"),
    items=(
        LineItem("Consulting services (hours)", 12, Decimal("175.00")),
        LineItem("Server rack installation", 1, Decimal("850.00")),
        LineItem("Cat6 network cable (box)", 4, Decimal("62.25")),
        LineItem("Annual support plan", 1, Decimal("1200.00")),
    ),
    terms="Payable within 14 days",
)

INITECH = Invoice(
    filename="invoice-initech-scan.png",
    invoice_number="IN-7731",
    issued=date(2024, 5, 21),
    date_text="05/21/2024",
    vendor_name="Initech LLC",
    vendor_address=("4120 Freidrich Lane", "Austin, TX 78744"),
    customer_name="Chotchkie's Restaurant",
    customer_address=("950 Main Street", "Austin, TX 78701"),
    currency="USD",
    tax_label="Tax (7.25%)",
    tax_rate=Decimal("0.0725"),
    items=(
        LineItem("TPS report cover sheets (pack of 500)", 3, Decimal("24.99")),
        LineItem("Red stapler", 2, Decimal("18.50")),
    ),
    terms="Due on receipt",
)

INVOICES = (ACME, GLOBEX, INITECH)


def money(value: Decimal, currency: str) -> str:
    """An amount as the invoices print it: 1,234.50 USD."""
    return f"{value:,.2f} {currency}"


def write_pdf(invoice: Invoice, path: Path) -> None:
    """A one-page text PDF in the core Helvetica font (nothing embedded, nothing dated)."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(FIXED_TIME)
    pdf.set_title(f"Invoice {invoice.invoice_number}")
    pdf.set_author(invoice.vendor_name)
    pdf.set_subject(f"Invoice for {invoice.customer_name}")
    pdf.set_creator("Tideflow make_samples.py")
    pdf.add_page()

    def line(text: str, size: int = 11, style: str = "", height: float = 6) -> None:
        pdf.set_font("Helvetica", style=style, size=size)
        pdf.cell(0, height, text, new_x="LMARGIN", new_y="NEXT")

    line(invoice.vendor_name, size=20, style="B", height=10)
    for address_line in invoice.vendor_address:
        line(address_line)
    pdf.ln(6)
    line("INVOICE", size=16, style="B", height=9)
    line(f"Invoice number: {invoice.invoice_number}")
    line(f"Invoice date: {invoice.date_text}")
    line(f"Terms: {invoice.terms}")
    pdf.ln(4)
    line("Bill to:", style="B")
    line(invoice.customer_name)
    for address_line in invoice.customer_address:
        line(address_line)
    pdf.ln(6)

    widths = (90, 20, 40, 40)
    pdf.set_font("Helvetica", style="B", size=11)
    for width, title, align in zip(
        widths, ("Description", "Qty", "Unit price", "Amount"), "LRRR", strict=True
    ):
        pdf.cell(width, 8, title, border="B", align=align)
    pdf.ln(8)
    pdf.set_font("Helvetica", size=11)
    for item in invoice.items:
        pdf.cell(widths[0], 7, item.description)
        pdf.cell(widths[1], 7, str(item.quantity), align="R")
        pdf.cell(widths[2], 7, f"{item.unit_price:,.2f}", align="R")
        pdf.cell(widths[3], 7, f"{item.amount:,.2f}", align="R")
        pdf.ln(7)
    pdf.ln(3)
    for label, value, style in (
        ("Subtotal", invoice.subtotal, ""),
        (invoice.tax_label, invoice.tax, ""),
        ("Total due", invoice.total, "B"),
    ):
        pdf.set_font("Helvetica", style=style, size=11)
        pdf.cell(sum(widths[:3]), 7, label, align="R")
        pdf.cell(widths[3], 7, money(value, invoice.currency), align="R")
        pdf.ln(7)
    pdf.ln(8)
    line("Thank you for your business.", size=10)
    path.write_bytes(bytes(pdf.output()))


def write_docx(invoice: Invoice, path: Path) -> None:
    """A DOCX invoice: paragraphs, a line-item table and fixed core properties."""
    import docx

    document = docx.Document()
    document.add_heading(invoice.vendor_name, level=0)
    document.add_paragraph("\n".join(invoice.vendor_address))
    document.add_heading("Invoice", level=1)
    document.add_paragraph(f"Invoice No.: {invoice.invoice_number}")
    document.add_paragraph(f"Date of issue: {invoice.date_text}")
    document.add_paragraph(
        f"Customer: {invoice.customer_name}, {', '.join(invoice.customer_address)}"
    )
    table = document.add_table(rows=1, cols=4)
    table.style = "Table Grid"
    for cell, title in zip(
        table.rows[0].cells, ("Description", "Quantity", "Unit price", "Amount"), strict=True
    ):
        cell.text = title
    for item in invoice.items:
        cells = table.add_row().cells
        cells[0].text = item.description
        cells[1].text = str(item.quantity)
        cells[2].text = f"{item.unit_price:,.2f} {invoice.currency}"
        cells[3].text = f"{item.amount:,.2f} {invoice.currency}"
    document.add_paragraph(f"Net amount: {money(invoice.subtotal, invoice.currency)}")
    document.add_paragraph(f"{invoice.tax_label}: {money(invoice.tax, invoice.currency)}")
    document.add_paragraph(f"Total amount: {money(invoice.total, invoice.currency)}")
    document.add_paragraph(invoice.terms)

    props = document.core_properties
    props.title = f"Invoice {invoice.invoice_number}"
    props.author = f"{invoice.vendor_name} Billing"
    props.last_modified_by = f"{invoice.vendor_name} Billing"
    props.subject = f"Invoice for {invoice.customer_name}"
    props.comments = ""  # the template says "generated by python-docx"
    props.created = props.modified = props.last_printed = FIXED_TIME.replace(tzinfo=None)
    props.revision = 1

    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(_fixed_zip_times(buffer.getvalue()))


def _fixed_zip_times(data: bytes) -> bytes:
    """The same ZIP with every entry dated 1980-01-01 (python-docx stamps the current time)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            target.writestr(fixed, source.read(info))
    return out.getvalue()


def _font(name: str, size: int) -> Any:
    from PIL import ImageFont

    path = FONT_DIR / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: install the Debian package fonts-dejavu-core")
    return ImageFont.truetype(str(path), size)


def write_png(invoice: Invoice, path: Path) -> None:
    """An A4 page at 150 dpi in large DejaVu Sans: what a clean scan looks like to OCR."""
    from PIL import Image, ImageDraw

    width, height = 1240, 1754
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    title, body, bold = (
        _font("DejaVuSans-Bold.ttf", 52),
        _font("DejaVuSans.ttf", 30),
        _font("DejaVuSans-Bold.ttf", 30),
    )
    left, right = 100, width - 100
    y = 100

    def text(value: str, font: Any = body, x: int = left, gap: int = 46) -> None:
        nonlocal y
        draw.text((x, y), value, font=font, fill=0)
        y += gap

    def right_aligned(value: str, x_right: int, font: Any = body) -> None:
        draw.text((x_right - font.getlength(value), y), value, font=font, fill=0)

    text(invoice.vendor_name, title, gap=80)
    for address_line in invoice.vendor_address:
        text(address_line)
    y += 40
    text("INVOICE", bold, gap=60)
    text(f"Invoice #: {invoice.invoice_number}")
    text(f"Date: {invoice.date_text}")
    text(f"Terms: {invoice.terms}")
    y += 30
    text("Bill To:", bold)
    text(invoice.customer_name)
    for address_line in invoice.customer_address:
        text(address_line)
    y += 50

    columns = (left, 800, 960, right)  # description starts; qty, price, amount end
    draw.text((columns[0], y), "Description", font=bold, fill=0)
    right_aligned("Qty", columns[1], bold)
    right_aligned("Price", columns[2], bold)
    right_aligned("Amount", columns[3], bold)
    y += 46
    draw.line((left, y, right, y), fill=0, width=3)
    y += 20
    for item in invoice.items:
        draw.text((columns[0], y), item.description, font=body, fill=0)
        right_aligned(str(item.quantity), columns[1])
        right_aligned(f"{item.unit_price:,.2f}", columns[2])
        right_aligned(f"{item.amount:,.2f}", columns[3])
        y += 50
    draw.line((left, y, right, y), fill=0, width=3)
    y += 30
    for label, value, font in (
        ("Subtotal:", invoice.subtotal, body),
        (f"{invoice.tax_label}:", invoice.tax, body),
        ("TOTAL:", invoice.total, bold),
    ):
        right_aligned(label, columns[3] - 300, font)
        right_aligned(money(value, invoice.currency), columns[3], font)
        y += 50
    image.save(path, format="PNG", dpi=(150, 150), optimize=False)


def write_samples(folder: Path) -> list[Path]:
    """Write the three invoices and expected.json into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    write_pdf(ACME, folder / ACME.filename)
    write_docx(GLOBEX, folder / GLOBEX.filename)
    write_png(INITECH, folder / INITECH.filename)
    expected = {invoice.filename: invoice.expected() for invoice in INVOICES}
    (folder / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return [folder / invoice.filename for invoice in INVOICES] + [folder / "expected.json"]


def main() -> None:
    """Command line: write the samples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    for path in write_samples(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
