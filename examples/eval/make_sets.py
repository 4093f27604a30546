"""Regenerate the labelled evaluation sets of ``tideflow eval``, byte for byte.

    python examples/eval/make_sets.py [--out FOLDER]

Writes into FOLDER (default: this script's folder):

* ``invoices/``: six invoices, two each as a text PDF, a DOCX and a scanned PNG, rendered by
  ``examples/documents/make_samples.py`` from the data below, with ``expected.json`` (header
  fields and line items, from the same data: they cannot disagree);
* ``texts.jsonl``: short texts of seven kinds, each with its label;
* ``summaries.jsonl``: texts to summarise, each with the facts a summary must keep.

``invoices.yaml``, ``classify.yaml`` and ``summarize.yaml`` beside them are the definitions
they evaluate; bench/ai_models.py runs them with every local model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_SAMPLES = HERE.parent / "documents" / "make_samples.py"


def _samples() -> Any:
    spec = importlib.util.spec_from_file_location("make_samples", _SAMPLES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_samples"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def invoices(samples: Any) -> list[Any]:
    """The six invoices: the demo's three, and three more in other hands and currencies."""
    invoice, item = samples.Invoice, samples.LineItem
    return [
        samples.ACME,
        samples.GLOBEX,
        samples.INITECH,
        invoice(
            filename="invoice-umbrella.pdf",
            invoice_number="UMB-55120",
            issued=date(2024, 7, 9),
            date_text="9 July 2024",
            vendor_name="Umbrella Supplies Ltd",
            vendor_address=("14 Raccoon Street", "Leeds LS1 4AP, United Kingdom"),
            customer_name="Hawkins Laboratory",
            customer_address=("1 Lab Road", "Bristol BS1 5TR, United Kingdom"),
            currency="GBP",
            tax_label="VAT (20%)",
            tax_rate=Decimal("0.20"),
            items=(
                item("Nitrile gloves (box of 100)", 10, Decimal("7.80")),
                item("Safety goggles", 4, Decimal("12.50")),
                item("Lab coat, size M", 2, Decimal("34.00")),
            ),
            terms="Net 30",
        ),
        invoice(
            filename="invoice-stark.docx",
            invoice_number="SI-2024-118",
            issued=date(2024, 8, 30),
            date_text="August 30, 2024",
            vendor_name="Stark Industries",
            vendor_address=("10880 Malibu Point", "Malibu, CA 90265"),
            customer_name="Pym Technologies",
            customer_address=("500 Market Street", "San Francisco, CA 94105"),
            currency="USD",
            tax_label="Sales tax (9.5%)",
            tax_rate=Decimal("0.095"),
            items=(
                item("Arc reactor maintenance (hours)", 6, Decimal("240.00")),
                item("Repulsor calibration kit", 2, Decimal("615.00")),
            ),
            terms="Payable within 30 days",
        ),
        invoice(
            filename="invoice-wayne-scan.png",
            invoice_number="WE-90412",
            issued=date(2024, 10, 3),
            date_text="10/03/2024",
            vendor_name="Wayne Enterprises",
            vendor_address=("1007 Mountain Drive", "Gotham, NJ 07001"),
            customer_name="Gotham City Police",
            customer_address=("1 Police Plaza", "Gotham, NJ 07002"),
            currency="USD",
            tax_label="Tax (6.625%)",
            tax_rate=Decimal("0.06625"),
            items=(
                item("Floodlight lamp", 2, Decimal("310.00")),
                item("Kevlar vest", 5, Decimal("420.00")),
                item("Radio headset", 8, Decimal("95.50")),
            ),
            terms="Due on receipt",
        ),
    ]


