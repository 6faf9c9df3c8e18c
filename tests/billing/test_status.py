"""The status derivation: Python and SQL agree on every combination of facts."""

from __future__ import annotations

import datetime
import itertools
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from levy.access import access_bill_as_member
from levy.billing.counters import recount
from levy.billing.models import Bill, BillAcknowledgement, BillDispute, DisputeStatus
from levy.billing.selectors import (
    MEMBER_SUMMARY_FIELDS,
    BillStats,
    attach_member_summaries,
    bill_audience,
    bill_member_statuses,
    bills_applying_to,
    bills_with_stats,
    bills_with_stats_recomputed,
    decorate_bill_members,
    decorate_member_bills,
    estate_today,
    member_bill_facts,
    member_bill_states,
    member_bills,
    members_filtered_by_disputed,
    members_filtered_by_overdue,
    members_with_bill_summary,
    read_member_facts,
)
from levy.billing.status import OWING_STATUSES, STATUS_RULES, BillStatus, MemberBillFacts, derive_status
from levy.common.errors import NotFoundError
from levy.estates.access import access_cluster
from levy.estates.models import Membership
from levy.notifications.recipients import Recipients
from levy.wallets.models import Transaction, Wallet
from tests.conftest import Estate, make_estate

MEMBER_FACTS = ("paid", "waived", "disputed", "acknowledged")


def test_precedence_order_is_the_contract() -> None:
    assert [status for status, _ in STATUS_RULES] + [BillStatus.PENDING] == [
        BillStatus.CANCELLED,
        BillStatus.PAID,
        BillStatus.WAIVED,
        BillStatus.DISPUTED,
        BillStatus.OVERDUE,
        BillStatus.ACKNOWLEDGED,
        BillStatus.PENDING,
    ]


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (dict(cancelled=True, paid=True, waived=True, disputed=True, past_due=True, acknowledged=True), "cancelled"),
        (dict(cancelled=False, paid=True, waived=True, disputed=True, past_due=True, acknowledged=True), "paid"),
        (dict(cancelled=False, paid=False, waived=True, disputed=True, past_due=True, acknowledged=True), "waived"),
        (dict(cancelled=False, paid=False, waived=False, disputed=True, past_due=True, acknowledged=True), "disputed"),
        (dict(cancelled=False, paid=False, waived=False, disputed=False, past_due=True, acknowledged=True), "overdue"),
        (
            dict(cancelled=False, paid=False, waived=False, disputed=False, past_due=False, acknowledged=True),
            "acknowledged",
        ),
        (
            dict(cancelled=False, paid=False, waived=False, disputed=False, past_due=False, acknowledged=False),
            "pending",
        ),
    ],
)
def test_derive_status_examples(facts: dict[str, bool], expected: str) -> None:
    assert derive_status(MemberBillFacts(**facts)) == expected


def all_member_fact_combos() -> list[dict[str, bool]]:
    """Every combination of the four member facts (16)."""
    return [dict(zip(MEMBER_FACTS, values, strict=True)) for values in itertools.product([False, True], repeat=4)]


def _set_member_facts(estate: Estate, bill: Bill, member: Membership, combo: dict[str, bool]) -> None:
    """Write the stored facts directly (some combinations are unreachable through the
    services; the derivation must still agree on them)."""
    if combo["acknowledged"]:
        BillAcknowledgement.objects.create(bill=bill, user=member.user)
    if combo["paid"]:
        wallet = Wallet.objects.get(cluster=estate.cluster, user=member.user)
        Transaction.objects.create(
            cluster=estate.cluster,
            wallet=wallet,
            type="bill_payment",
            status="completed",
            amount=-bill.amount,
            balance_after=Decimal("0.00"),
            bill=bill,
            payer=member.user,
            initiated_by=member.user,
            reference=f"TX-{bill.pk.hex[:8]}-{member.pk.hex[:8]}",
            idempotency_key=f"k-{bill.pk}",
        )
    now = timezone.now()
    if combo["waived"]:
        BillDispute.objects.create(
            cluster=estate.cluster,
            bill=bill,
            user=member.user,
            reason="wrong",
            status=DisputeStatus.UPHELD,
            resolved_at=now,
            resolved_by=estate.admin.user,
        )
    if combo["disputed"]:
        BillDispute.objects.create(cluster=estate.cluster, bill=bill, user=member.user, reason="wrong")


