"""PDF documents with ReportLab (docs/decisions/0021-pdf-receipts-with-reportlab.md).

A receipt is one page drawn on a canvas (a few milliseconds); a statement is a table
that flows over as many pages as it needs. The text font is DejaVu Sans when the
system has it (``LEVY_PDF_FONT_DIR``; it covers the accents of Yoruba, Igbo and Hausa
names), else the Bitstream Vera that ships inside ReportLab: no system package is
required. Fonts are embedded (subset), so the file looks the same everywhere.
"""

from __future__ import annotations

import datetime
import functools
import io
import os
import unicodedata
from decimal import Decimal

import reportlab
from django.conf import settings
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import LongTable, Paragraph, SimpleDocTemplate, Spacer, TableStyle

from levy.reports.selectors import Receipt, Statement

REGULAR, BOLD = "LevySans", "LevySans-Bold"
INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
RULE = colors.HexColor("#cbd2d9")
BAND = colors.HexColor("#f0f4f8")
ACCENT = colors.HexColor("#0b6e4f")


@functools.cache
def register_fonts() -> tuple[str, str]:
    """Register the text font once per process; return the regular and bold names."""
    directory = getattr(settings, "LEVY_PDF_FONT_DIR", "")
    dejavu = [os.path.join(directory, name) for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")]
    if directory and all(os.path.isfile(path) for path in dejavu):
        regular, bold = dejavu
    else:
        bundled = os.path.join(os.path.dirname(reportlab.__file__), "fonts")
        regular, bold = os.path.join(bundled, "Vera.ttf"), os.path.join(bundled, "VeraBd.ttf")
    pdfmetrics.registerFont(TTFont(REGULAR, regular))
    pdfmetrics.registerFont(TTFont(BOLD, bold))
    return REGULAR, BOLD


def money(amount: Decimal, currency: str) -> str:
    """``NGN 15,000.00``: exact (Decimal formatting), grouped for reading."""
    sign = "\N{MINUS SIGN}" if amount < 0 else ""
    return f"{sign}{currency} {abs(amount):,.2f}"


def when(moment: datetime.datetime) -> str:
    """``5 December 2026, 17:12 WAT (UTC+01:00)`` in the estate's time zone."""
    offset = moment.strftime("%z")
    zone = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    name = moment.tzname() or ""
    label = f"{name} ({zone})" if name and not name.startswith(("+", "-")) and name != "UTC" else zone
    return f"{moment.day} {moment:%B %Y, %H:%M} {label}"


def _fit(canvas: Canvas, text: str, font: str, size: float, width: float) -> str:
    """``text`` (composed: ReportLab does not place combining accents) shortened with an
    ellipsis until it fits ``width`` points."""
    text = unicodedata.normalize("NFC", text)
    if canvas.stringWidth(text, font, size) <= width:
        return text
    while text and canvas.stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _size_to_fit(canvas: Canvas, text: str, font: str, largest: float, smallest: float, width: float) -> float:
    """The largest font size from ``largest`` down to ``smallest`` at which ``text`` fits."""
    size = largest
    while size > smallest and canvas.stringWidth(text, font, size) > width:
        size -= 0.5
    return size


def _lines(canvas: Canvas, text: str, font: str, size: float, width: float) -> list[str]:
    """``text`` broken into lines of at most ``width`` points, at spaces."""
    lines: list[str] = []
    current = ""
    for word in unicodedata.normalize("NFC", text).split():
        candidate = f"{current} {word}".strip()
        if current and canvas.stringWidth(candidate, font, size) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines


# --- receipts -----------------------------------------------------------------------------


def render_receipt(receipt: Receipt) -> bytes:
    """One A4 page: who was paid and by whom, how much, when, for which bill, and the
    ledger reference that identifies the entry."""
    regular, bold = register_fonts()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=True, pageCompression=1)
    canvas.setTitle(f"Receipt {receipt.ledger_reference}")
    canvas.setAuthor(receipt.estate_name)
    canvas.setSubject(f"{receipt.kind} receipt")
    canvas.setCreator("Levy")
    width, height = A4
    left, right = 22 * mm, width - 22 * mm
    text_width = right - left

    # Header band: the estate, and what this document is.
    canvas.setFillColor(BAND)
    canvas.rect(0, height - 48 * mm, width, 48 * mm, stroke=0, fill=1)
    canvas.setFillColor(ACCENT)
    canvas.rect(0, height - 48 * mm, 4 * mm, 48 * mm, stroke=0, fill=1)
    y = height - 22 * mm
    canvas.setFont(bold, 12)
    canvas.setFillColor(ACCENT)
    canvas.drawRightString(right, y, "RECEIPT")
    name_width = text_width - canvas.stringWidth("RECEIPT", bold, 12) - 10 * mm
    name_size = _size_to_fit(canvas, receipt.estate_name, bold, 20, 13, name_width)
    canvas.setFillColor(INK)
    canvas.setFont(bold, name_size)
    canvas.drawString(left, y, _fit(canvas, receipt.estate_name, bold, name_size, name_width))
    y -= 8 * mm
    canvas.setFont(regular, 10.5)
    canvas.setFillColor(MUTED)
    canvas.drawString(left, y, f"{receipt.kind} receipt")
    canvas.drawRightString(right, y, receipt.ledger_reference)
    y -= 5.5 * mm
    canvas.drawRightString(right, y, when(receipt.paid_at))

    # The amount, large.
    y = height - 70 * mm
    canvas.setFillColor(MUTED)
    canvas.setFont(regular, 10.5)
    canvas.drawString(left, y, "Amount paid" if receipt.kind == "Bill payment" else "Amount received")
    y -= 12 * mm
    canvas.setFillColor(INK)
    canvas.setFont(bold, 28)
    canvas.drawString(left, y, money(receipt.amount, receipt.currency))
    y -= 9 * mm
    canvas.setStrokeColor(RULE)
    canvas.setLineWidth(0.8)
    canvas.line(left, y, right, y)

    # The details, as label and value rows.
    rows: list[tuple[str, str]] = [
        ("Estate", receipt.estate_name),
        ("Paid by" if receipt.kind == "Bill payment" else "Credited to", receipt.payer_name or receipt.payer_email),
        ("Email", receipt.payer_email),
    ]
    if receipt.bill_reference:
        rows.append(("Bill", f"{receipt.bill_reference} — {receipt.bill_title}"))
    elif receipt.note:
        rows.append(("Note", receipt.note.splitlines()[0]))
    rows += [
        ("Date and time", when(receipt.paid_at)),
        ("Ledger reference", receipt.ledger_reference),
        ("Transaction ID", receipt.transaction_id),
    ]
    if receipt.balance_after is not None:
        rows.append(("Wallet balance after", money(receipt.balance_after, receipt.currency)))
    label_width = 45 * mm
    y -= 10 * mm
    for label, value in rows:
        canvas.setFont(regular, 10)
        canvas.setFillColor(MUTED)
        canvas.drawString(left, y, label)
        canvas.setFont(regular, 11)
        canvas.setFillColor(INK)
        canvas.drawString(left + label_width, y, _fit(canvas, value, regular, 11, text_width - label_width))
        y -= 4 * mm
        canvas.setStrokeColor(BAND)
        canvas.line(left, y, right, y)
        y -= 6 * mm

    # Footer.
    canvas.setFont(regular, 8.5)
    canvas.setFillColor(MUTED)
    footer = (
        f"Issued by Levy on behalf of {receipt.estate_name}. The ledger reference identifies this entry in the "
        "estate's ledger. Ledger entries are never edited: a correction is a new entry."
    )
    y = 24 * mm
    for line in _lines(canvas, footer, regular, 8.5, text_width)[:3]:
        canvas.drawString(left, y, line)
        y -= 4.2 * mm
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


