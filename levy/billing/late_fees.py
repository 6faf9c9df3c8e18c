"""Late fees: a bill's rule, and the user-specific late-fee bills it issues.

A bill may carry a rule: a fixed amount or a percentage of the bill's amount, charged
``late_fee_grace_days`` after its due date. The day after the grace period ends,
:func:`late_fees_issue_due` (Celery beat) issues, for each bill whose grace has ended,
one user-specific late-fee bill (``late_fee_of`` = the bill) to each member the bill
applies to who has not paid it and has no open or upheld dispute on it — in one
``INSERT … SELECT`` with the members' counter rows, whatever the estate's size (see
:func:`bill_late_fees_issue` for its locks). The bill's ``late_fees_issued_at`` records
the run; the unique (late_fee_of, user) key makes a second fee for the same member
impossible, however the runs overlap.

After the run:

- a dispute on the bill **rejected** later charges that member's fee then
  (:func:`late_fee_for_member`, from the resolution's transaction);
- a dispute **upheld** later waives the member's fee (:func:`late_fee_waive`): the fee
  gets an upheld dispute of its own, so its status is ``waived`` by the one status rule;
- **cancelling** the bill cancels its late fees (:func:`late_fees_cancel`).

Late-fee bills are notified with one ``PAYMENT_DUE`` intent per run, whose recipients
(``Recipients.bill_late_fees``) are resolved by the worker into the members holding a
fee of the bill: one outbox row and one set-based fan-out instead of one intent per
fee (decision 0024).

References are the bill's own followed by ``-L`` and a number from one PostgreSQL
sequence (``billing_late_fee_number``): unique without locking the estate's bill
counter for the length of a 50,000-row insert.
"""

from __future__ import annotations

import datetime
import functools
import logging
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import BigIntegerField, CharField, Func, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from levy.audit.services import audit_record
from levy.billing.counters import counter_add, slot_of
from levy.billing.models import Bill, BillCounter, BillDispute, DisputeStatus, LateFeeKind
from levy.billing.rules import LIVE_PAYMENT_PARAMS, live_payment_sql
from levy.billing.selectors import estate_today
from levy.common.db import column, db_value, table
from levy.common.origin import Origin
from levy.estates.models import Membership
from levy.notifications.events import NotificationEvents
from levy.notifications.recipients import Recipients
from levy.notifications.services import bill_context, notify
from levy.wallets.models import Transaction

logger = logging.getLogger("levy.billing")

CENT = Decimal("0.01")
LATE_FEE_SEQUENCE = "billing_late_fee_number"
RUN_LOCK_SEED = 2024  # the advisory-lock key space of late-fee runs


# --- the rule ---------------------------------------------------------------------------------


def late_fee_amount(bill: Bill) -> Decimal:
    """What one member's late fee comes to (a percentage is rounded half up to the cent)."""
    value = Decimal(bill.late_fee_value or 0)
    if bill.late_fee_kind == LateFeeKind.FIXED:
        return value.quantize(CENT)
    return (Decimal(bill.amount) * value / 100).quantize(CENT, rounding=ROUND_HALF_UP)


def grace_ends_on(bill: Bill) -> datetime.date:
    """The last day of grace: fees are charged from the day after."""
    return bill.due_date + datetime.timedelta(days=bill.late_fee_grace_days or 0)


def late_fee_due_date(today: datetime.date) -> datetime.date:
    return today + datetime.timedelta(days=int(settings.LEVY_LATE_FEE_PAY_DAYS))


# --- issuing ----------------------------------------------------------------------------------


# The columns a late fee is inserted with; the others hold their database defaults.
INSERTED_COLUMNS = (
    "id",
    "cluster",
    "reference",
    "title",
    "description",
    "category",
    "amount",
    "due_date",
    "allow_payment_after_due",
    "user",
    "created_by",
    "created_at",
    "updated_at",
    "cancellation_reason",
    "late_fee_kind",
    "late_fee_of",
)