def _build(combos: list[dict[str, bool]]) -> tuple[Estate, datetime.date, list[tuple[Bill, bool, bool]], list]:
    """Four bills (cancelled x past due) and one member per member-fact combination."""
    estate = make_estate(residents=0)
    members = [estate.add() for _ in combos]
    today = estate_today()
    bills = []
    for cancelled, past_due in itertools.product([False, True], repeat=2):
        bill = estate.wide_bill(title=f"c={cancelled} p={past_due}")
        if past_due:
            Bill.objects.filter(pk=bill.pk).update(due_date=today - datetime.timedelta(days=1))
        if cancelled:
            Bill.objects.filter(pk=bill.pk).update(cancelled_at=timezone.now(), cancelled_by=estate.admin.user)
        bill.refresh_from_db()
        for member, combo in zip(members, combos, strict=True):
            _set_member_facts(estate, bill, member, combo)
        bills.append((bill, cancelled, past_due))
    return estate, today, bills, members


@pytest.mark.django_db
def test_python_and_sql_agree_on_every_combination_of_facts() -> None:
    combos = all_member_fact_combos()
    _, today, bills, members = _build(combos)
    checked = set()
    for bill, cancelled, past_due in bills:
        per_bill = {m.user_id: m.status for m in bill_member_statuses(bill=bill, today=today)}
        assert len(per_bill) == len(members)
        for member, combo in zip(members, combos, strict=True):
            expected = derive_status(MemberBillFacts(cancelled=cancelled, past_due=past_due, **combo))
            facts = member_bill_facts(bill=bill, user=member.user, today=today)
            assert facts == MemberBillFacts(cancelled=cancelled, past_due=past_due, **combo)
            assert bill.status_for(member.user, today=today) == expected
            assert per_bill[member.user_id] == expected
            mine = {b.pk: b.status for b in member_bills(membership=member, today=today)}
            assert mine[bill.pk] == expected
            checked.add((cancelled, past_due, *combo.values()))
    assert len(checked) == 64


REACHABLE = [
    # at most one of paid / waived / disputed: the services keep them exclusive
    dict(paid=False, waived=False, disputed=False, acknowledged=False),
    dict(paid=False, waived=False, disputed=False, acknowledged=True),
    dict(paid=True, waived=False, disputed=False, acknowledged=True),
    dict(paid=False, waived=True, disputed=False, acknowledged=False),
    dict(paid=False, waived=True, disputed=False, acknowledged=True),
    dict(paid=False, waived=False, disputed=True, acknowledged=False),
    dict(paid=False, waived=False, disputed=True, acknowledged=True),
]


@pytest.mark.django_db
def test_per_bill_counts_agree_with_per_member_statuses() -> None:
    _, today, bills, _ = _build(REACHABLE + REACHABLE[:3])
    ids = [b.pk for b, *_ in bills]
    annotated = {b.pk: b for b in bills_with_stats_recomputed(Bill.objects.filter(pk__in=ids), today=today)}
    # The facts were written directly, not through the services: recounted, the
    # counters read back the same numbers.
    recount(Bill.objects.filter(pk__in=ids))
    counted = {b.pk: BillStats.of(b) for b in bills_with_stats(Bill.objects.filter(pk__in=ids), today=today)}
    assert counted == {pk: BillStats.of(b) for pk, b in annotated.items()}
    for bill, cancelled, _ in bills:
        rows = list(bill_member_statuses(bill=bill, today=today))
        statuses = [r.status for r in rows]
        stats = BillStats.of(annotated[bill.pk])
        assert stats.eligible == len(rows) == 10
        assert stats.paid == 2
        assert stats.acknowledged == sum(1 for r in rows if r.f_acknowledged) == 6
        assert stats.waived == 2
        assert stats.disputed == 2
        if cancelled:
            assert set(statuses) == {BillStatus.CANCELLED}
            assert stats.outstanding == 0
            assert stats.overdue == 0
        else:
            assert stats.paid == statuses.count(BillStatus.PAID) == 2
            assert stats.waived == statuses.count(BillStatus.WAIVED)
            assert stats.disputed == statuses.count(BillStatus.DISPUTED)
            assert stats.overdue == statuses.count(BillStatus.OVERDUE)
            assert stats.outstanding == sum(1 for s in statuses if s in OWING_STATUSES)
        assert stats.collected_amount == Decimal("30000.00")


