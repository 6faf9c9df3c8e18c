"""The outbox, the set-based fan-out, the delivery channels and the sweep."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.core import mail
from django.utils import timezone

from config.celery import app as celery_app
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute
from levy.billing.status import estate_today
from levy.common.format import estate_date, money
from levy.estates.models import Membership
from levy.estates.permissions import PaymentsPermissions
from levy.notifications.deliveries import deliveries_send_due
from levy.notifications.events import EVENT_SPECS, NotificationEvents, render
from levy.notifications.fanout import _write_inbox, intent_deliver
from levy.notifications.models import Delivery, Notification, NotificationIntent
from levy.notifications.recipients import Recipients
from levy.notifications.services import intents_sweep, notify
from tests.conftest import Estate, access, committed, make_estate

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
    # the amount and the date are written as the pages write them
    assert body.startswith("BILL-2026-000004 — ₦500.00 is due on 1 Dec 2026.")
    # a missing value renders empty rather than failing the whole fan-out
    assert render(NotificationEvents.BILL_CANCELLED, {})[0] == "Bill cancelled: "


def test_amounts_and_dates_are_written_for_people_where_the_context_stays_raw() -> None:
    title, body = render(
        NotificationEvents.TOP_UP_CREDITED,
        {"currency": "GHS", "amount": "1250.5", "wallet_balance": "20000.00", "provider": "Paystack"},
    )
    assert title == "Wallet topped up: GH₵1,250.50"
    assert "Wallet balance GH₵20,000.00." in body
    _, body = render(
        NotificationEvents.TOP_UP_MISMATCH,
        {
            "provider": "Paystack",
            "currency": "NGN",
            "amount": "5000.00",
            "reported_currency": "USD",
            "reported_amount": "5000",
        },
    )
    assert body.startswith("Paystack reported $5,000.00 for top-up") and "which was for ₦5,000.00." in body
    # what is not an amount reads as it was written, with its currency's code
    _, body = render(
        NotificationEvents.TOP_UP_MISMATCH,
        {"currency": "NGN", "amount": "5000.00", "reported_currency": "?", "reported_amount": "unknown"},
    )
    assert "reported ? unknown for top-up" in body


def test_inbox_api_and_email_show_the_pages_amounts_and_dates(estate: Estate) -> None:
    from tests.api.conftest import api_as
    from tests.web.conftest import browser_as

    resident = estate.residents[0]
    due = estate_today() + datetime.timedelta(days=20)
    with committed():
        bill = estate.wide_bill(title="Road levy", amount=Decimal("50000.00"), due_date=due)
    amount, day = money(Decimal("50000.00"), estate.cluster.currency), estate_date(due)
    expected = f"{bill.reference} — {amount} is due on {day}. Please acknowledge it, then pay or dispute it."
    row = Notification.objects.get(recipient_id=resident.user_id, context__bill_id=str(bill.pk))
    assert (row.title, row.body) == ("New bill: Road levy", expected)
    # the stored context keeps the raw values (the API returns them as they are)
    assert (row.context["amount"], row.context["due_date"]) == ("50000.00", due.isoformat())
    listed = api_as(resident).get("/api/v1/notifications/").json()["results"][0]
    assert (listed["body"], listed["context"]["amount"], listed["context"]["due_date"]) == (
        expected,
        "50000.00",
        due.isoformat(),
    )
    page = browser_as(resident).get("/notifications/").content.decode()
    assert expected in page and "50000.00" not in page and due.isoformat() not in page
    message = next(m for m in mail.outbox if m.to == [resident.user.email])
    html = message.alternatives[0][0]
    for text in (message.body, html):
        assert amount in text and day in text, text
        assert "50000.00" not in text and due.isoformat() not in text, text


def _remind(estate: Estate, key: str = "PAYMENT_REMINDER:test") -> tuple[NotificationIntent, bool]:
    return notify(
        event=NotificationEvents.PAYMENT_REMINDER,
        cluster=estate.cluster,
        recipients=Recipients.users(*[m.user_id for m in estate.residents]),
        context={"bill_title": "Security", "amount": "10.00"},
        event_key=key,
    )


def test_nothing_is_delivered_unless_the_change_commits(estate: Estate) -> None:
    with committed() as callbacks:
        intent, created = _remind(estate)
        assert created
        assert Notification.objects.count() == 0  # not before the commit
    assert len(callbacks) == 1
    intent.refresh_from_db()
    assert (intent.delivered_count, intent.attempts) == (3, 1)
    assert intent.dispatched_at is not None and intent.delivered_at is not None
    stored = Notification.objects.filter(event_key="PAYMENT_REMINDER:test")
    assert {n.recipient_id for n in stored} == {m.user_id for m in estate.residents}
    assert {(n.title, n.context["amount"], n.cluster_id, n.intent_id) for n in stored} == {
        ("Reminder: Security", "10.00", estate.cluster.pk, intent.pk)
    }


def test_the_same_event_key_is_recorded_and_delivered_once(estate: Estate) -> None:
    with committed() as callbacks:
        first, _ = _remind(estate)
        again, created = _remind(estate)
    assert (again.pk, created, len(callbacks)) == (first.pk, False, 1)
    # re-running the delivery (a redelivered task) writes nothing twice
    NotificationIntent.objects.filter(pk=first.pk).update(delivered_at=None)
    assert intent_deliver(first.pk) == 0
    assert Notification.objects.filter(event_key="PAYMENT_REMINDER:test").count() == 3
    assert Delivery.objects.filter(intent=first).count() == 3
    assert intent_deliver(first.pk) == 0  # delivered: a no-op


def test_fan_out_in_chunks_completes_a_partial_run_without_duplicates(settings) -> None:
    settings.LEVY_FANOUT_CHUNK = 4
    estate = make_estate(residents=10)
    ordered = sorted(m.user_id for m in estate.residents)
    # recorded, but its transaction's commit hook is not run here: nothing dispatched
    intent, _ = notify(
        event=NotificationEvents.PAYMENT_DUE,
        cluster=estate.cluster,
        recipients=Recipients.users(*ordered),
        context={},
        event_key="chunks",
    )
    # a worker wrote its first chunk (4 rows, in user-id order), then died
    first_chunk = Membership.objects.filter(cluster=estate.cluster, user_id__in=ordered[:4])
    assert _write_inbox(intent, first_chunk, "t", "b") == 4
    assert intent_deliver(intent.pk) == 6  # chunks of 4, 4, 2: the first writes nothing new
    rows = Notification.objects.filter(event_key="chunks")
    assert sorted(rows.values_list("recipient_id", flat=True)) == ordered
    intent.refresh_from_db()
    assert (intent.delivered_count, intent.delivered_at is not None) == (10, True)


def test_recipients_are_resolved_in_the_database(estate: Estate) -> None:
    payer, disputer, waived = estate.residents
    bill = estate.wide_bill()
    estate.fund(payer, "15000.00")
    from levy.billing.payments import bill_pay

    bill_acknowledge(access=access(payer), bill=bill)
    bill_pay(access=access(payer), bill=bill, idempotency_key="k")
    bill_dispute(access=access(disputer), bill=bill, reason="x")
    from levy.billing.services import dispute_resolve

    dispute = bill_dispute(access=access(waived), bill=bill, reason="y")
    dispute_resolve(access=access(estate.admin), dispute=dispute, resolution="upheld", note="ok")

    def ids(recipients: Recipients) -> set:
        return set(recipients.memberships(estate.cluster.pk).values_list("user_id", flat=True))

    residents = {m.user_id for m in estate.residents}
    assert ids(Recipients.bill_audience(bill)) == residents
    assert ids(Recipients.bill_unpaid(bill)) == residents - {payer.user_id}
    assert ids(Recipients.bill_owing_undisputed(bill)) == set()
    assert ids(Recipients.permission_holders(PaymentsPermissions.ManageBill)) == {
        estate.admin.user_id,
        estate.treasurer.user_id,
    }
    assert ids(Recipients.users(payer.user_id)) == {payer.user_id}
    assert Recipients.from_json(Recipients.bill_unpaid(bill).to_json()) == Recipients.bill_unpaid(bill)
    with pytest.raises(ValueError, match="unknown"):
        Recipients(kind="everyone", bill_id=str(bill.pk)).memberships(estate.cluster.pk)


def test_emails_are_sent_in_text_and_html(estate: Estate) -> None:
    with committed():
        _remind(estate)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(m.user.email for m in estate.residents)
    message = mail.outbox[0]
    assert message.subject == "Reminder: Security"
    assert "NGN" not in message.subject
    assert message.alternatives[0][1] == "text/html"
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


def test_failed_emails_are_recorded_and_retried_with_backoff(estate: Estate, settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 1
    with committed():
        intent, _ = _remind(estate)
    failed = list(Delivery.objects.filter(intent=intent))
    assert [d.status for d in failed] == ["failed"] * 3
    assert {d.attempts for d in failed} == {1}
    assert all(d.last_error.startswith("connection failed") for d in failed)
    assert all(d.next_attempt_at > timezone.now() + datetime.timedelta(seconds=50) for d in failed)
    # not due yet: nothing is retried
    assert deliveries_send_due() == {"sent": 0, "failed": 0}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    Delivery.objects.update(next_attempt_at=timezone.now())
    assert deliveries_send_due() == {"sent": 3, "failed": 0}
    assert len(mail.outbox) == 3
    assert set(Delivery.objects.values_list("status", "attempts")) == {("sent", 2)}


@contextmanager
def broker_at(url: str) -> Iterator[None]:
    """Send tasks to the broker at ``url`` (not in-process) for the duration."""
    previous = celery_app.conf.broker_url
    celery_app.conf.task_always_eager = False
    celery_app.conf.broker_url = url
    celery_app.amqp._producer_pool = None  # the pool caches connections to the old broker
    celery_app._pool = None
    try:
        yield
    finally:
        celery_app.conf.broker_url = previous
        celery_app.amqp._producer_pool = None
        celery_app._pool = None
        celery_app.conf.task_always_eager = True


def test_the_sweep_delivers_what_the_broker_missed(estate: Estate) -> None:
    with broker_at("redis://127.0.0.1:1/0"), committed():  # nothing listens on port 1
        bill = estate.wide_bill()
    intent = NotificationIntent.objects.get(event_key=f"PAYMENT_DUE:bill:{bill.pk}")
    assert (intent.dispatched_at, intent.delivered_at) == (None, None)
    assert Notification.objects.count() == 0
    # too young for the sweep (it may still be on its way)
    assert intents_sweep()["dispatched"] == 0
    assert intents_sweep(older_than_seconds=0)["dispatched"] == 1
    assert Notification.objects.filter(event="PAYMENT_DUE").count() == 3
    assert intents_sweep(older_than_seconds=0)["dispatched"] == 0


def test_a_broker_that_takes_the_intent_costs_no_second_statement(estate: Estate, settings) -> None:
    """The intent is written already marked as handed over; when the broker takes it at
    commit, nothing more is written (only a refusal clears the mark: the test above)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    parts = urlsplit(settings.CELERY_BROKER_URL)
    assert parts.scheme == "redis", "this test needs the Redis broker of `make test`"
    broker = urlunsplit((parts.scheme, parts.netloc, "/14", "", ""))  # a database of its own
    with broker_at(broker):
        with CaptureQueriesContext(connection) as statements, committed() as callbacks:
            intent, _ = _remind(estate)
        with celery_app.connection_for_write() as conn:  # the task stays unconsumed: drop it
            for queue in ("notifications", "notifications_high"):
                conn.default_channel.queue_purge(queue)
    assert len(callbacks) == 1
    intent_table = NotificationIntent._meta.db_table
    assert [q["sql"] for q in statements.captured_queries if q["sql"].startswith(f'UPDATE "{intent_table}"')] == []
    intent.refresh_from_db()
    assert intent.dispatched_at is not None and intent.delivered_at is None
    assert Notification.objects.filter(intent=intent).count() == 0  # with the broker, not run here