# ``levy.billing.counters.slot_of`` in SQL: the user id as an integer modulo 16 (SLOTS)
# is the value of its last hex digit.
SLOT_SQL = "('x' || right({user}::text, 1))::bit(4)::int"


@functools.cache
def _insert_late_fees_sql(vendor: str, estate_wide: bool, one_member: bool) -> str:
    """The late fees of one bill and their counter rows, in one statement: a fee for
    each member the recipients ``bill_owing_undisputed`` name (:func:`_insert_late_fees_orm`,
    its reference) — the bill's audience (as ``bill_audience``: active resident members;
    of an estate-wide bill those who joined by its creation, else its own member), less
    those with a live payment of it (``levy.billing.rules.live_payment_sql``) or an open
    or upheld dispute — or for the one member ``%(member)s`` among them. A member who has
    a fee of the bill already is skipped (``ON CONFLICT DO NOTHING``). The text depends
    on the bill's kind and on whether one member is charged; every value is a parameter
    (:func:`_insert_late_fees_params`). PostgreSQL only: ``gen_random_uuid()``, the
    fees' number sequence and ``INSERT … RETURNING`` in a ``WITH``."""
    m, d, t = Membership, BillDispute, Transaction
    user = f"m.{column(m, 'user')}"
    selected = ", ".join(
        "gen_random_uuid()"
        if name == "id"
        else f"%(reference)s || nextval('{LATE_FEE_SEQUENCE}')"
        if name == "reference"
        else user
        if name == "user"
        else f"%({name})s"
        for name in INSERTED_COLUMNS
    )
    audience = f"m.{column(m, 'joined_at')} <= %(created)s" if estate_wide else f"{user} = %(bill_user)s"
    member = f" AND {user} = %(member)s" if one_member else ""
    paid = (
        f"SELECT 1 FROM {table(t)} p WHERE p.{column(t, 'bill')} = %(late_fee_of)s "  # noqa: S608 - identifiers from the models
        f"AND p.{column(t, 'payer')} = {user} AND {live_payment_sql('p')}"
    )
    waived_or_open = (
        f"SELECT 1 FROM {table(d)} d WHERE d.{column(d, 'bill')} = %(late_fee_of)s "  # noqa: S608 - identifiers from the models
        f"AND d.{column(d, 'user')} = {user} AND d.{column(d, 'status')} IN (%(upheld)s, %(open)s)"
    )
    members = (
        f"SELECT {selected} FROM {table(m)} m "  # noqa: S608 - identifiers from the models, values are parameters
        f"WHERE m.{column(m, 'cluster')} = %(cluster)s AND m.{column(m, 'active')} = %(true)s "
        f"AND m.{column(m, 'is_resident')} = %(true)s AND {audience}{member} "
        f"AND NOT EXISTS ({paid}) AND NOT EXISTS ({waived_or_open}) ORDER BY {user}"
    )
    bill_columns = ", ".join(column(Bill, name) for name in INSERTED_COLUMNS)
    counter_columns = ", ".join(
        column(BillCounter, name)
        for name in ("bill", "slot", "eligible", "acknowledged", "paid", "waived", "disputed", "collected")
    )
    slot = SLOT_SQL.format(user=column(Bill, "user"))
    return (
        f"WITH fees AS (INSERT INTO {table(Bill)} ({bill_columns}) {members} "  # noqa: S608 - identifiers from the models
        f"ON CONFLICT DO NOTHING RETURNING {column(Bill, 'id')}, {column(Bill, 'user')}) "
        f"INSERT INTO {table(BillCounter)} ({counter_columns}) "
        f"SELECT {column(Bill, 'id')}, {slot}, 1, 0, 0, 0, 0, 0 FROM fees"
    )