@pytest.mark.django_db
def test_counts_ignore_members_the_bill_does_not_apply_to(estate: Estate) -> None:
    bill = estate.wide_bill()
    late = estate.add(joined_at=timezone.now())
    gone = estate.residents[0]
    Membership.objects.filter(pk=gone.pk).update(active=False, deactivated_at=timezone.now())
    BillAcknowledgement.objects.create(bill=bill, user=gone.user)
    stats = BillStats.of(bills_with_stats_recomputed(Bill.objects.filter(pk=bill.pk)).get())
    # residents 1 and 2 remain; the staff (not resident), the late joiner and the
    # deactivated member are not counted, and neither is the deactivated member's fact.
    assert stats.eligible == 2
    assert stats.acknowledged == 0
    assert late.user_id not in {m.user_id for m in bill_member_statuses(bill=bill)}


@pytest.mark.django_db
def test_the_page_summary_query_agrees_with_the_annotations() -> None:
    """The member list's one-query summary equals the per-figure annotations, for every
    combination of facts, a member's own bill, a staff member and a deactivated one."""
    estate, today, _, members = _build(REACHABLE + REACHABLE[:3])
    estate.user_bill(members[0], amount=Decimal("7.50"))
    gone = members[1]
    Membership.objects.filter(pk=gone.pk).update(active=False, deactivated_at=timezone.now())
    everyone = list(Membership.objects.filter(cluster=estate.cluster).order_by("pk"))
    attach_member_summaries(everyone, today=today)
    annotated = members_with_bill_summary(Membership.objects.filter(cluster=estate.cluster), today=today)
    expected = {m.pk: tuple(getattr(m, f) for f in MEMBER_SUMMARY_FIELDS) for m in annotated}
    assert {m.pk: tuple(getattr(m, f) for f in MEMBER_SUMMARY_FIELDS) for m in everyone} == expected
    assert any(v[0] > 0 for v in expected.values()) and any(v[2] > 0 for v in expected.values())
    for has_overdue in (True, False):
        chosen = members_filtered_by_overdue(
            Membership.objects.filter(cluster=estate.cluster), has_overdue=has_overdue, today=today
        )
        assert {m.pk for m in chosen} == {pk for pk, v in expected.items() if (v[2] > 0) is has_overdue}
    assert any(v[4] > 0 for v in expected.values())
    for has_disputed in (True, False):
        chosen = members_filtered_by_disputed(
            Membership.objects.filter(cluster=estate.cluster), has_disputed=has_disputed
        )
        assert {m.pk for m in chosen} == {pk for pk, v in expected.items() if (v[4] > 0) is has_disputed}


@pytest.mark.django_db
def test_the_fixed_facts_statement_applies_bills_as_the_audience_queryset_does(other_estate: Estate) -> None:
    """``read_member_facts`` (fixed SQL, on every acknowledgement and payment) and
    ``bill_audience`` (the ORM form) agree on who a bill applies to."""
    estate = make_estate(residents=2)
    early, other = estate.residents
    wide = estate.wide_bill()
    own = estate.user_bill(early)
    late = estate.add(joined_at=wide.created_at + datetime.timedelta(seconds=1))
    left = estate.add()
    Membership.objects.filter(pk=left.pk).update(
        active=False, deactivated_at=timezone.now(), joined_at=wide.created_at - datetime.timedelta(days=1)
    )
    staff = estate.add(role="treasurer", is_resident=False, joined_at=wide.created_at - datetime.timedelta(days=1))
    people = [early, other, late, left, staff, estate.admin, other_estate.residents[0]]
    seen = set()
    for bill in (wide, own, other_estate.wide_bill()):
        for person in people:
            expected = bill_audience(bill).filter(user_id=person.user_id).exists()
            assert read_member_facts(bill=bill, user=person.user).applies == expected, (bill.title, person.role)
            seen.add(expected)
    assert seen == {True, False}

    # access_bill_as_member (fixed SQL too) against bills_applying_to, for the active people.
    for bill in (wide, own):
        for person in (early, other, late, staff, estate.admin):
            expected = bills_applying_to(person).filter(pk=bill.pk).exists()
            try:
                found = access_bill_as_member(access_cluster(person.user, estate.cluster.pk), bill.pk) == bill
            except NotFoundError:
                found = False
            assert found == expected, (bill.title, person.role)

    def applies(bill: Bill, member: Membership) -> bool:
        return read_member_facts(bill=bill, user=member.user).applies

    assert applies(wide, early) and not applies(wide, late)
    assert applies(own, early) and not applies(own, other)