def test_an_intent_whose_process_died_before_the_broker_is_redispatched_later(estate: Estate, settings) -> None:
    """Committed and marked, but the commit hook never ran (the process died): the
    sweep leaves it alone while it could still be on its way, then sends it."""
    intent, _ = _remind(estate)  # recorded; its commit hook is not run here
    intent.refresh_from_db()
    assert intent.dispatched_at is not None
    assert intents_sweep(older_than_seconds=0)["dispatched"] == 0
    stale = timezone.now() - datetime.timedelta(seconds=settings.LEVY_SWEEP_REDISPATCH_SECONDS + 1)
    NotificationIntent.objects.filter(pk=intent.pk).update(created_at=stale, dispatched_at=stale)
    assert intents_sweep()["dispatched"] == 1
    assert Notification.objects.filter(intent=intent).count() == 3
    intent.refresh_from_db()
    assert intent.delivered_at is not None and intent.dispatched_at > stale


def test_the_sweep_returns_interrupted_deliveries_to_the_queue(estate: Estate, settings) -> None:
    with committed():
        intent, _ = _remind(estate)
    Delivery.objects.filter(intent=intent).update(status="sending")
    Delivery.objects.filter(intent=intent).update(updated_at=timezone.now() - datetime.timedelta(hours=1))
    mail.outbox.clear()
    result = intents_sweep()
    assert result["deliveries_reset"] == 3
    assert len(mail.outbox) == 3  # the sweep queued the retry; in-process it ran at once
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}