def _fee_fields(bill: Bill, *, today: datetime.date, now: datetime.datetime) -> dict[str, Any]:
    """What every late fee of ``bill`` holds but its id, reference and member."""
    return {
        "cluster": bill.cluster_id,
        "title": f"Late fee: {bill.title}"[:200],
        "description": (
            f"Late fee on {bill.reference}, unpaid {bill.late_fee_grace_days} day(s) after its due date "
            f"{bill.due_date.isoformat()}."
        ),
        "category": bill.category,
        "amount": late_fee_amount(bill),
        "due_date": late_fee_due_date(today),
        "allow_payment_after_due": True,
        "created_by": bill.created_by_id,
        "created_at": now,
        "updated_at": now,
        "cancellation_reason": "",
        "late_fee_kind": "",
        "late_fee_of": bill.pk,
    }


def _insert_late_fees_params(bill: Bill, *, fields: dict[str, Any], user_id: Any) -> dict[str, Any]:
    meta: Any = Bill._meta
    params = {name: meta.get_field(name).get_db_prep_save(value, connection) for name, value in fields.items()}
    return {
        **params,
        "reference": f"{bill.reference}-L",
        "created": db_value(Bill, "created_at", bill.created_at),
        "bill_user": db_value(Bill, "user", bill.user_id),
        "member": db_value(Membership, "user", user_id),
        "true": True,
        **LIVE_PAYMENT_PARAMS,
        "upheld": DisputeStatus.UPHELD.value,
        "open": DisputeStatus.OPEN.value,
    }


def _insert_late_fees(
    bill: Bill, *, today: datetime.date, user_id: Any = None, now: datetime.datetime | None = None
) -> int:
    """Insert the late-fee bills of ``bill`` (for one member, or for every member owing
    it) and their counter rows, in one fixed statement. Returns how many were issued."""
    fields = _fee_fields(bill, today=today, now=now or timezone.now())
    statement = _insert_late_fees_sql(connection.vendor, bill.user_id is None, user_id is not None)
    with connection.cursor() as cursor:
        cursor.execute(statement, _insert_late_fees_params(bill, fields=fields, user_id=user_id))
        return int(cursor.rowcount)


def _insert_late_fees_orm(
    bill: Bill, *, today: datetime.date, user_id: Any = None, now: datetime.datetime | None = None
) -> int:
    """:func:`_insert_late_fees` through the ORM, one member at a time: its reference.
    The members are the recipients ``bill_owing_undisputed`` (``levy.billing.recipients``,
    the reminders' rule); a fee that would break a unique constraint (the member has
    one already) is skipped, as ``ON CONFLICT DO NOTHING`` skips it."""
    meta: Any = Bill._meta
    fields = _fee_fields(bill, today=today, now=now or timezone.now())
    members = Recipients.bill_owing_undisputed(bill).memberships(bill.cluster_id)
    if user_id is not None:
        members = members.filter(user_id=user_id)
    number = Func(Value(LATE_FEE_SEQUENCE), function="nextval", output_field=BigIntegerField())
    issued = 0
    for member_id in members.order_by("user_id").values_list("user_id", flat=True):
        try:
            with transaction.atomic():
                fee = Bill.objects.create(
                    reference=Concat(Value(f"{bill.reference}-L"), Cast(number, CharField())),
                    user_id=member_id,
                    **{meta.get_field(name).attname: value for name, value in fields.items()},
                )
        except IntegrityError:
            continue
        BillCounter.objects.create(bill=fee, slot=slot_of(member_id), eligible=1)
        issued += 1
    return issued


def late_fee_context(bill: Bill, today: datetime.date) -> dict[str, Any]:
    """The ``PAYMENT_DUE`` context of a bill's late fees: the fee's title, amount and
    due date, and the bill it is for (each member's fee has its own reference; the
    member's bill list shows it, with ``late_fee_of_id`` naming this bill)."""
    return {
        **bill_context(bill),
        "bill_id": None,
        "bill_title": f"Late fee: {bill.title}",
        "bill_reference": f"{bill.reference} late fee",
        "amount": f"{late_fee_amount(bill):.2f}",
        "due_date": late_fee_due_date(today).isoformat(),
        "is_cluster_wide": False,
        "late_fee_of_id": str(bill.pk),
        "late_fee_of_reference": bill.reference,
        "late_fee_of_due_date": bill.due_date.isoformat(),
    }


