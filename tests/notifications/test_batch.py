"""Intents with few recipients delivered many per task (``deliver_pending``), in
process; tests/notifications/test_worker.py runs the same path in a real worker."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from levy.billing.services import bill_acknowledge
from levy.estates.permissions import PaymentsPermissions, Role
from levy.notifications.events import NotificationEvents, Priority
from levy.notifications.fanout import _insert_batch_sql, intents_deliver_pending
from levy.notifications.models import Delivery, DeliveryStatus, Notification, NotificationIntent
from levy.notifications.recipients import Recipients
from levy.notifications.services import notify, wake_key
from tests.conftest import Estate, access, make_estate

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_flags() -> None:
    cache.delete_many([wake_key(p) for p in Priority.values])


def receipt(estate: Estate, member: Any, key: str) -> NotificationIntent:
    """A payment receipt, recorded; its commit hook is not run here, so it waits."""
    intent, _ = notify(
        event=NotificationEvents.PAYMENT_SUCCESSFUL,
        cluster=estate.cluster,
        recipients=Recipients.users(member.user_id),
        context={"bill_title": "Water", "currency": "NGN", "amount": "500.00", "transaction_reference": key},
        event_key=key,
    )
    return intent


def disputed(estate: Estate, key: str) -> NotificationIntent:
    """A dispute told to the managers (high priority), recorded; it waits."""
    intent, _ = notify(
        event=NotificationEvents.BILL_DISPUTED,
        cluster=estate.cluster,
        recipients=Recipients.permission_holders(PaymentsPermissions.ManageBill),
        context={},
        event_key=key,
    )
    return intent


def test_few_recipients_are_batched_and_an_audience_is_not(estate: Estate, settings) -> None:
    bill = estate.wide_bill()
    wide = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:bill:{bill.pk}")
    bill_acknowledge(access=access(estate.residents[0]), bill=bill)
    acknowledged = NotificationIntent.objects.get(event="BILL_ACKNOWLEDGED")
    one = receipt(estate, estate.residents[1], "r1")
    many, _ = notify(
        event=NotificationEvents.PAYMENT_REMINDER,
        cluster=estate.cluster,
        recipients=Recipients.users(*[f"00000000-0000-0000-0000-{n:012d}" for n in range(51)]),
        context={},
        event_key="fifty-one",
    )
    settings.LEVY_NOTIFY_BATCH = False
    unbatched = receipt(estate, estate.residents[2], "r2")
    assert [i.batched for i in (wide, acknowledged, one, many, unbatched)] == [False, True, True, False, False]


def test_one_batch_delivers_every_waiting_intent_in_a_fixed_number_of_statements(estate: Estate) -> None:
    bill = estate.wide_bill()  # delivered in process at once: not batched
    for member in estate.residents:
        bill_acknowledge(access=access(member), bill=bill)  # the managers are told (commit hooks not run)
    receipts = [receipt(estate, m, f"receipt-{n}") for n, m in enumerate(estate.residents)]
    high = disputed(estate, "disputed")
    waiting = NotificationIntent.objects.filter(delivered_at__isnull=True)
    assert waiting.count() == 3 + 3 + 1
    mail.outbox.clear()

    with CaptureQueriesContext(connection) as statements:
        assert intents_deliver_pending(priority=Priority.NORMAL, wait=False) == 6
    # claim, inbox rows, deliveries, delivered (in a savepoint here), then the emails'
    # claim and mark: the same for 1 intent or 100
    assert len(statements.captured_queries) == 8

    managers = sorted([estate.admin.user_id, estate.treasurer.user_id])
    acknowledged = NotificationIntent.objects.filter(event="BILL_ACKNOWLEDGED")
    for intent in acknowledged:
        rows = Notification.objects.filter(intent=intent)
        assert sorted(rows.values_list("recipient_id", flat=True)) == managers
        assert {(n.event, n.title, n.cluster_id) for n in rows} == {
            ("BILL_ACKNOWLEDGED", f"Bill acknowledged: {bill.title}", estate.cluster.pk)
        }
    for intent, member in zip(receipts, estate.residents, strict=True):
        rows = Notification.objects.filter(intent=intent)
        assert [(n.recipient_id, n.title, n.context["amount"]) for n in rows] == [
            (member.user_id, "Receipt: Water", "500.00")
        ]
    for intent in [*acknowledged, *receipts]:
        intent.refresh_from_db()
        expected = 2 if intent.event == "BILL_ACKNOWLEDGED" else 1
        assert (intent.delivered_count, intent.attempts, intent.last_error) == (expected, 1, "")
        assert intent.delivered_at is not None
    assert list(
        Delivery.objects.filter(intent__in=[*acknowledged, *receipts]).values_list("status", "attempts").distinct()
    ) == [(DeliveryStatus.SENT, 1)]
    assert len(mail.outbox) == 3 * 2 + 3
    # the high-priority intent waits for its own queue's task
    high.refresh_from_db()
    assert high.delivered_at is None
    assert intents_deliver_pending(priority=Priority.HIGH, wait=False) == 1
    assert Notification.objects.filter(intent=high).count() == 2
    # nothing left: a second task finds nothing and writes nothing
    assert intents_deliver_pending(priority=Priority.NORMAL, wait=False) == 0
    assert Notification.objects.count() == 3 + 3 * 2 + 3 + 2


def test_a_full_batch_wakes_the_next_task(estate: Estate, settings) -> None:
    settings.LEVY_NOTIFY_BATCH_MAX = 2
    members = [estate.add() for _ in range(5)]
    for n, member in enumerate(members):
        receipt(estate, member, f"receipt-{n}")
    # tasks run in process here: the full batch's wake-up runs the next batch at once
    assert intents_deliver_pending(priority=Priority.NORMAL, wait=False) == 2
    assert NotificationIntent.objects.filter(delivered_at__isnull=True).count() == 0
    assert sorted(NotificationIntent.objects.values_list("attempts", flat=True)) == [1] * 5
    assert Notification.objects.count() == 5


def test_an_intent_that_cannot_be_resolved_is_left_to_the_sweep_and_the_rest_delivered(estate: Estate) -> None:
    good = receipt(estate, estate.residents[0], "good")
    bad = disputed(estate, "bad")
    NotificationIntent.objects.filter(pk=bad.pk).update(
        priority=Priority.NORMAL, recipients={"kind": "permission_holders", "permission": "no.such.permission"}
    )
    assert intents_deliver_pending(priority=Priority.NORMAL, wait=False) == 1
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.delivered_at is not None
    assert (bad.delivered_at, bad.attempts) == (None, 1)
    assert bad.last_error.startswith("ValueError: ")
    assert not Notification.objects.filter(intent=bad).exists()
    assert intents_deliver_pending(priority=Priority.NORMAL, wait=False) == 0  # not claimed again


def test_the_batch_statement_finds_the_recipients_the_orm_rule_finds(estate: Estate) -> None:
    """``_insert_batch_sql`` restates ``Recipients.memberships`` for few recipients."""
    other = make_estate(residents=1)
    gone = estate.add(role=Role.ADMIN)
    gone.active = False
    gone.deactivated_at = gone.joined_at
    gone.save()
    cases = [
        Recipients.users(estate.residents[0].user_id, other.residents[0].user_id, gone.user_id),
        Recipients.permission_holders(PaymentsPermissions.ManageBill),
        Recipients.permission_holders(PaymentsPermissions.ViewPayments),
    ]
    for n, recipients in enumerate(cases):
        intent, _ = notify(
            event=NotificationEvents.PAYMENT_REMINDER,
            cluster=estate.cluster,
            recipients=recipients,
            context={},
            event_key=f"case-{n}",
        )
        expected = sorted(recipients.memberships(estate.cluster.pk).values_list("user_id", flat=True))
        assert expected, recipients
        user_ids, roles = recipients.few_targets()
        with connection.cursor() as cursor:
            cursor.execute(
                _insert_batch_sql(connection.vendor),
                {
                    "intent": [intent.pk],
                    "cluster": [estate.cluster.pk],
                    "event": [intent.event],
                    "event_key": [intent.event_key],
                    "priority": [intent.priority],
                    "title": ["t"],
                    "body": ["b"],
                    "context": ["{}"],
                    "created_at": [intent.created_at],
                    "user_i": [1] * len(user_ids),
                    "user_id": user_ids,
                    "role_i": [1] * len(roles),
                    "role": roles,
                },
            )
        written = sorted(Notification.objects.filter(intent=intent).values_list("recipient_id", flat=True))
        assert written == expected, recipients
    with pytest.raises(ValueError, match="not a kind of few recipients"):
        Recipients(kind="bill_audience", bill_id="x").few_targets()