# --- statements ---------------------------------------------------------------------------


def _statement_page(canvas: Canvas, doc: SimpleDocTemplate, statement: Statement) -> None:
    regular, _ = register_fonts()
    canvas.saveState()
    canvas.setFont(regular, 8)
    canvas.setFillColor(MUTED)
    width, _ = A4
    footer = f"{statement.estate_name} — statement for {statement.member_name or statement.member_email}"
    canvas.drawString(18 * mm, 10 * mm, _fit(canvas, footer, regular, 8, width - 60 * mm))
    canvas.drawRightString(width - 18 * mm, 10 * mm, f"Page {doc.page}")
    canvas.restoreState()


def render_statement(statement: Statement) -> bytes:
    """The statement as a table that repeats its header on every page, between the
    opening and the closing balance."""
    regular, bold = register_fonts()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"Statement {statement.start.isoformat()} to {statement.end.isoformat()}",
        author=statement.estate_name,
        creator="Levy",
        invariant=True,
    )
    title = ParagraphStyle("title", fontName=bold, fontSize=18, leading=22, textColor=INK)
    small = ParagraphStyle("small", fontName=regular, fontSize=9.5, leading=13, textColor=MUTED)
    cell = ParagraphStyle("cell", fontName=regular, fontSize=8, leading=10, textColor=INK)
    currency = statement.currency
    period = f"{statement.start:%d %B %Y} to {statement.end:%d %B %Y}"
    story: list[object] = [
        Paragraph(_escape(statement.estate_name), title),
        Spacer(1, 2 * mm),
        Paragraph(f"Wallet statement, {period}", small),
        Paragraph(_escape(f"{statement.member_name} <{statement.member_email}> — amounts in {currency}"), small),
        Spacer(1, 6 * mm),
    ]
    summary = LongTable(
        [
            ["Opening balance", "Money in", "Money out", "Closing balance"],
            [
                f"{statement.opening_balance:,.2f}",
                f"{statement.money_in:,.2f}",
                f"{statement.money_out:,.2f}",
                f"{statement.closing_balance:,.2f}",
            ],
        ],
        colWidths=[43.5 * mm] * 4,
    )
    summary.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, 0), regular, 8.5),
                ("TEXTCOLOR", (0, 0), (-1, 0), MUTED),
                ("FONT", (0, 1), (-1, 1), bold, 13),
                ("TEXTCOLOR", (0, 1), (-1, 1), INK),
                ("BACKGROUND", (0, 0), (-1, -1), BAND),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 1), (-1, 1), 8),
            ]
        )
    )
    story += [summary, Spacer(1, 7 * mm)]
    rows: list[list[object]] = [["Date", "Reference", "Description", "Amount", "Balance"]]
    rows.append([f"{statement.start:%d %b %Y}", "", "Opening balance", "", f"{statement.opening_balance:,.2f}"])
    for line in statement.lines:
        description = line.description if not line.bill_reference else f"{line.description} ({line.bill_reference})"
        rows.append(
            [
                f"{line.created_at:%d %b %Y %H:%M}",
                line.reference,
                Paragraph(_escape(description), cell),
                f"{line.amount:+,.2f}",
                f"{line.balance:,.2f}",
            ]
        )
    rows.append([f"{statement.end:%d %b %Y}", "", "Closing balance", "", f"{statement.closing_balance:,.2f}"])
    table = LongTable(rows, colWidths=[32 * mm, 38 * mm, 52 * mm, 26 * mm, 26 * mm], repeatRows=1)
    last = len(rows) - 1
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), regular, 8),
                ("FONT", (0, 0), (-1, 0), bold, 8),
                ("TEXTCOLOR", (0, 0), (-1, -1), INK),
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, INK),
                ("LINEBELOW", (0, 1), (-1, -2), 0.4, RULE),
                ("ALIGN", (3, 0), (4, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("FONT", (0, 1), (-1, 1), bold, 8),
                ("FONT", (0, last), (-1, last), bold, 8),
                ("LINEABOVE", (0, last), (-1, last), 0.8, INK),
            ]
        )
    )
    story.append(table)
    if not statement.lines:
        story += [Spacer(1, 4 * mm), Paragraph("No money moved in this period.", small)]

    def page(canvas: Canvas, document: SimpleDocTemplate) -> None:
        _statement_page(canvas, document, statement)

    doc.build(story, onFirstPage=page, onLaterPages=page)
    return buffer.getvalue()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
