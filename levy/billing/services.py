"""Writes for billing: this module is the plan's bill manager (engineering.md).

Each service checks the caller's permission, runs in one transaction, records an
audit event and stores the notifications the event calls for, all in that same
transaction: either everything happens or nothing does. A bill's input is checked by
``levy.billing.validation``; a new bill is issued by ``levy.billing.issuing.bill_issue``,
which the schedules call too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from levy.audit.services import audit_record
from levy.billing import locks, rules
from levy.billing.counters import counter_add, recount
from levy.billing.issuing import bill_issue, require_billable_member
from levy.billing.late_fees import late_fee_for_member, late_fee_run_wait, late_fee_waive, late_fees_cancel
from levy.billing.models import Bill, BillAcknowledgement, BillDispute, DisputeStatus
from levy.billing.selectors import bill_audience
from levy.billing.status import BillStatus, derive_status
from levy.billing.validation import MAX_TEXT, BillInput, bill_values, clean_text, late_fee_values
from levy.common.db import insert_unless_exists
from levy.common.errors import RuleViolation, ValidationError
from levy.common.origin import Origin
from levy.estates.access import EstateAccess
from levy.estates.models import Membership
from levy.estates.permissions import PaymentsPermissions
from levy.notifications.events import NotificationEvents
from levy.notifications.recipients import Recipients
from levy.notifications.services import bill_context, notify
from levy.wallets.models import Transaction, TransactionStatus, TransactionType

TERM_FIELDS = ("amount", "due_date", "user_id", "allow_payment_after_due")


# --- creation ---------------------------------------------------------------------------


def _bill_create(*, access: EstateAccess, data: BillInput, user_id: Any, origin: Origin) -> Bill:
    access.require(PaymentsPermissions.ManageBill)
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for validate in (bill_values, late_fee_values):
        try:
            values.update(validate(data, currency=access.cluster.currency))
        except ValidationError as exc:
            errors.update(exc.fields)
    if errors:
        raise ValidationError(fields=errors)
    with transaction.atomic():
        return bill_issue(
            cluster=access.cluster,
            created_by_id=access.user.pk,
            actor=access.user,
            values=values,
            user_id=user_id,
            origin=origin,
        )


def bill_create_cluster_wide(*, access: EstateAccess, data: BillInput, origin: Origin = Origin()) -> Bill:
    """One bill row for the whole estate, owed in full by each resident member."""
    return _bill_create(access=access, data=data, user_id=None, origin=origin)


def bill_create_user_specific(
    *, access: EstateAccess, user_id: Any, data: BillInput, origin: Origin = Origin()
) -> Bill:
    """A bill for one active resident member of the estate."""
    if user_id is None:
        raise ValidationError(fields={"user_id": ["This field is required."]})
    return _bill_create(access=access, data=data, user_id=user_id, origin=origin)


# --- acknowledgement --------------------------------------------------------------------


def bill_acknowledge(
    *, access: EstateAccess, bill: Bill, origin: Origin = Origin()
) -> tuple[BillAcknowledgement, bool]:
    """Record that the caller acknowledges ``bill``. A repeat returns the first
    acknowledgement and changes nothing. Returns (acknowledgement, created)."""
    ack, created, _ = bill_acknowledge_with_status(access=access, bill=bill, origin=origin)
    return ack, created


def bill_acknowledge_with_status(
    *, access: EstateAccess, bill: Bill, origin: Origin = Origin()
) -> tuple[BillAcknowledgement, bool, BillStatus]:
    """:func:`bill_acknowledge`, and the caller's status of the bill afterwards (from
    the facts the acknowledgement read under its locks, not a second read)."""
    membership = access.require_member()
    with transaction.atomic():
        locks.share_bill_and_membership(bill, membership)
        bill.cluster = access.cluster
        read = rules.read_member_facts(bill=bill, user=access.user)
        refusal = rules.acknowledge_refusal(bill, read)
        if refusal is not None:
            raise refusal
        facts = replace(read, acknowledged=True).on(bill)
        ack = BillAcknowledgement(
            bill=bill, user_id=membership.user_id, ip_address=origin.ip, user_agent=origin.user_agent[:1000]
        )
        created = not read.acknowledged and insert_unless_exists(ack, "bill", "user")
        if not created:
            return (
                BillAcknowledgement.objects.get(bill=bill, user_id=membership.user_id),
                False,
                derive_status(facts),
            )
        counter_add(bill_id=bill.pk, user_id=membership.user_id, acknowledged=1)
        audit_record(action="bill.acknowledge", target=bill, actor=access.user, cluster=access.cluster, origin=origin)
        notify(
            event=NotificationEvents.BILL_ACKNOWLEDGED,
            cluster=access.cluster,
            recipients=Recipients.permission_holders(PaymentsPermissions.ManageBill),
            context={
                **bill_context(bill),
                "member_id": str(membership.user_id),
                "member_name": access.user.get_full_name(),
            },
            event_key=f"BILL_ACKNOWLEDGED:bill:{bill.pk}:member:{membership.user_id}",
        )
    return ack, True, derive_status(facts)


# --- disputes ---------------------------------------------------------------------------


def bill_dispute(*, access: EstateAccess, bill: Bill, reason: str, origin: Origin = Origin()) -> BillDispute:
    """The caller disputes ``bill``. While the dispute is open they cannot pay it."""
    membership = access.require_member()
    errors: dict[str, list[str]] = {}
    reason = clean_text(reason, "reason", required=True, max_length=MAX_TEXT, errors=errors)
    if errors:
        raise ValidationError(fields=errors)
    with transaction.atomic():
        # The member's wallet row is the per-member lock shared with payments, so a
        # dispute and a payment of the same bill cannot both pass their checks.
        locks.lock_member_action(bill, membership, cluster=access.cluster, user=access.user)
        refusal = rules.dispute_refusal(bill, rules.read_member_facts(bill=bill, user=access.user))
        if refusal is not None:
            raise refusal
        try:
            with transaction.atomic():
                dispute = BillDispute.objects.create(
                    cluster=access.cluster, bill=bill, user_id=membership.user_id, reason=reason
                )
        except IntegrityError:
            raise RuleViolation("You already have an open dispute on this bill.", code="dispute_already_open") from None
        counter_add(bill_id=bill.pk, user_id=membership.user_id, disputed=1)
        audit_record(
            action="bill.dispute",
            target=dispute,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={"bill_id": str(bill.pk), "reason": reason},
        )
        notify(
            event=NotificationEvents.BILL_DISPUTED,
            cluster=access.cluster,
            recipients=Recipients.permission_holders(PaymentsPermissions.ManageBill),
            context={
                **bill_context(bill),
                "dispute_id": str(dispute.pk),
                "member_id": str(membership.user_id),
                "member_name": access.user.get_full_name(),
                "reason": reason,
            },
            event_key=f"BILL_DISPUTED:dispute:{dispute.pk}",
        )
    return dispute


def dispute_resolve(
    *, access: EstateAccess, dispute: BillDispute, resolution: str, note: str, origin: Origin = Origin()
) -> BillDispute:
    """Uphold (the bill is waived for that member) or reject (they owe it as before)."""
    access.require(PaymentsPermissions.ManageBill)
    errors: dict[str, list[str]] = {}
    if resolution not in (DisputeStatus.UPHELD, DisputeStatus.REJECTED):
        errors["resolution"] = ["Choose upheld or rejected."]
    note = clean_text(note, "note", required=True, max_length=MAX_TEXT, errors=errors)
    if errors:
        raise ValidationError(fields=errors)
    with transaction.atomic():
        late_fee_run_wait(dispute.bill)
        locked = locks.lock_dispute(dispute_id=dispute.pk, cluster_id=access.cluster.pk)
        if locked.status != DisputeStatus.OPEN:
            raise RuleViolation("This dispute has already been resolved.", code="dispute_already_resolved")
        locks.share_bill(locked.bill_id)
        member = Membership.objects.filter(cluster_id=access.cluster.pk, user_id=locked.user_id).first()
        if member is not None:
            locks.share_membership(member.pk)
        locked.status = resolution
        locked.resolved_at = timezone.now()
        locked.resolved_by = access.user
        locked.resolution_note = note
        locked.save(update_fields=["status", "resolved_at", "resolved_by", "resolution_note"])
        bill = Bill.objects.select_related("cluster").get(pk=locked.bill_id)
        # Counted only while the member is in the bill's audience (they may have left).
        if bill_audience(bill).filter(user_id=locked.user_id).exists():
            upheld = int(resolution == DisputeStatus.UPHELD)
            counter_add(bill_id=bill.pk, user_id=locked.user_id, disputed=-1, waived=upheld)
        if bill.late_fees_issued_at is not None:
            # The bill's late fees were issued meanwhile: the member's follows the outcome.
            if resolution == DisputeStatus.UPHELD:
                late_fee_waive(bill=bill, user_id=locked.user_id, resolver=access.user, note=note)
            else:
                late_fee_for_member(bill=bill, user_id=locked.user_id)
        audit_record(
            action="dispute.resolve",
            target=locked,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={"resolution": resolution, "note": note, "bill_id": str(bill.pk)},
        )
        notify(
            event=NotificationEvents.DISPUTE_RESOLVED,
            cluster=access.cluster,
            recipients=Recipients.users(locked.user_id),
            context={**bill_context(bill), "dispute_id": str(locked.pk), "resolution": resolution, "note": note},
            event_key=f"DISPUTE_RESOLVED:dispute:{locked.pk}",
        )
    return locked


# --- cancellation and edits -------------------------------------------------------------


def bill_cancel(*, access: EstateAccess, bill: Bill, reason: str, origin: Origin = Origin()) -> Bill:
    """Cancel ``bill``: it can no longer be acknowledged, disputed or paid. Payments
    already made stay on the ledger (see ``bill_payment_refund``)."""
    access.require(PaymentsPermissions.ManageBill)
    errors: dict[str, list[str]] = {}
    reason = clean_text(reason, "reason", required=True, max_length=MAX_TEXT, errors=errors)
    if errors:
        raise ValidationError(fields=errors)
    with transaction.atomic():
        late_fee_run_wait(bill)
        locked = locks.lock_bill(bill_id=bill.pk, cluster_id=access.cluster.pk)
        if locked.cancelled_at is not None:
            raise RuleViolation("This bill has already been cancelled.", code="bill_cancelled")
        locked.cancelled_at = timezone.now()
        locked.cancelled_by = access.user
        locked.cancellation_reason = reason
        locked.save(update_fields=["cancelled_at", "cancelled_by", "cancellation_reason", "updated_at"])
        locked.cluster = access.cluster
        if locked.late_fees_issued_at is not None:
            late_fees_cancel(bill=locked, by=access.user, reason=reason)
        audit_record(
            action="bill.cancel",
            target=locked,
            actor=access.user,
            cluster=access.cluster,
            origin=origin,
            data={"reason": reason},
        )
        notify(
            event=NotificationEvents.BILL_CANCELLED,
            cluster=access.cluster,
            recipients=Recipients.bill_unpaid(locked),
            context={**bill_context(locked), "reason": reason},
            event_key=f"BILL_CANCELLED:bill:{locked.pk}",
        )
    return locked


def bill_terms_locked(bill: Bill) -> bool:
    """Terms freeze at the first acknowledgement or payment."""
    return (
        BillAcknowledgement.objects.filter(bill_id=bill.pk).exists()
        or Transaction.objects.filter(bill_id=bill.pk, type=TransactionType.BILL_PAYMENT)
        .exclude(status=TransactionStatus.FAILED)
        .exists()
    )


UPDATABLE_FIELDS = frozenset({"title", "description", "category", *TERM_FIELDS})


def bill_update(*, access: EstateAccess, bill: Bill, changes: dict[str, Any], origin: Origin = Origin()) -> Bill:
    """Edit a bill. Title, description and category may always change; its terms
    (amount, due date, target, payment-after-due rule) only until someone has
    acknowledged or paid it — after that, cancel it and issue a new one."""
    access.require(PaymentsPermissions.ManageBill)
    unknown = set(changes) - UPDATABLE_FIELDS
    if unknown:
        raise ValidationError(fields={name: ["This field cannot be changed."] for name in sorted(unknown)})
    with transaction.atomic():
        locked = locks.lock_bill(bill_id=bill.pk, cluster_id=access.cluster.pk)
        if locked.cancelled_at is not None:
            raise RuleViolation("A cancelled bill cannot be edited.", code="bill_cancelled")
        current = BillInput(
            title=changes.get("title", locked.title),
            description=changes.get("description", locked.description),
            category=changes.get("category", locked.category),
            amount=changes.get("amount", locked.amount),
            due_date=changes.get("due_date", locked.due_date),
            allow_payment_after_due=changes.get("allow_payment_after_due", locked.allow_payment_after_due),
        )
        # An unchanged due date that has since passed is not an error.
        values = bill_values(
            current,
            currency=access.cluster.currency,
            due_date_must_be_future=current.due_date != locked.due_date,
        )
        new_user_id = changes.get("user_id", locked.user_id)
        values["user_id"] = new_user_id
        diff = {name: value for name, value in values.items() if getattr(locked, name) != value}
        if "user_id" in diff and new_user_id is not None:
            require_billable_member(access.cluster, new_user_id)
        if set(diff) & set(TERM_FIELDS) and bill_terms_locked(locked):
            raise RuleViolation(
                "This bill's terms are locked: it has been acknowledged or paid. Cancel it and issue a new one.",
                code="bill_terms_locked",
            )
        if diff:
            before = {name: getattr(locked, name) for name in diff}
            for name, value in diff.items():
                setattr(locked, name, value)
            locked.save()
            if "user_id" in diff:  # a different audience: count it afresh
                recount(Bill.objects.filter(pk=locked.pk))
            audit_record(
                action="bill.update",
                target=locked,
                actor=access.user,
                cluster=access.cluster,
                origin=origin,
                data={"before": _jsonable(before), "after": _jsonable(diff)},
            )
    locked.cluster = access.cluster
    return locked


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if v is not None and not isinstance(v, (bool, int, str)) else v) for k, v in values.items()}
