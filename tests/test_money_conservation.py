"""Money is conserved: a hypothesis state machine over the real services on PostgreSQL.

The machine runs random sequences of credits, top-ups through a payment provider (the
local fake, over HTTP), bills (estate-wide and user-specific),
acknowledgements, disputes, resolutions, payments (and replays of their idempotency
keys), cancellations and refunds — of cancelled bills' payments and of live ones', after
which the member owes the bill again and may pay it again. It keeps a plain Python model of what each call
must do — succeed, or be refused with exactly which error — and of every wallet's
balance. After every step it checks, against the database:

- each wallet's balance equals its ledger sum and the model's balance, and is >= 0;
- wallets + estate revenue == money received, and both sides match the model;
- at most one live bill payment per (bill, payer) (completed, and not refunded while
  its bill was live), and exactly the model's set, as are the completed payments, each
  numbered (``settlement``) by the payer's earlier payments of the bill;
- every completed payment's bill was acknowledged by its payer.

How the examples are isolated: the state machine runs inside one ordinary pytest test
marked ``django_db`` (one test transaction, rolled back at the end). Each example's
``__init__`` creates a brand-new estate and every query and invariant is scoped to it,
so rows left by earlier examples are invisible to later ones. We do not use
``hypothesis.extra.django.TestCase``: its per-example transaction hooks wrap examples
of ``@given`` methods, not the internal loop of ``run_state_machine_as_test``. Every
service call opens its own ``atomic()`` block, which inside the test transaction is a
savepoint, so a refused call (IntegrityError caught by a service, an exception
raised) rolls back just its own writes — as it would in production — and the
failed-payment entry that ``bill_pay`` commits on purpose stays, as it should.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import hypothesis
import pytest
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from levy.billing.counters import counters_drift
from levy.billing.models import Bill, BillAcknowledgement, BillDispute, DisputeStatus
from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.selectors import live_payment
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute, dispute_resolve
from levy.common.errors import (
    ApplicationError,
    InsufficientFundsError,
    NotFoundError,
    RuleViolation,
    ValidationError,
)
from levy.estates.access import EstateAccess
from levy.estates.models import Membership
from levy.estates.permissions import Role
from levy.members.services import member_update
from levy.payments.accounts import provider_account_save
from levy.payments.fake import FakeProvider, FakeProviderServer
from levy.payments.models import TopUp, TopUpStatus
from levy.payments.services import topup_return, topup_start, webhook_receive
from levy.wallets.models import Transaction, TransactionStatus, TransactionType, Wallet
from levy.wallets.selectors import cluster_money_received, cluster_revenue, ledger_balance
from levy.wallets.services import wallet_credit
from tests.conftest import access, make_estate, new_key
from tests.factories import MembershipFactory

ZERO = Decimal("0.00")
MAX_MEMBERS = 7
MAX_BILLS = 10

# Hypothesis favours small decimals; the round sums make sure wallets can afford bills.
credits = st.one_of(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000.00"), places=2),
    st.sampled_from([Decimal("10000.00"), Decimal("50000.00"), Decimal("100000.00")]),
)
bill_amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("20000.00"), places=2)

# A monotonic clock for "who joined before which bill": an estate-wide bill applies
# to the resident members whose membership began on or before its issue time.
_ticks = itertools.count(1)

# The local fake of the payment providers (tests/conftest.py) the top-ups go through.
PROVIDER: dict[str, FakeProvider] = {}

# What the calls did, over the whole run: proof the run exercised every path.
OUTCOMES: Counter[str] = Counter()


@dataclass
class MemberModel:
    membership: Membership
    access: EstateAccess
    resident: bool
    joined: int  # tick of joining; the estate's founding members joined at 0
    balance: Decimal = ZERO


@dataclass
class BillModel:
    bill: Bill
    amount: Decimal
    user: int | None  # index into members, or None for estate-wide
    issued: int
    cancelled: bool = False


@dataclass
class PaymentModel:
    bill: int
    member: int
    key: str
    tx_id: Any
    ok: bool  # completed (True) or failed for insufficient funds (False)
    refunded: bool = False
    reopened: bool = False  # refunded while its bill was live: no longer counts as paid
    settlement: int = 0


@dataclass
class DisputeModel:
    dispute: BillDispute
    bill: int
    member: int
    status: str = DisputeStatus.OPEN


@dataclass
class Expectation:
    error: type[ApplicationError] | None = None
    code: str | None = None


def expect_error(error: type[ApplicationError], code: str | None = None) -> Expectation:
    return Expectation(error=error, code=code)


OK = Expectation()


MAX_RESIDENCY_CHANGES = 3
# Rationed like residency changes: each top-up is two HTTP calls to the fake, and the
# money they bring must not starve the paths that need a short wallet.
MAX_TOP_UPS = 2


class MoneyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # A fresh estate per example: two founding residents and the staff.
        self.estate = make_estate(residents=2)
        self.cluster = self.estate.cluster
        self.admin = access(self.estate.admin)
        self.treasurer = access(self.estate.treasurer)
        founders = [*self.estate.residents, self.estate.auditor]  # the auditor is not a resident
        self.members = [MemberModel(membership=m, access=access(m), resident=m.is_resident, joined=0) for m in founders]
        self.bills: list[BillModel] = []
        self.acks: set[tuple[int, int]] = set()
        self.disputes: list[DisputeModel] = []
        self.payments: list[PaymentModel] = []
        self.received = ZERO
        self.revenue = ZERO
        self.residency_changes = 0
        self.top_ups = 0
        provider_account_save(access=self.admin, provider="paystack", secret_key=new_key("sk_test"), active=True)

    # --- the model's rules ---------------------------------------------------------

    def applies(self, b: int, m: int) -> bool:
        bill, member = self.bills[b], self.members[m]
        if not member.resident:
            return False
        if bill.user is not None:
            return bill.user == m
        return member.joined < bill.issued

    def paid(self, b: int, m: int) -> bool:
        return any(p.ok and not p.reopened and p.bill == b and p.member == m for p in self.payments)

    def refunded_before(self, b: int, m: int) -> bool:
        return any(p.reopened and p.bill == b and p.member == m for p in self.payments)

    def dispute_in(self, b: int, m: int, status: str) -> bool:
        return any(d.bill == b and d.member == m and d.status == status for d in self.disputes)

    def expected_payment(self, b: int, m: int, *, assume_acknowledged: bool = False) -> Expectation:
        """``bill_payment_refusal``'s order, then the wallet."""
        if not self.applies(b, m):
            return expect_error(NotFoundError)
        if self.bills[b].cancelled:
            return expect_error(RuleViolation, "bill_cancelled")
        if self.paid(b, m):
            return expect_error(RuleViolation, "bill_already_paid")
        if self.dispute_in(b, m, DisputeStatus.UPHELD):
            return expect_error(RuleViolation, "bill_waived")
        if self.dispute_in(b, m, DisputeStatus.OPEN):
            return expect_error(RuleViolation, "bill_disputed")
        if (b, m) not in self.acks and not assume_acknowledged:
            return expect_error(RuleViolation, "bill_not_acknowledged")
        if self.members[m].balance < self.bills[b].amount:
            return expect_error(InsufficientFundsError)
        return OK

    def expected_dispute(self, b: int, m: int) -> Expectation:
        if not self.applies(b, m):
            return expect_error(NotFoundError)
        if self.bills[b].cancelled:
            return expect_error(RuleViolation, "bill_cancelled")
        if self.paid(b, m):
            return expect_error(RuleViolation, "bill_already_paid")
        if self.dispute_in(b, m, DisputeStatus.UPHELD):
            return expect_error(RuleViolation, "bill_waived")
        if self.dispute_in(b, m, DisputeStatus.OPEN):
            return expect_error(RuleViolation, "dispute_already_open")
        return OK

    def call(self, expected: Expectation, fn: Any, *, label: str = "", **kwargs: Any) -> Any:
        """Call a service and check it did what the model says: its result, or exactly
        the expected error (class and code)."""
        outcome = "ok" if expected.error is None else (expected.code or expected.error.__name__)
        OUTCOMES[f"{label or fn.__name__}: {outcome}"] += 1
        if expected.error is None:
            return fn(**kwargs)
        with pytest.raises(expected.error) as caught:
            fn(**kwargs)
        assert type(caught.value) is expected.error
        if expected.code is not None:
            assert caught.value.code == expected.code
        return caught.value

    # --- choosing what to act on ---------------------------------------------------

    def all_pairs(self) -> list[tuple[int, int]]:
        return [(b, m) for b in range(len(self.bills)) for m in range(len(self.members))]

    def choose(self, data: st.DataObject, *pools: list[Any]) -> Any:
        """Pick from the first non-empty pool most of the time (calls that can get
        somewhere), from a later one sometimes (to see the refusals). Picks are uniform
        draws from the model's own lists, so runs are not spent on index 0."""
        candidates = [pool for pool in pools if pool]
        weights = [0, 0, 0, *range(len(candidates))]
        pool = candidates[data.draw(st.sampled_from(weights), label="pool")]
        return data.draw(st.sampled_from(pool), label="pick")

    # --- rules --------------------------------------------------------------------------

    @initialize(funds=st.lists(credits, min_size=2, max_size=2), wide=bill_amounts, own=bill_amounts)
    def open_the_books(self, funds: list[Decimal], wide: Decimal, own: Decimal) -> None:
        """Every example starts with money in the founders' wallets and two bills, so
        a payment is within reach even when Hypothesis's swarm testing switches the
        funding and billing rules off for the example."""
        for member, amount in zip(self.members[:2], funds, strict=True):
            self.fund(member, amount)
        self.add_estate_wide_bill(wide)
        self.add_user_specific_bill(0, own)

    def fund(self, member: MemberModel, amount: Decimal) -> None:
        tx = self.call(
            OK,
            wallet_credit,
            access=self.treasurer,
            membership=member.membership,
            amount=amount,
            note="cash at the gate",
            idempotency_key=new_key("credit"),
        )
        member.balance += amount
        self.received += amount
        assert (tx.type, tx.status, tx.amount, tx.balance_after) == (
            TransactionType.DEPOSIT,
            TransactionStatus.COMPLETED,
            amount,
            member.balance,
        )

    def add_estate_wide_bill(self, amount: Decimal) -> None:
        issued = next(_ticks)
        bill = self.estate.wide_bill(amount=amount)
        assert (bill.user_id, bill.amount) == (None, amount)
        self.bills.append(BillModel(bill=bill, amount=amount, user=None, issued=issued))

    def add_user_specific_bill(self, index: int, amount: Decimal) -> None:
        member = self.members[index]
        issued = next(_ticks)
        if not member.resident:
            with pytest.raises(ValidationError) as caught:
                self.estate.user_bill(member.membership, amount=amount)
            assert set(caught.value.fields) == {"user_id"}
            return
        bill = self.estate.user_bill(member.membership, amount=amount)
        assert (bill.user_id, bill.amount) == (member.membership.user_id, amount)
        self.bills.append(BillModel(bill=bill, amount=amount, user=index, issued=issued))

    @precondition(lambda self: len(self.members) < MAX_MEMBERS)
    @rule(resident=st.booleans())
    def create_member(self, resident: bool) -> None:
        # Joins now: estate-wide bills issued before this moment do not apply to them.
        role = Role.RESIDENT if resident else Role.TREASURER
        membership = MembershipFactory(cluster=self.cluster, role=role, joined_at=timezone.now())
        assert membership.is_resident is resident
        self.members.append(
            MemberModel(membership=membership, access=access(membership), resident=resident, joined=next(_ticks))
        )

    @precondition(lambda self: self.residency_changes < MAX_RESIDENCY_CHANGES)
    @rule(data=st.data())
    def change_residency(self, data: st.DataObject) -> None:
        # Moves the member in or out of every bill's audience: the bills' counters follow.
        # Rationed, so most steps still go to the money paths.
        self.residency_changes += 1
        m = self.choose(data, list(range(len(self.members))))
        member = self.members[m]
        self.call(
            OK,
            member_update,
            label="member_update",
            access=self.admin,
            membership=member.membership,
            is_resident=not member.resident,
        )
        member.resident = not member.resident

    @rule(data=st.data(), amount=credits)
    def credit(self, data: st.DataObject, amount: Decimal) -> None:
        self.fund(data.draw(st.sampled_from(self.members), label="member"), amount)

    @precondition(lambda self: self.top_ups < MAX_TOP_UPS)
    @rule(data=st.data(), amount=bill_amounts, by_webhook=st.booleans())
    def top_up(self, data: st.DataObject, amount: Decimal, by_webhook: bool) -> None:
        """A member tops up through the provider (the fake, over HTTP); the payment is
        confirmed by the webhook or the return page, then by the other one: credited once."""
        self.top_ups += 1
        member = data.draw(st.sampled_from(self.members), label="member")
        started = self.call(OK, topup_start, access=member.access, amount=amount, idempotency_key=new_key("topup"))
        PROVIDER["fake"].pay(started.reference, send_webhook=False)
        body, headers = PROVIDER["fake"].webhook(started.reference)
        for confirm_by_webhook in (by_webhook, not by_webhook):
            if confirm_by_webhook:
                webhook_receive(account_id=started.account_id, body=body, headers=headers)
            else:
                topup_return(reference=started.reference)
        member.balance += amount
        self.received += amount
        credited = TopUp.objects.select_related("transaction").get(pk=started.pk)
        assert (credited.status, credited.transaction.amount, credited.transaction.balance_after) == (
            TopUpStatus.CREDITED,
            amount,
            member.balance,
        )

    @precondition(lambda self: len(self.bills) < MAX_BILLS)
    @rule(amount=bill_amounts)
    def create_estate_wide_bill(self, amount: Decimal) -> None:
        self.add_estate_wide_bill(amount)

    @precondition(lambda self: len(self.bills) < MAX_BILLS)
    @rule(data=st.data(), amount=bill_amounts)
    def create_user_specific_bill(self, data: st.DataObject, amount: Decimal) -> None:
        residents = [i for i, member in enumerate(self.members) if member.resident]
        self.add_user_specific_bill(self.choose(data, residents, list(range(len(self.members)))), amount)

    @precondition(lambda self: self.bills)
    @rule(data=st.data())
    def acknowledge(self, data: st.DataObject) -> None:
        targets = [
            (b, m)
            for b, m in self.all_pairs()
            if self.applies(b, m) and not self.bills[b].cancelled and (b, m) not in self.acks
        ]
        self.do_acknowledge(*self.choose(data, targets, self.all_pairs()))

    def do_acknowledge(self, b: int, m: int) -> None:
        if not self.applies(b, m):
            expected = expect_error(NotFoundError)
        elif self.bills[b].cancelled:
            expected = expect_error(RuleViolation, "bill_cancelled")
        else:
            expected = OK
        result = self.call(expected, bill_acknowledge, access=self.members[m].access, bill=self.bills[b].bill)
        if expected is OK:
            ack, created = result
            assert created is ((b, m) not in self.acks)
            assert (ack.bill_id, ack.user_id) == (self.bills[b].bill.pk, self.members[m].membership.user_id)
            self.acks.add((b, m))

    @precondition(lambda self: self.bills)
    @rule(data=st.data())
    def dispute(self, data: st.DataObject) -> None:
        open_to_dispute = [(b, m) for b, m in self.all_pairs() if self.expected_dispute(b, m) is OK]
        applicable = [(b, m) for b, m in self.all_pairs() if self.applies(b, m)]
        b, m = self.choose(data, open_to_dispute, applicable, self.all_pairs())
        expected = self.expected_dispute(b, m)
        result = self.call(
            expected, bill_dispute, access=self.members[m].access, bill=self.bills[b].bill, reason="Not mine"
        )
        if expected is OK:
            assert (result.status, result.bill_id, result.user_id) == (
                DisputeStatus.OPEN,
                self.bills[b].bill.pk,
                self.members[m].membership.user_id,
            )
            self.disputes.append(DisputeModel(dispute=result, bill=b, member=m))

    @precondition(lambda self: self.disputes)
    @rule(data=st.data(), upheld=st.booleans(), again=st.booleans())
    def resolve_dispute(self, data: st.DataObject, upheld: bool, again: bool) -> None:
        """Resolve a dispute; with ``again``, a second admin resolves it at once too (the
        double click), which must be refused. Which dispute is picked depends on row
        ids, so the refusal is reached through ``again`` rather than by chance."""
        dispute = self.choose(data, [d for d in self.disputes if d.status == DisputeStatus.OPEN], self.disputes)
        resolution = DisputeStatus.UPHELD if upheld else DisputeStatus.REJECTED
        was_open = dispute.status == DisputeStatus.OPEN
        expected = OK if was_open else expect_error(RuleViolation, "dispute_already_resolved")
        result = self.call(
            expected,
            dispute_resolve,
            access=self.admin,
            dispute=dispute.dispute,
            resolution=resolution,
            note="Checked the meter",
        )
        if was_open:
            assert result.status == resolution
            dispute.status = resolution
            if again:
                self.call(
                    expect_error(RuleViolation, "dispute_already_resolved"),
                    dispute_resolve,
                    access=self.admin,
                    dispute=dispute.dispute,
                    resolution=DisputeStatus.REJECTED,
                    note="Second look",
                )

    @precondition(lambda self: self.bills)
    @rule(data=st.data(), acknowledge_first=st.booleans())
    def pay(self, data: st.DataObject, acknowledge_first: bool) -> None:
        """Pay a bill; with ``acknowledge_first``, the member acknowledges it just before
        (the app's "acknowledge and pay" flow). That keeps payments reachable in the
        examples where swarm testing switched the ``acknowledge`` rule off."""
        if acknowledge_first:
            ready = [
                (b, m)
                for b, m in self.all_pairs()
                if self.expected_payment(b, m, assume_acknowledged=True).error in (None, InsufficientFundsError)
            ]
        else:
            ready = [
                (b, m)
                for b, m in self.all_pairs()
                if self.expected_payment(b, m).error in (None, InsufficientFundsError)
            ]
        refused = [(b, m) for b, m in self.all_pairs() if self.applies(b, m) and (b, m) not in ready]
        b, m = self.choose(data, ready, refused, self.all_pairs())
        if acknowledge_first:
            self.do_acknowledge(b, m)
        self.do_pay(b, m)

    def do_pay(self, b: int, m: int) -> None:
        member, bill = self.members[m], self.bills[b]
        expected = self.expected_payment(b, m)
        key = new_key("pay")
        # Paying a bill again after a refund reopened it is its own path.
        label = "pay_again" if self.refunded_before(b, m) else ""
        settlement = sum(1 for p in self.payments if p.ok and p.bill == b and p.member == m)
        result = self.call(expected, bill_pay, label=label, access=member.access, bill=bill.bill, idempotency_key=key)
        if expected is OK:
            member.balance -= bill.amount
            self.revenue += bill.amount
            assert (result.type, result.status, result.amount, result.balance_after) == (
                TransactionType.BILL_PAYMENT,
                TransactionStatus.COMPLETED,
                -bill.amount,
                member.balance,
            )
            assert result.settlement == settlement
            self.payments.append(
                PaymentModel(bill=b, member=m, key=key, tx_id=result.pk, ok=True, settlement=settlement)
            )
        elif expected.error is InsufficientFundsError:
            # The refusal is on the ledger, once, as a failed entry that moved nothing.
            failed = Transaction.objects.get(wallet__cluster=self.cluster, idempotency_key=key)
            assert (failed.status, failed.failure_reason, failed.amount, failed.balance_after) == (
                TransactionStatus.FAILED,
                "insufficient_funds",
                -bill.amount,
                None,
            )
            assert result.details["transaction_id"] == str(failed.pk)
            self.payments.append(PaymentModel(bill=b, member=m, key=key, tx_id=failed.pk, ok=False))
        else:
            # A refusal by rule records nothing.
            assert not Transaction.objects.filter(wallet__cluster=self.cluster, idempotency_key=key).exists()

    @precondition(lambda self: self.payments)
    @rule(data=st.data())
    def replay_payment(self, data: st.DataObject) -> None:
        """The same key again: the first answer, whatever has happened since, and no
        money moves (the invariants check the balances)."""
        payment = data.draw(st.sampled_from(self.payments), label="payment")
        member, bill = self.members[payment.member], self.bills[payment.bill]
        expected = OK if payment.ok else expect_error(InsufficientFundsError)
        result = self.call(
            expected, bill_pay, label="replay", access=member.access, bill=bill.bill, idempotency_key=payment.key
        )
        if payment.ok:
            assert result.pk == payment.tx_id
        else:
            assert result.details["transaction_id"] == str(payment.tx_id)

    # Cancelling ends a bill's story, so keep most bills alive: at most a third of them
    # are ever cancelled (a repeat cancellation is still tried, and refused).
    @precondition(lambda self: self.bills and 3 * sum(bill.cancelled for bill in self.bills) <= len(self.bills))
    @rule(data=st.data())
    def cancel_bill(self, data: st.DataObject) -> None:
        self.do_cancel(data.draw(st.sampled_from(self.bills), label="bill"))

    def do_cancel(self, bill: BillModel) -> None:
        expected = expect_error(RuleViolation, "bill_cancelled") if bill.cancelled else OK
        result = self.call(expected, bill_cancel, access=self.admin, bill=bill.bill, reason="Issued in error")
        if expected is OK:
            assert result.cancelled_at is not None
            bill.cancelled = True

    @precondition(lambda self: any(p.ok for p in self.payments))
    @rule(data=st.data(), cancel_first=st.booleans(), pay_again=st.booleans())
    def refund_payment(self, data: st.DataObject, cancel_first: bool, pay_again: bool) -> None:
        """Refund a payment; with ``cancel_first``, the admin cancels its bill just
        before (whether or not it is cancelled already). A payment of a live bill stops
        counting as paid: the member owes the bill again (the invariants check the
        counters, the payments' set and the money); with ``pay_again`` they pay it again
        at once."""
        completed = [payment for payment in self.payments if payment.ok]
        not_refunded = [p for p in completed if not p.refunded]
        payment = self.choose(data, not_refunded, completed)
        bill, member = self.bills[payment.bill], self.members[payment.member]
        if cancel_first:
            self.do_cancel(bill)
        expected = expect_error(RuleViolation, "payment_already_refunded") if payment.refunded else OK
        key = new_key("refund")
        paid = Transaction.objects.get(pk=payment.tx_id)
        label = "refund_cancelled" if bill.cancelled else "refund_live"
        result = self.call(
            expected, bill_payment_refund, label=label, access=self.treasurer, payment=paid, idempotency_key=key
        )
        if expected is OK:
            member.balance += bill.amount
            self.revenue -= bill.amount
            assert (result.type, result.status, result.amount, result.balance_after, result.reverses_id) == (
                TransactionType.REFUND,
                TransactionStatus.COMPLETED,
                bill.amount,
                member.balance,
                paid.pk,
            )
            assert result.reopens_bill is (not bill.cancelled)
            payment.refunded = True
            payment.reopened = not bill.cancelled
            # Replaying the refund's key returns it and moves nothing.
            again = bill_payment_refund(access=self.treasurer, payment=paid, idempotency_key=key)
            assert again.pk == result.pk
            if pay_again:
                self.do_pay(payment.bill, payment.member)
        # The payment itself is never touched.
        paid.refresh_from_db()
        assert (paid.status, paid.amount) == (TransactionStatus.COMPLETED, -bill.amount)

    # --- invariants, after every step ------------------------------------------------

    @invariant()
    def each_balance_is_its_ledger_sum_and_the_models(self) -> None:
        expected = {m.membership.user_id: m.balance for m in self.members}
        wallets = list(Wallet.objects.filter(cluster=self.cluster))
        for wallet in wallets:
            assert wallet.balance >= ZERO
            assert wallet.balance == ledger_balance(wallet)
            assert wallet.balance == expected.get(wallet.user_id, ZERO)

    @invariant()
    def bill_counters_match_the_facts(self) -> None:
        assert counters_drift(Bill.objects.filter(cluster=self.cluster)) == []

    @invariant()
    def money_is_conserved(self) -> None:
        balances = sum(Wallet.objects.filter(cluster=self.cluster).values_list("balance", flat=True), ZERO)
        revenue = cluster_revenue(self.cluster)
        received = cluster_money_received(self.cluster)
        assert balances + revenue == received
        assert (revenue, received) == (self.revenue, self.received)

    @invariant()
    def each_bill_is_paid_at_most_once_per_member(self) -> None:
        completed = Transaction.objects.filter(
            cluster=self.cluster, type=TransactionType.BILL_PAYMENT, status=TransactionStatus.COMPLETED
        )
        live = completed.filter(pk__in=live_payment(OuterRef("bill_id"), OuterRef("payer_id")).values("pk"))
        per_pair = live.values("bill_id", "payer_id").annotate(n=Count("id"))
        assert [row for row in per_pair if row["n"] != 1] == []
        assert set(live.values_list("pk", flat=True)) == {p.tx_id for p in self.payments if p.ok and not p.reopened}
        assert set(completed.values_list("pk", "settlement")) == {
            (p.tx_id, p.settlement) for p in self.payments if p.ok
        }

    @invariant()
    def every_payment_was_acknowledged_by_its_payer(self) -> None:
        unacknowledged = Transaction.objects.filter(
            cluster=self.cluster, type=TransactionType.BILL_PAYMENT, status=TransactionStatus.COMPLETED
        ).exclude(Exists(BillAcknowledgement.objects.filter(bill_id=OuterRef("bill_id"), user_id=OuterRef("payer_id"))))
        assert list(unacknowledged.values_list("pk", flat=True)) == []