@pytest.mark.django_db
def test_the_decorated_page_agrees_with_the_annotated_member_bills() -> None:
    """The resident bill list paginates plain bills and reads the page's facts in one
    fixed statement (``decorate_member_bills``); it must show exactly what the annotated
    ``member_bills`` queryset derives, for every combination of facts."""
    combos = all_member_fact_combos()
    _, today, bills, members = _build(combos)
    Bill.objects.filter(pk=bills[1][0].pk).update(allow_payment_after_due=True)
    names = ("status", "acknowledged_at", "paid_at", "can_pay")
    seen = set()
    for member in members:
        annotated = list(member_bills(membership=member, today=today))
        plain = list(bills_applying_to(member).order_by("-created_at", "-id"))
        assert [b.pk for b in plain] == [b.pk for b in annotated]
        decorate_member_bills(plain, membership=member, today=today)
        for fast, reference in zip(plain, annotated, strict=True):
            assert {n: getattr(fast, n) for n in names} == {n: getattr(reference, n) for n in names}
            seen.add((fast.status, fast.can_pay))
    assert {status for status, _ in seen} == set(BillStatus.values)
    assert (BillStatus.ACKNOWLEDGED, True) in seen and (BillStatus.OVERDUE, True) in seen


@pytest.mark.django_db
def test_the_member_bill_states_agree_with_the_annotated_member_bills() -> None:
    """My bills reads every bill's status without its other columns
    (``member_bill_states``: the bills' few columns, then the fixed facts statement);
    it must give the bills, order and annotations of ``member_bills``, for every
    combination of facts, a bill payable after its due date, and a member's own bill."""
    combos = all_member_fact_combos()
    estate, today, bills, members = _build(combos)
    Bill.objects.filter(pk=bills[1][0].pk).update(allow_payment_after_due=True)
    estate.user_bill(members[0], title="Only the first member's")
    names = ("pk", "created_at", "due_date", "status", "acknowledged_at", "paid_at", "can_pay")
    seen = set()
    for member in members:
        reference = [{n: getattr(b, n) for n in names} for b in member_bills(membership=member, today=today)]
        states = [{n: getattr(s, n) for n in names} for s in member_bill_states(membership=member, today=today)]
        assert states == reference
        seen |= {(s["status"], s["can_pay"]) for s in states}
    assert len(member_bill_states(membership=members[0], today=today)) == len(bills) + 1
    assert {status for status, _ in seen} == set(BillStatus.values)
    assert (BillStatus.ACKNOWLEDGED, True) in seen and (BillStatus.OVERDUE, True) in seen
    gone = members[1]
    Membership.objects.filter(pk=gone.pk).update(active=False, deactivated_at=timezone.now())
    gone.refresh_from_db()
    assert member_bill_states(membership=gone, today=today) == []


@pytest.mark.django_db
def test_the_decorated_audience_page_agrees_with_the_annotated_bill_member_statuses() -> None:
    """One bill's per-member list paginates the audience and reads the page's facts in
    one fixed statement (``decorate_bill_members``); it must show what
    ``bill_member_statuses`` derives, for every combination of facts."""
    combos = all_member_fact_combos()
    _, today, bills, _ = _build(combos)
    names = ("status", "acknowledged_at", "paid_at", "dispute_id")
    seen = set()
    for bill, *_ in bills:
        reference = list(bill_member_statuses(bill=bill, today=today))
        page = list(bill_audience(bill).order_by("joined_at", "id"))
        assert [m.pk for m in page] == [m.pk for m in reference]
        decorate_bill_members(page, bill=bill, today=today)
        for fast, ref in zip(page, reference, strict=True):
            assert {n: getattr(fast, n) for n in names} == {n: getattr(ref, n) for n in names}
            seen.add(fast.status)
    assert seen == set(BillStatus.values)


