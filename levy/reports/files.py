"""Receipts and statements as HTTP file responses, for the API and the pages alike."""

from __future__ import annotations

from django.http import HttpResponse

from levy.reports.csvfiles import STATEMENT_HEADER, csv_lines, statement_rows
from levy.reports.selectors import Receipt, Statement

PDF, CSV = "application/pdf", "text/csv; charset=utf-8"
STATEMENT_FORMATS = ("pdf", "csv")


def file_response(content: bytes | str, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    # Personal financial documents: never kept by a shared cache.
    response["Cache-Control"] = "private, no-store"
    return response


def receipt_file(receipt: Receipt) -> HttpResponse:
    from levy.reports.pdf import render_receipt  # see the note above statement_file

    return file_response(render_receipt(receipt), content_type=PDF, filename=receipt.filename)


# The PDF renderer (reportlab, ~15 MB per process) is imported on the first PDF, not
# when the URLconf is loaded: every process loads that — each gunicorn worker, and the
# Celery worker (its start-up checks, and every link it reverses for an email) — and
# most of them never draw a PDF. ``tests/reports/test_lazy_pdf.py`` keeps it so.
def statement_file(statement: Statement, file_format: str) -> HttpResponse:
    """``file_format`` is one of ``STATEMENT_FORMATS``."""
    if file_format == "pdf":
        from levy.reports.pdf import render_statement  # see above

        return file_response(render_statement(statement), content_type=PDF, filename=statement.filename("pdf"))
    body = "".join(csv_lines(STATEMENT_HEADER, statement_rows(statement)))
    return file_response(body, content_type=CSV, filename=statement.filename("csv"))