# Paths the run must reach, or it proves little. The draws are derandomized, but the
# rows they pick are ordered by random UUIDs, so a path that a run reaches only by
# picking one particular row can drop out: only paths a run reaches many times (or
# through a rule's own flag, like ``again``) are required here. The rarer refusals
# (paying while disputed or before acknowledging) are covered by the service tests.
MUST_REACH = frozenset(
    {
        "wallet_credit: ok",
        "topup_start: ok",
        "bill_acknowledge: ok",
        "bill_acknowledge: NotFoundError",
        "bill_dispute: ok",
        "bill_dispute: dispute_already_open",
        "dispute_resolve: ok",
        "dispute_resolve: dispute_already_resolved",
        "bill_pay: ok",
        "bill_pay: InsufficientFundsError",
        "bill_pay: bill_cancelled",
        "bill_pay: NotFoundError",
        "replay: ok",
        "replay: InsufficientFundsError",
        "bill_cancel: ok",
        "bill_cancel: bill_cancelled",
        "refund_live: ok",
        "pay_again: ok",
        "refund_cancelled: ok",
        "refund_cancelled: payment_already_refunded",
    }
)


@pytest.mark.slow
@pytest.mark.django_db
def test_money_is_conserved(settings: Any, fake_provider_server: FakeProviderServer) -> None:
    # The factories set a password on every user; PBKDF2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    OUTCOMES.clear()
    PROVIDER["fake"] = fake_provider_server.fake
    run_state_machine_as_test(
        MoneyMachine,
        settings=hypothesis.settings(
            max_examples=50,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[hypothesis.HealthCheck.too_slow],
            # No "explain" phase: re-running a failure under coverage tracing costs
            # minutes here and the shrunk steps already say what happened.
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
        ),
    )
    missed = sorted(MUST_REACH - set(OUTCOMES))
    assert missed == [], f"the run never reached {missed}; it reached {sorted(OUTCOMES.items())}"
