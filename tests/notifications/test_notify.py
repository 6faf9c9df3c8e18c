from __future__ import annotations

import pytest

from levy.estates.models import Membership
from levy.notifications.events import EVENT_SPECS, NotificationEvents, render
from levy.notifications.models import Notification
from levy.notifications.services import notify
from tests.conftest import Estate

pytestmark = pytest.mark.django_db


def test_every_event_has_a_spec_and_renders_its_context() -> None:
    assert set(EVENT_SPECS) == set(NotificationEvents.values)
    title, body = render(
        NotificationEvents.PAYMENT_DUE,
        {
            "bill_title": "Water",
            "bill_reference": "BILL-2026-000004",
            "currency": "NGN",
            "amount": "500.00",
            "due_date": "2026-12-01",
        },
    )
    assert title == "New bill: Water"
    assert body.startswith("BILL-2026-000004 — NGN 500.00 is due on 2026-12-01.")
    # a missing value renders empty rather than failing the whole fan-out
    assert render(NotificationEvents.BILL_CANCELLED, {})[0] == "Bill cancelled: "


@pytest.mark.parametrize("as_queryset", [True, False])
def test_notify_stores_each_event_at_most_once_per_person(estate: Estate, as_queryset: bool) -> None:
    members = Membership.objects.filter(cluster=estate.cluster, is_resident=True).values_list("user_id", flat=True)
    recipients = members if as_queryset else list(members)
    args = dict(
        event=NotificationEvents.PAYMENT_REMINDER,
        cluster=estate.cluster,
        context={"bill_title": "Security", "amount": "10.00"},
        event_key="PAYMENT_REMINDER:test",
    )
    assert notify(recipient_ids=recipients, **args) == 3
    assert notify(recipient_ids=recipients, **args) == 0
    stored = Notification.objects.filter(event_key="PAYMENT_REMINDER:test")
    assert stored.count() == 3
    assert {n.title for n in stored} == {"Reminder: Security"}
    assert {n.context["amount"] for n in stored} == {"10.00"}
    assert {n.cluster_id for n in stored} == {estate.cluster.pk}