def _announce(bill: Bill, day: datetime.date, recipients: Recipients, event_key: str) -> None:
    """``PAYMENT_DUE`` for late fees of ``bill`` (inside the transaction that issued them)."""
    notify(
        event=NotificationEvents.PAYMENT_DUE,
        cluster=bill.cluster,
        recipients=recipients,
        context=late_fee_context(bill, day),
        event_key=event_key,
    )


@functools.cache
def _run_lock_sql(mode: str) -> str:
    # One advisory lock per bill, keyed by its id: the late-fee run holds it exclusively.
    return f"SELECT pg_{mode}(hashtextextended(%s, {RUN_LOCK_SEED}))"


def late_fee_run_wait(bill: Bill) -> None:
    """Wait for a late-fee run of ``bill`` in progress, and keep the next one out until
    this transaction ends. For the services that act on a bill's fees (a dispute's
    resolution, a cancellation); call it before taking any row lock (the run takes the
    bill's row at its end). Nothing to wait for without a rule, or off PostgreSQL."""
    if bill.late_fee_kind and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_run_lock_sql("advisory_xact_lock_shared"), [str(bill.pk)])


def bill_late_fees_issue(*, bill_id: Any, today: datetime.date | None = None) -> int | None:
    """Issue ``bill``'s late fees if its grace period has ended and they have not been
    issued, in one transaction:

    1. take the bill's run lock (an advisory lock: another run skips the bill; a
       resolution or cancellation of it waits, see :func:`late_fee_run_wait`), with
       the foreign keys checked as each fee is written (``SET CONSTRAINTS ALL
       IMMEDIATE``), not at the commit;
    2. insert every fee and its counter row (one statement);
    3. mark the bill (``late_fees_issued_at``, a conditional UPDATE: a bill cancelled
       meanwhile rolls the run back), audit, and record one ``PAYMENT_DUE`` intent.

    The bill's row is locked only from step 3 to the commit, so its members keep
    acknowledging, disputing and paying it during the seconds step 2 takes at 50,000
    members. Returns the number of fees, or None when there was nothing to do."""
    day = today or estate_today()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_run_lock_sql("try_advisory_xact_lock"), [str(bill_id)])
            if not cursor.fetchone()[0]:
                return None  # another run has it
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        bill = (
            Bill.objects.select_related("cluster")
            .filter(pk=bill_id, cancelled_at__isnull=True, late_fees_issued_at__isnull=True)
            .exclude(late_fee_kind="")
            .first()
        )
        if bill is None or day <= grace_ends_on(bill):
            return None
        amount = late_fee_amount(bill)
        issued = _insert_late_fees(bill, today=day) if amount > 0 else 0
        marked = Bill.objects.filter(pk=bill_id, cancelled_at__isnull=True, late_fees_issued_at__isnull=True).update(
            late_fees_issued_at=timezone.now()
        )
        if not marked:  # cancelled while the fees were written
            transaction.set_rollback(True)
            return None
        audit_record(
            action="bill.late_fees",
            target=bill,
            actor=None,
            cluster=bill.cluster,
            origin=Origin(),
            data={"issued": issued, "amount": f"{amount:.2f}", "grace_days": bill.late_fee_grace_days},
        )
        if issued:
            _announce(bill, day, Recipients.bill_late_fees(bill), f"PAYMENT_DUE:late-fees:bill:{bill.pk}")
    return issued