def test_cancellation_notice_skips_those_who_paid(estate: Estate) -> None:
    bill = estate.wide_bill()
    with committed():
        bill_cancel(access=access(estate.admin), bill=bill, reason="duplicate")
    assert Notification.objects.filter(event="BILL_CANCELLED").count() == 3


def test_a_fresh_claim_on_an_old_delivery_is_not_mistaken_for_a_stuck_one(estate: Estate, settings) -> None:
    from levy.notifications.deliveries import _claim

    settings.LEVY_NOTIFICATION_CHANNELS = []  # queue the deliveries by hand below
    with committed():
        intent, _ = _remind(estate)
    settings.LEVY_NOTIFICATION_CHANNELS = ["email"]
    from levy.notifications.deliveries import queue_deliveries

    queue_deliveries(intent, "email")
    Delivery.objects.update(updated_at=timezone.now() - datetime.timedelta(hours=2))
    claimed = _claim(channel="email", intent_id=intent.pk, batch_size=10)
    assert len(claimed) == 3
    # a worker is sending these right now: the sweep must leave them alone
    assert intents_sweep()["deliveries_reset"] == 0
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sending"}


def test_a_failing_fan_out_records_why_and_stops_after_the_attempt_limit(estate: Estate, settings) -> None:
    from levy.notifications.tasks import deliver_intent

    intent, _ = _remind(estate)  # recorded; its commit hook is not run here
    NotificationIntent.objects.filter(pk=intent.pk).update(recipients={"kind": "nobody"})
    with pytest.raises(ValueError, match="unknown recipients kind"):
        deliver_intent.run(str(intent.pk))
    intent.refresh_from_db()
    assert intent.last_error == "ValueError: unknown recipients kind: nobody"
    assert (intent.attempts, intent.delivered_at) == (1, None)
    settings.LEVY_INTENT_MAX_ATTEMPTS = 2
    NotificationIntent.objects.filter(pk=intent.pk).update(attempts=2)
    assert intents_sweep(older_than_seconds=0)["dispatched"] == 0