TEXTS: list[tuple[str, str]] = [
    # invoices
    (
        "invoice",
        "INVOICE No. 2291. Bill to: Harbor Cafe. 40 kg espresso beans at 18.00 = 720.00. "
        "VAT 20%: 144.00. Amount due: 864.00 EUR by 15 May 2024.",
    ),
    (
        "invoice",
        "Tax invoice TX-88. Services rendered in March: website maintenance, 12 hours at $85. "
        "Total payable: $1,020.00. Please pay within 30 days to the account below.",
    ),
    (
        "invoice",
        "Invoice #A-7. Client: Mrs. Patel. Plumbing repair, parts and labour: 340.00 GBP. "
        "Payment terms: 14 days. Late payments incur a 2% monthly charge.",
    ),
    # receipts
    (
        "receipt",
        "CORNER MARKET. 2x Milk 1L 2.38, Bread 1.99, Apples 3.20. TOTAL 7.57. Paid by card "
        "**** 4411. Thank you for shopping with us! 12/04/2024 17:42",
    ),
    (
        "receipt",
        "Payment received with thanks: 45.00 USD for parking, lot B, 2 hours. Transaction "
        "ID 77312. Keep this receipt for your records.",
    ),
    (
        "receipt",
        "Cafe Luna - Table 4. 1 Cappuccino 3.50, 1 Croissant 2.80. Subtotal 6.30, tip 0.70, "
        "paid cash 7.00. Change 0.00. Have a nice day!",
    ),
    # contracts
    (
        "contract",
        "This Agreement is made on 1 June 2024 between Alpha Ltd (the Supplier) and Beta Inc "
        "(the Customer). The Supplier shall deliver the goods described in Schedule 1. "
        "Either party may terminate this Agreement with 90 days written notice.",
    ),
    (
        "contract",
        "LEASE. The Landlord lets the flat at 12 Elm Road to the Tenant for a term of twelve "
        "months from 1 September 2024 at a monthly rent of 950 EUR. The Tenant agrees to keep "
        "the premises in good repair. Signed by both parties.",
    ),
    (
        "contract",
        "Non-disclosure agreement. The Recipient undertakes to keep confidential all "
        "information disclosed by the Discloser and not to use it for any other purpose. "
        "This obligation survives for five years after termination.",
    ),
    # complaints
    (
        "complaint",
        "I am writing to complain about the washing machine delivered last week. It leaks "
        "every time I use it and nobody answered my two calls. I expect a replacement or a "
        "full refund within seven days.",
    ),
    (
        "complaint",
        "Your train was 90 minutes late on Friday and the staff were rude when I asked for "
        "information. This is the third time this month. I want compensation for my ticket.",
    ),
    (
        "complaint",
        "The hotel room we booked was dirty, the air conditioning did not work and the "
        "reception refused to move us. I am very disappointed and request a partial refund.",
    ),
    # job applications
    (
        "job_application",
        "Dear Hiring Manager, I am applying for the position of Data Analyst advertised on "
        "your website. I have three years of experience with SQL and Python and attach my CV. "
        "I would welcome the chance to discuss my application.",
    ),
    (
        "job_application",
        "Please consider me for the nurse vacancy at St. Mary's. I qualified in 2019 and have "
        "worked in emergency care since. My references are available on request.",
    ),
    (
        "job_application",
        "Cover letter: I would like to join your team as a junior graphic designer. My "
        "portfolio is linked below; I am available to start in January.",
    ),
    # meeting notes
    (
        "meeting_notes",
        "Minutes, project sync 14 May. Present: Ana, Ben, Chloe. Decisions: launch moved to "
        "June 3. Actions: Ben to update the budget by Friday; Chloe to brief marketing.",
    ),
    (
        "meeting_notes",
        "Team standup notes: backend migration 80% done; blocker on the test database. "
        "Action items: Dev to request access; next meeting Thursday 10:00.",
    ),
    (
        "meeting_notes",
        "Board meeting notes, 2 April. Attendees: all directors. The board approved the "
        "annual accounts and agreed to review salaries in Q3. Meeting closed at 16:30.",
    ),
    # articles
    (
        "article",
        "How to get paid faster: small businesses that send invoices on the day work is done "
        "are paid eleven days sooner on average, a new survey finds. Experts also recommend "
        "clear payment terms and online payment links.",
    ),
    (
        "article",
        "City council approves new bike lanes. The network of 40 km will be built over three "
        "years, the mayor announced on Tuesday, after a public consultation that drew 5,000 "
        "responses.",
    ),
    (
        "article",
        "Scientists have found that octopuses change colour while they sleep, which may "
        "suggest they dream. The study, published this week, filmed four animals for a month.",
    ),
]