# A member's payments of a bill, written directly: (settlement, refund that reopened it,
# refund that did not — a cancelled bill's). Whether each history counts as paid.
PAYMENT_HISTORIES: dict[str, tuple[list[tuple[int, bool, bool]], bool]] = {
    "never paid": ([], False),
    "paid": ([(0, False, False)], True),
    "refunded": ([(0, True, False)], False),
    "refunded, paid again": ([(0, True, False), (1, False, False)], True),
    "refunded twice": ([(0, True, False), (1, True, False)], False),
    "refunded once cancelled": ([(0, False, True)], True),
}


def _write_history(estate: Estate, bill: Bill, member: Membership, history: list[tuple[int, bool, bool]]) -> None:
    wallet = Wallet.objects.get(cluster=estate.cluster, user=member.user)
    for settlement, reopened, kept in history:
        common = dict(
            cluster=estate.cluster,
            wallet=wallet,
            status="completed",
            balance_after=Decimal("0.00"),
            bill=bill,
            payer=member.user,
            initiated_by=member.user,
        )
        payment = Transaction.objects.create(
            **common,
            type="bill_payment",
            amount=-bill.amount,
            settlement=settlement,
            reference=f"TX-{uuid.uuid4().hex[:16]}",
            idempotency_key=uuid.uuid4().hex,
        )
        if reopened or kept:
            Transaction.objects.create(
                **common,
                type="refund",
                amount=bill.amount,
                reverses=payment,
                reopens_bill=reopened,
                reference=f"TX-{uuid.uuid4().hex[:16]}",
                idempotency_key=uuid.uuid4().hex,
                initiated_by_id=estate.treasurer.user_id,
            )


@pytest.mark.django_db
def test_every_form_of_the_paid_fact_agrees_on_refunded_payments() -> None:
    """A payment refunded while its bill was live does not count as paid; one paid again
    after it does; one refunded once the bill was cancelled still does. Every reader of
    the fact — the fixed statements, the ORM forms, the counts and their recount, the
    member list's summary and the recipients of reminders — says the same."""
    estate = make_estate(residents=0)
    histories = list(PAYMENT_HISTORIES.items())
    members = [estate.add() for _ in histories]
    today = estate_today()
    for cancelled, past_due in itertools.product([False, True], repeat=2):
        bill = estate.wide_bill(title=f"c={cancelled} p={past_due}")
        for member, (_, (history, _)) in zip(members, histories, strict=True):
            BillAcknowledgement.objects.create(bill=bill, user=member.user)
            _write_history(estate, bill, member, history)
        changes: dict[str, Any] = {}
        if past_due:
            changes["due_date"] = today - datetime.timedelta(days=1)
        if cancelled:
            changes.update(cancelled_at=timezone.now(), cancelled_by=estate.admin.user)
        Bill.objects.filter(pk=bill.pk).update(**changes)
        bill.refresh_from_db()
        per_bill = {m.user_id: (m.status, m.paid_at) for m in bill_member_statuses(bill=bill, today=today)}
        page = decorate_bill_members(list(bill_audience(bill).order_by("pk")), bill=bill, today=today)
        for member, (name, (_, paid)) in zip(members, histories, strict=True):
            expected = derive_status(
                MemberBillFacts(
                    cancelled=cancelled, paid=paid, waived=False, disputed=False, past_due=past_due, acknowledged=True
                )
            )
            assert read_member_facts(bill=bill, user=member.user).paid is paid, name
            assert bill.status_for(member.user, today=today) == expected, name
            assert per_bill[member.user_id][0] == expected, name
            assert (per_bill[member.user_id][1] is not None) is paid, name
            assert {m.user_id: m.status for m in page}[member.user_id] == expected, name
            annotated = {b.pk: b for b in member_bills(membership=member, today=today)}[bill.pk]
            plain = decorate_member_bills([Bill.objects.get(pk=bill.pk)], membership=member, today=today)[0]
            assert read_member_facts(bill=bill, user=member.user).paid_at == plain.paid_at, name
            for row in (annotated, plain):
                assert (row.status, row.paid_at is not None) == (expected, paid), name
                assert row.can_pay is (not cancelled and not paid and not past_due), name
        recomputed = BillStats.of(bills_with_stats_recomputed(Bill.objects.filter(pk=bill.pk), today=today).get())
        assert recomputed.paid == sum(paid for _, (_, paid) in histories) == 3
        recount(Bill.objects.filter(pk=bill.pk))
        assert BillStats.of(bills_with_stats(Bill.objects.filter(pk=bill.pk), today=today).get()) == recomputed
        unpaid = Recipients.bill_unpaid(bill).memberships(estate.cluster.pk).values_list("user_id", flat=True)
        assert set(unpaid) == {m.user_id for m, (_, (_, paid)) in zip(members, histories, strict=True) if not paid}
    # The member list's one-query summary (live bills) against its annotations.
    everyone = list(Membership.objects.filter(cluster=estate.cluster).order_by("pk"))
    attach_member_summaries(everyone, today=today)
    annotated_members = members_with_bill_summary(Membership.objects.filter(cluster=estate.cluster), today=today)
    expected_summary = {m.pk: tuple(getattr(m, f) for f in MEMBER_SUMMARY_FIELDS) for m in annotated_members}
    assert {m.pk: tuple(getattr(m, f) for f in MEMBER_SUMMARY_FIELDS) for m in everyone} == expected_summary
    for member, (name, (_, paid)) in zip(members, histories, strict=True):
        outstanding, _, overdue, _, _, paid_count = expected_summary[member.pk]
        assert (outstanding, overdue, paid_count) == ((0, 0, 2) if paid else (2, 1, 0)), name