def test_the_claim_statement_takes_what_the_orm_rule_takes(estate: Estate, settings) -> None:
    """``_claim`` (one statement on PostgreSQL) against ``_claim_orm`` (the ORM's
    select-for-update, then update): the same deliveries, the same new state, each
    with its notification and recipient loaded."""
    from django.db import transaction

    from levy.notifications.deliveries import _claim, _claim_orm, queue_deliveries

    settings.LEVY_NOTIFICATION_CHANNELS = []  # queue the deliveries by hand below
    with committed():
        first, _ = _remind(estate, "PAYMENT_REMINDER:first")
        second, _ = _remind(estate, "PAYMENT_REMINDER:second")
    for intent in (first, second):
        queue_deliveries(intent, "email")
    queue_deliveries(first, "sms")  # another channel: never claimed for email
    now = timezone.now()
    ago = [now - datetime.timedelta(minutes=m) for m in range(10)]
    a, b = (list(Delivery.objects.filter(intent=i, channel="email").order_by("pk")) for i in (first, second))
    states = {
        a[0]: {"status": "pending", "next_attempt_at": ago[5]},  # due
        a[1]: {"status": "failed", "attempts": 1, "next_attempt_at": ago[4]},  # due for a retry
        a[2]: {"status": "pending", "next_attempt_at": now + datetime.timedelta(minutes=5)},  # not yet
        b[0]: {"status": "pending", "next_attempt_at": ago[3]},  # due
        b[1]: {"status": "sending", "next_attempt_at": ago[9]},  # someone else's
        b[2]: {"status": "failed", "attempts": settings.LEVY_DELIVERY_MAX_ATTEMPTS, "next_attempt_at": ago[8]},
    }
    for delivery, values in states.items():
        Delivery.objects.filter(pk=delivery.pk).update(**values)
    Delivery.objects.filter(channel="sms").update(next_attempt_at=ago[9])

    def outcome(claimed: list[Delivery]) -> dict:
        return {d.pk: (d.status, d.attempts, d.notification.event_key, d.notification.recipient.email) for d in claimed}

    cases = [
        ({"intent_id": None, "batch_size": 10}, [a[0], a[1], b[0]]),
        ({"intent_id": None, "batch_size": 2}, [a[0], a[1]]),
    ]
    cases.append(({"intent_id": second.pk, "batch_size": 10}, [b[0]]))
    cases.append(({"intent_id": str(first.pk), "batch_size": 10}, [a[0], a[1]]))
    for arguments, expected in cases:
        with transaction.atomic():
            reference = outcome(_claim_orm(channel="email", now=timezone.now(), **arguments))
            transaction.set_rollback(True)
        with transaction.atomic():
            claimed = outcome(_claim(channel="email", **arguments))
            stored = {d.pk: (d.status, d.attempts) for d in Delivery.objects.filter(pk__in=[e.pk for e in expected])}
            transaction.set_rollback(True)
        assert set(claimed) == {d.pk for d in expected}, arguments
        assert claimed == reference, arguments
        assert all(status == "sending" for status, _ in stored.values())
        for delivery in expected:
            old_attempts = states[delivery].get("attempts", 0)
            assert claimed[delivery.pk][:2] == ("sending", old_attempts + 1)
            assert stored[delivery.pk] == ("sending", old_attempts + 1)
            assert claimed[delivery.pk][3] == delivery.notification.recipient.email
