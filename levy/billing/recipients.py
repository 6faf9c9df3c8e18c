"""Who the notifications about one bill go to: the kinds of ``Recipients`` that name a
bill (``levy.notifications.recipients.BILL_KINDS``), resolved with billing's own rules
— the bill's audience, the "paid" fact, its disputes and late fees. ``BillingConfig.ready``
registers :func:`bill_recipients`; the fan-out calls it through ``Recipients.memberships``."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, QuerySet

from levy.billing.models import Bill, BillDispute, DisputeStatus
from levy.billing.selectors import bill_audience, paid_fact
from levy.estates.models import Membership
from levy.notifications.recipients import register_bill_resolver


def bill_recipients(kind: str, bill_id: str, cluster_id: Any) -> QuerySet[Membership]:
    """The memberships ``kind`` means for the bill (of that estate)."""
    bill = Bill.objects.get(pk=bill_id, cluster_id=cluster_id)
    audience = bill_audience(bill)
    if kind == "bill_audience":
        return audience
    if kind == "bill_late_fees":
        holds_fee = Bill.objects.filter(late_fee_of_id=bill.pk, user_id=OuterRef("user_id"), cancelled_at__isnull=True)
        return audience.filter(Exists(holds_fee))
    paid = paid_fact(bill.pk, OuterRef("user_id"))
    if kind == "bill_unpaid":
        return audience.exclude(paid)
    if kind != "bill_owing_undisputed":
        raise ValueError(f"not a kind about one bill: {kind}")
    waived_or_open = Exists(
        BillDispute.objects.filter(
            bill_id=bill.pk,
            user_id=OuterRef("user_id"),
            status__in=[DisputeStatus.UPHELD, DisputeStatus.OPEN],
        )
    )
    return audience.exclude(paid).exclude(waived_or_open)


def register() -> None:
    register_bill_resolver(bill_recipients)