def late_fees_issue_due(today: datetime.date | None = None) -> dict[str, Any]:
    """Beat: issue the late fees of every bill whose grace period has ended (and of
    those a stopped scheduler missed). Safe to run concurrently and repeatedly."""
    day = today or estate_today()
    if connection.vendor != "postgresql":
        logger.warning("late fees are issued on PostgreSQL only; skipped on %s", connection.vendor)
        return {"date": day.isoformat(), "bills": 0, "fees": 0}
    # Past due, not yet charged (the partial index late_fee_pending_idx holds only
    # these); the grace period is checked per bill.
    candidates = (
        Bill.objects.filter(late_fees_issued_at__isnull=True, cancelled_at__isnull=True, due_date__lt=day)
        .exclude(late_fee_kind="")
        .order_by("due_date", "id")
        .values_list("pk", "due_date", "late_fee_grace_days")
    )
    bills = fees = 0
    for bill_id, due_date, grace_days in list(candidates):
        if day <= due_date + datetime.timedelta(days=grace_days or 0):
            continue
        issued = bill_late_fees_issue(bill_id=bill_id, today=day)
        if issued is not None:
            bills += 1
            fees += issued
    return {"date": day.isoformat(), "bills": bills, "fees": fees}


# --- after the run: disputes resolved, the bill cancelled --------------------------------------


def late_fee_for_member(*, bill: Bill, user_id: Any, today: datetime.date | None = None) -> int:
    """Charge one member's late fee of ``bill`` now (a dispute of theirs was rejected
    after the bill's fees were issued, which had skipped them). Call it inside the
    resolution's transaction; returns 1 if a fee was issued, else 0."""
    if not bill.late_fee_kind or bill.late_fees_issued_at is None or bill.cancelled_at is not None:
        return 0
    if connection.vendor != "postgresql" or late_fee_amount(bill) <= 0:
        return 0
    day = today or estate_today()
    issued = _insert_late_fees(bill, today=day, user_id=user_id)
    if issued:
        _announce(bill, day, Recipients.users(user_id), f"PAYMENT_DUE:late-fees:bill:{bill.pk}:member:{user_id}")
    return issued


def late_fee_waive(*, bill: Bill, user_id: Any, resolver: Any, note: str) -> Bill | None:
    """Waive the member's late fee of ``bill`` (their dispute of ``bill`` was upheld):
    the fee gets an upheld dispute — the member's open one on it, if any — so its
    status is ``waived``. Call it inside the resolution's transaction. Returns the fee,
    or None if there is none to waive."""
    fee = Bill.objects.filter(late_fee_of=bill, user_id=user_id, cancelled_at__isnull=True).first()
    if fee is None:
        return None
    now = timezone.now()
    reason = f"Waived with the upheld dispute of {bill.reference}."
    opened = BillDispute.objects.filter(bill=fee, user_id=user_id, status=DisputeStatus.OPEN).update(
        status=DisputeStatus.UPHELD, resolved_at=now, resolved_by=resolver, resolution_note=note or reason
    )
    if not opened:
        if BillDispute.objects.filter(bill=fee, user_id=user_id, status=DisputeStatus.UPHELD).exists():
            return fee  # waived already
        BillDispute.objects.create(
            cluster_id=fee.cluster_id,
            bill=fee,
            user_id=user_id,
            reason=reason,
            status=DisputeStatus.UPHELD,
            resolved_at=now,
            resolved_by=resolver,
            resolution_note=note or reason,
        )
    counter_add(bill_id=fee.pk, user_id=user_id, waived=1, disputed=-int(bool(opened)))
    audit_record(
        action="bill.late_fee_waive",
        target=fee,
        actor=resolver,
        cluster=bill.cluster,
        origin=Origin(),
        data={"late_fee_of": str(bill.pk), "user_id": str(user_id)},
    )
    return fee


def late_fees_cancel(*, bill: Bill, by: Any, reason: str) -> int:
    """Cancel the late fees of a cancelled bill (inside its cancellation's transaction).
    Fees already paid stay on the ledger, as for any cancelled bill."""
    return Bill.objects.filter(late_fee_of=bill, cancelled_at__isnull=True).update(
        cancelled_at=timezone.now(), cancelled_by=by, cancellation_reason=f"{bill.reference} was cancelled: {reason}"
    )