LABELS = {
    "invoice": "a bill asking the reader to pay for goods or services",
    "receipt": "proof of a payment that was already made",
    "contract": "an agreement that binds parties to terms",
    "complaint": "a customer telling a company what went wrong and asking for a remedy",
    "job_application": "someone applying for a job",
    "meeting_notes": "minutes or notes of a meeting, with decisions and actions",
    "article": "a news story or magazine article for the public",
}
"""The labels of ``classify.yaml``, with what they mean."""


SUMMARIES: list[tuple[str, list[str]]] = [
    (
        "Globex Corporation announced on 12 March 2024 that it will open a new research centre "
        "in Lyon, France. The centre will cost 45 million euros and employ about 300 "
        "engineers when it is fully staffed in 2026. Chief executive Hank Scorpio said the "
        "site was chosen for its universities and its rail links. Construction starts in "
        "September. Local officials welcomed the investment, the largest in the region this "
        "decade, although some residents worry about traffic on the narrow roads around the "
        "site. Globex already runs two research sites in Germany.",
        ["Lyon", "45 million", "300"],
    ),
    (
        "The board of Northwind Traders met on 2 April and approved the annual accounts for "
        "2023. Revenue rose 12% to 8.4 million dollars, while profit fell slightly because of "
        "higher shipping costs. The board agreed to pay a dividend of 20 cents per share in "
        "May and to open a warehouse in Rotterdam next year. Two directors, Ana Ruiz and Ben "
        "Okafor, were re-elected. The next meeting is set for 15 July.",
        ["12%", "8.4 million", "Rotterdam"],
    ),
    (
        "A storm crossed the north coast on Sunday night with winds of up to 130 km/h. About "
        "40,000 homes lost power, and the coastal railway between Port Ellis and Marrow Bay "
        "was closed after trees fell on the line. No one was seriously hurt. The electricity "
        "company expects to restore power to all homes by Tuesday evening, and the railway "
        "should reopen on Wednesday once the line has been inspected.",
        ["130 km/h", "40,000", "Wednesday"],
    ),
    (
        "Our customer support team handled 18,200 requests in the third quarter, up from "
        "15,100 in the second. The average first answer came within 2.5 hours, well under "
        "our target of four hours, and satisfaction stayed at 91%. Most requests were about "
        "billing. In October we will add a self-service page for invoices and hire four more "
        "agents for the evening shift, which is the busiest.",
        ["18,200", "2.5 hours", "91%"],
    ),
    (
        "The city library will close for renovation from 1 June to 30 November 2024. During "
        "the work, books can be borrowed and returned at a temporary branch in the town hall, "
        "open Monday to Saturday from 9:00 to 18:00. The renovation, paid for by a grant of "
        "2.1 million euros, adds a children's floor, a cafe and step-free access to every "
        "room. Loans due during the closure are extended automatically until December.",
        ["1 June", "town hall", "2.1 million"],
    ),
]
MAX_WORDS = 60
"""The summaries' word limit (summarize.yaml's max_words)."""


def write_sets(folder: Path) -> list[Path]:
    """Write every set into ``folder``; the paths written."""
    samples = _samples()
    written: list[Path] = []
    target = folder / "invoices"
    target.mkdir(parents=True, exist_ok=True)
    writers = {".pdf": samples.write_pdf, ".docx": samples.write_docx, ".png": samples.write_png}
    expected: dict[str, Any] = {}
    for invoice in invoices(samples):
        path = target / invoice.filename
        writers[path.suffix](invoice, path)
        expected[invoice.filename] = invoice.expected()
        written.append(path)
    (target / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    written.append(target / "expected.json")

    lines = [
        {"id": f"{label}-{n}", "inputs": {"text": text}, "expected": {"label": label}}
        for n, (label, text) in enumerate(TEXTS, start=1)
    ]
    written.append(_jsonl(folder / "texts.jsonl", lines))
    lines = [
        {
            "id": f"summary-{n}",
            "inputs": {"text": text},
            # The summary output: complete sentences within the limit; the node's summary (the
            # same text, by its path): the facts it must keep.
            "expected": {
                "summary": {"$complete": True, "$max_words": MAX_WORDS},
                "summarize.summary": {"$mentions": facts},
            },
        }
        for n, (text, facts) in enumerate(SUMMARIES, start=1)
    ]
    written.append(_jsonl(folder / "summaries.jsonl", lines))
    return written


def _jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return path


def main() -> None:
    """Command line: write the sets."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    for path in write_sets(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
