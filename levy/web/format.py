"""How the pages write amounts, dates and statuses: one way each, used by every template
through the filters of ``levy.web.templatetags.levy``.

- An amount carries its estate's currency symbol and grouping: ``₦15,000.00``.
- Dates are on the estate's calendar (``settings.TIME_ZONE``, the clock due dates are
  judged by), and read relative where that helps: "due in 3 days", "overdue by 12 days".
- A status is a badge whose words match the status names of ``product.md``.
- A ledger entry is named by what it is: a deposit a card top-up credited is a
  "Top-up by card", on the resident's wallet and on the staff's ledgers alike.

An amount and a date are written by ``levy.common.format``, which the notifications'
texts use too (notifications sit below web); they are named here for the pages.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from levy.billing.status import BillStatus
from levy.common.format import estate_date, estate_datetime, money
from levy.wallets.models import TransactionType

__all__ = [
    "STATUS_LABELS",
    "ago",
    "due_relative",
    "entry_label",
    "estate_date",
    "estate_datetime",
    "money",
    "status_badge",
]


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def due_relative(due: datetime.date | None, today: datetime.date | None = None) -> str:
    """ "due in 3 days", "due today", "due tomorrow", "overdue by 12 days"."""
    if due is None:
        return ""
    day = today or timezone.localdate()
    delta = (due - day).days
    if delta == 0:
        return "due today"
    if delta == 1:
        return "due tomorrow"
    if delta > 1:
        return f"due in {_days(delta)}"
    return f"overdue by {_days(-delta)}"


def ago(value: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    """ "just now", "5 minutes ago", "3 hours ago", "2 days ago", then the date."""
    if value is None:
        return ""
    seconds = int(((now or timezone.now()) - value).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    if seconds < 86400:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''} ago"
    if seconds < 7 * 86400:
        return f"{_days(seconds // 86400)} ago"
    return estate_date(value)


STATUS_LABELS = {status.value: status.label for status in BillStatus}


def status_badge(status: object) -> SafeString:
    """A status as a badge: its word (never colour alone) in the status's colour."""
    key = str(getattr(status, "value", status) or "")
    label = STATUS_LABELS.get(key, key.replace("_", " ").capitalize())
    return format_html('<span class="badge badge-{}">{}</span>', key or "none", label)


# What a ledger entry is, by its kind; a deposit credited by a card top-up (the entry
# has a ``top_up``) is named as one.
ENTRY_LABELS = {kind.value: kind.label for kind in TransactionType}
CARD_TOP_UP_LABEL = "Top-up by card"


def entry_label(tx: Any) -> str:
    """A ledger entry's name: "Top-up by card", "Deposit" (money a manager recorded),
    "Bill payment", "Refund", "Adjustment". Read ``top_up`` with the entries
    (``select_related("top_up")``): otherwise each deposit costs a query."""
    if tx.type == TransactionType.DEPOSIT and getattr(tx, "top_up", None) is not None:
        return CARD_TOP_UP_LABEL
    return ENTRY_LABELS.get(tx.type, str(tx.type).replace("_", " ").capitalize())
