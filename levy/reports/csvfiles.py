"""CSV files, written row by row so that a response can stream them.

Amounts are exact decimal strings (``"15000.00"``, never floats). Free text that a
spreadsheet would run as a formula (a cell starting ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return) is written with a leading apostrophe — the OWASP advice against
CSV injection; numbers are written as they are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from levy.reports.selectors import Statement

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text(value: Any) -> str:
    """A free-text cell, defused."""
    value = "" if value is None else str(value)
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def amount(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.2f}"


class _Line:
    """A file-like object that hands back what ``csv.writer`` writes to it."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: list[str], rows: Iterable[list[str]]) -> Iterator[str]:
    """The header, then one CSV line per row, each as soon as it is read."""
    writer = csv.writer(_Line())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


# The size of the blocks a streamed file is sent in: big enough that 50,000 rows are a
# few hundred writes to the socket rather than 50,000, small enough to stay constant.
BLOCK_BYTES = 64 * 1024


def csv_chunks(header: list[str], rows: Iterable[list[str]], *, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """The header at once (the first bytes of the response leave before the first row
    is read), then the rows in blocks of about ``block_bytes``, UTF-8 encoded."""
    lines = csv_lines(header, rows)
    yield next(lines).encode()
    block: list[str] = []
    size = 0
    for line in lines:
        block.append(line)
        size += len(line)
        if size >= block_bytes:
            yield "".join(block).encode()
            block, size = [], 0
    if block:
        yield "".join(block).encode()


STATEMENT_HEADER = ["date", "reference", "type", "description", "bill_reference", "amount", "balance", "currency"]


def statement_rows(statement: Statement) -> Iterator[list[str]]:
    """The opening balance, each entry with its running balance, the closing balance:
    one table a spreadsheet can sum (the ``amount`` column adds up to closing minus
    opening)."""
    currency = statement.currency
    yield [
        statement.start.isoformat(),
        "",
        "opening_balance",
        "Opening balance",
        "",
        "",
        amount(statement.opening_balance),
        currency,
    ]
    for line in statement.lines:
        yield [
            line.created_at.isoformat(),
            line.reference,
            line.type,
            text(line.description),
            line.bill_reference,
            amount(line.amount),
            amount(line.balance),
            currency,
        ]
    yield [
        statement.end.isoformat(),
        "",
        "closing_balance",
        "Closing balance",
        "",
        "",
        amount(statement.closing_balance),
        currency,
    ]