@pytest.mark.django_db
def test_the_status_case_of_fixed_statements_agrees_with_derive_status() -> None:
    """``status_sql`` (My bills' fixed statement) derives in PostgreSQL what
    ``derive_status`` does, on all 64 combinations of the six facts."""
    from django.db import connection

    from levy.billing.status import STATUS_SQL_PARAMS, status_sql

    names = [fact for _, fact in STATUS_RULES]
    combos = list(itertools.product([False, True], repeat=len(names)))
    values = ", ".join("(" + ", ".join(["%s"] * len(names)) + ")" for _ in combos)
    case = status_sql({name: f"v.{name}" for name in names})
    # Positional values for the rows, then the statuses by name: one style per statement.
    params = {f"p{i}": value for i, value in enumerate(v for combo in combos for v in combo)}
    placeholders = iter(f"%(p{i})s" for i in range(len(params)))
    rows_sql = values.replace("%s", "{}").format(*placeholders)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {case} FROM (VALUES {rows_sql}) AS v({', '.join(names)})",  # noqa: S608 - built here
            {**params, **STATUS_SQL_PARAMS},
        )
        derived = [row[0] for row in cursor.fetchall()]
    assert derived == [derive_status(MemberBillFacts(**dict(zip(names, combo, strict=True)))) for combo in combos]


@pytest.mark.django_db
def test_the_one_member_statement_sets_what_the_page_read_does() -> None:
    """A bill's page reads its state and the caller's facts in ``read_member_facts``'
    one statement (``member_bill_with_facts``): the status, ``acknowledged_at``,
    ``paid_at`` and ``can_pay`` must be what ``member_bill`` (the page read of the API)
    sets, for every combination of facts, refunded payments included."""
    from levy.billing.selectors import member_bill, member_bill_with_facts

    combos = all_member_fact_combos()
    estate, _, bills, members = _build(combos)
    Bill.objects.filter(pk=bills[1][0].pk).update(allow_payment_after_due=True)
    names = ("status", "acknowledged_at", "paid_at", "can_pay")
    seen, paid_at_seen = set(), False
    for member in members:
        caller = access_cluster(member.user, estate.cluster.pk)
        for bill, _, _ in bills:
            reference = member_bill(access=caller, bill=Bill.objects.get(pk=bill.pk))
            shown, facts = member_bill_with_facts(access=caller, bill=Bill.objects.get(pk=bill.pk))
            assert {n: getattr(shown, n) for n in names} == {n: getattr(reference, n) for n in names}
            assert facts.acknowledged == (facts.acknowledged_at is not None)
            assert facts.paid == (facts.paid_at is not None)
            seen.add(shown.status)
            paid_at_seen = paid_at_seen or shown.paid_at is not None
    assert seen == set(BillStatus.values)
    assert paid_at_seen
