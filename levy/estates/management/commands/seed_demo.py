"""``manage.py seed_demo``: the demo estate, built through the real services.

Creates "Palm Grove Estate" (NGN) with a platform operator, an estate admin, a
treasurer, an auditor and twelve residents; funds the residents' wallets; and issues
bills so that every per-member status appears somewhere: pending, acknowledged,
paid, disputed, waived, overdue and cancelled (with a refunded payment), plus a
failed payment. The service charge carries a late-fee rule; two recurring bills are set
up (a monthly service charge, and one resident's yearly parking bay, paused), neither
due to issue a bill yet. Then it prints the sign-in address and the logins.

Idempotent: if the demo estate already exists, nothing is written and the logins
are printed again. Works on SQLite (the demo's database) and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections import Counter
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from levy.accounts.models import User
from levy.billing.models import Bill, BillCategory, BillDispute, DisputeStatus
from levy.billing.payments import bill_pay, bill_payment_refund
from levy.billing.schedules import ScheduleInput, add_months, schedule_create, schedule_pause
from levy.billing.selectors import bill_member_statuses, estate_today
from levy.billing.services import (
    bill_acknowledge,
    bill_cancel,
    bill_create_cluster_wide,
    bill_create_user_specific,
    bill_dispute,
    dispute_resolve,
)
from levy.billing.status import BillStatus
from levy.billing.validation import BillInput
from levy.common.errors import InsufficientFundsError
from levy.common.origin import Origin
from levy.estates.access import EstateAccess, access_cluster
from levy.estates.models import Cluster, Membership
from levy.estates.permissions import Role
from levy.estates.services import cluster_create
from levy.members.services import member_add
from levy.payments.accounts import provider_account_save
from levy.wallets.models import Transaction
from levy.wallets.services import wallet_credit

ESTATE_NAME = "Palm Grove Estate"
CURRENCY = "NGN"
# Demo data only: one published password for every demo login.
DEMO_PASSWORD = "levy-demo-2026"  # noqa: S105
DEMO_PAYSTACK_SECRET_KEY = "sk_test_palmgrove_demo_0000000000000000"  # noqa: S105 - the local fake's only
ORIGIN = Origin(ip="127.0.0.1", user_agent="seed_demo")
DEFAULT_ADDR = "127.0.0.1:8000"

OPERATOR_EMAIL = "operator@levy.test"
OPERATOR_NAME = "Platform Operator"
ADMIN_EMAIL = "admin@palmgrove.test"
TREASURER_EMAIL = "treasurer@palmgrove.test"
AUDITOR_EMAIL = "auditor@palmgrove.test"
STAFF = (
    (ADMIN_EMAIL, "Ngozi Adeyemi", Role.ADMIN),
    (TREASURER_EMAIL, "Tunde Bakare", Role.TREASURER),
    (AUDITOR_EMAIL, "Kemi Oladipo", Role.AUDITOR),
)
RESIDENT_NAMES = (
    "Adaeze Okafor",
    "Chinedu Eze",
    "Funmilayo Balogun",
    "Ibrahim Musa",
    "Yetunde Afolabi",
    "Emeka Nwosu",
    "Halima Bello",
    "Olumide Adebayo",
    "Chiamaka Obi",
    "Segun Ogunleye",
    "Zainab Abubakar",
    "Uche Okonkwo",
)
OPENING_BALANCE = Decimal("60000.00")
# Chiamaka (resident 8) is funded below the service charge: her payment fails.
SMALL_OPENING_BALANCE = Decimal("10000.00")

ROLE_ORDER: dict[str, int] = {Role.ADMIN: 0, Role.TREASURER: 1, Role.AUDITOR: 2, Role.RESIDENT: 3}


def resident_email(name: str) -> str:
    return f"{name.lower().replace(' ', '.')}@palmgrove.test"


class DemoEstate:
    """Writes the demo estate; every write goes through a service, with one
    documented exception (the overdue bill's due date)."""

    def __init__(self, operator: User):
        self.operator = operator
        self.cluster: Cluster | None = None
        self.members: dict[str, Membership] = {}

    # --- helpers ----------------------------------------------------------------------

    def access(self, email: str) -> EstateAccess:
        assert self.cluster is not None
        return access_cluster(self.members[email].user, self.cluster.pk)

    def key(self, *parts: str) -> str:
        return ":".join(("seed-demo", *parts))

    def bill_input(
        self,
        *,
        title: str,
        category: str,
        amount: str,
        due_in_days: int,
        description: str = "",
        allow_payment_after_due: bool = False,
        **late_fee: Any,
    ) -> BillInput:
        return BillInput(
            title=title,
            description=description,
            category=category,
            amount=Decimal(amount),
            due_date=estate_today() + datetime.timedelta(days=due_in_days),
            allow_payment_after_due=allow_payment_after_due,
            **late_fee,
        )

    def acknowledge(self, member: Membership, bill: Bill) -> None:
        bill_acknowledge(access=self.access(member.user.email), bill=bill, origin=ORIGIN)

    def pay(self, member: Membership, bill: Bill) -> Transaction:
        return bill_pay(
            access=self.access(member.user.email),
            bill=bill,
            idempotency_key=self.key("pay", bill.reference, member.user.email),
            origin=ORIGIN,
        )

    def dispute(self, member: Membership, bill: Bill, reason: str) -> BillDispute:
        return bill_dispute(access=self.access(member.user.email), bill=bill, reason=reason, origin=ORIGIN)

    def resolve(self, dispute: BillDispute, resolution: str, note: str) -> None:
        dispute_resolve(
            access=self.access(TREASURER_EMAIL), dispute=dispute, resolution=resolution, note=note, origin=ORIGIN
        )

    # --- the estate -------------------------------------------------------------------

    def create(self) -> Cluster:
        self.cluster = cluster_create(operator=self.operator, name=ESTATE_NAME, currency=CURRENCY, origin=ORIGIN)
        # The operator appoints the estate's people, as product.md describes.
        as_operator = access_cluster(self.operator, self.cluster.pk)
        people = [*STAFF, *((resident_email(name), name, Role.RESIDENT) for name in RESIDENT_NAMES)]
        for email, name, role in people:
            self.members[email] = member_add(
                access=as_operator, email=email, name=name, role=role, password=DEMO_PASSWORD, origin=ORIGIN
            )
        residents = [self.members[resident_email(name)] for name in RESIDENT_NAMES]
        self.fund(residents)
        self.bills(residents)
        self.schedules(residents)
        # Residents top up by card through the estate's Paystack account: the demo runs a
        # local fake of Paystack (manage.py fake_provider) that knows this test key.
        provider_account_save(
            access=self.access(ADMIN_EMAIL),
            provider="paystack",
            secret_key=DEMO_PAYSTACK_SECRET_KEY,
            public_key="pk_test_palmgrove_demo",
            active=True,
            origin=ORIGIN,
        )
        return self.cluster

    def fund(self, residents: list[Membership]) -> None:
        treasurer = self.access(TREASURER_EMAIL)
        for index, member in enumerate(residents):
            wallet_credit(
                access=treasurer,
                membership=member,
                amount=SMALL_OPENING_BALANCE if index == 8 else OPENING_BALANCE,
                note="Cash received at the estate office",
                idempotency_key=self.key("opening-balance", member.user.email),
                origin=ORIGIN,
            )

    def bills(self, r: list[Membership]) -> None:
        admin = self.access(ADMIN_EMAIL)
        today = estate_today()

        # Overdue. The services refuse a due date in the past, so the bill is issued
        # due next week and its due date is then moved into the past with a direct
        # UPDATE, before anyone has acknowledged it (its terms are not yet frozen).
        # Demo data only: nothing in Levy ever rewrites a due date this way.
        security = bill_create_cluster_wide(
            access=admin,
            data=self.bill_input(
                title=f"Security levy (Q{(today.month - 1) // 3 + 1} {today.year})",
                description="Guards and patrols for the quarter. Late payment is accepted.",
                category=BillCategory.SECURITY,
                amount="7500.00",
                due_in_days=7,
                allow_payment_after_due=True,
            ),
            origin=ORIGIN,
        )
        Bill.objects.filter(pk=security.pk).update(due_date=today - datetime.timedelta(days=10))
        security.refresh_from_db()
        self.acknowledge(r[0], security)
        self.pay(r[0], security)  # paid late, which this bill allows
        self.acknowledge(r[2], security)  # acknowledged but unpaid past the due date: overdue

        # Service charge: one estate-wide bill, a different status for each resident.
        service = bill_create_cluster_wide(
            access=admin,
            data=self.bill_input(
                title=f"Service charge ({today:%B %Y})",
                description="Monthly service charge: cleaning, landscaping, common-area power.",
                category=BillCategory.SERVICE_CHARGE,
                amount="25000.00",
                due_in_days=21,
                late_fee_kind="percent",
                late_fee_value="2.5",
                late_fee_grace_days=7,
            ),
            origin=ORIGIN,
        )
        for member in (r[0], r[1]):  # paid
            self.acknowledge(member, service)
            self.pay(member, service)
        self.acknowledge(r[2], service)  # acknowledged
        self.dispute(r[3], service, "I was travelling for the whole month; please review.")  # disputed (open)
        upheld = self.dispute(r[4], service, "My flat was vacant and sealed this month.")
        self.resolve(upheld, DisputeStatus.UPHELD, "Confirmed vacant by the facility manager: waived.")  # waived
        rejected = self.dispute(r[5], service, "The charge is higher than last year.")
        self.resolve(rejected, DisputeStatus.REJECTED, "The increase was approved at the AGM.")
        self.acknowledge(r[5], service)  # owes it as before: acknowledged
        self.acknowledge(r[8], service)
        with contextlib.suppress(InsufficientFundsError):
            self.pay(r[8], service)  # wallet too small: a failed payment stays on the ledger
        # Everyone else: pending.

        # Cancelled, with a payment refunded by a reversing ledger entry.
        diesel = bill_create_cluster_wide(
            access=admin,
            data=self.bill_input(
                title="Generator diesel top-up",
                description="Emergency diesel purchase for the estate generator.",
                category=BillCategory.ELECTRICITY,
                amount="5000.00",
                due_in_days=10,
            ),
            origin=ORIGIN,
        )
        self.acknowledge(r[1], diesel)
        payment = self.pay(r[1], diesel)
        self.acknowledge(r[9], diesel)
        diesel = bill_cancel(
            access=admin, bill=diesel, reason="The grid supply was restored; the levy is withdrawn.", origin=ORIGIN
        )
        bill_payment_refund(
            access=self.access(TREASURER_EMAIL),
            payment=payment,
            idempotency_key=self.key("refund", diesel.reference, r[1].user.email),
            note="Generator diesel levy cancelled",
            origin=ORIGIN,
        )

        # User-specific bills: one pending, one paid.
        bill_create_user_specific(
            access=admin,
            user_id=r[6].user_id,
            data=self.bill_input(
                title="Water meter replacement",
                description="Replacement of the damaged meter at your unit.",
                category=BillCategory.WATER,
                amount="18000.00",
                due_in_days=14,
            ),
            origin=ORIGIN,
        )
        remote = bill_create_user_specific(
            access=admin,
            user_id=r[7].user_id,
            data=self.bill_input(
                title="Replacement gate remote",
                category=BillCategory.OTHER,
                amount="6500.00",
                due_in_days=14,
            ),
            origin=ORIGIN,
        )
        self.acknowledge(r[7], remote)
        self.pay(r[7], remote)

    def schedules(self, r: list[Membership]) -> None:
        """Recurring bills whose first bills are weeks away: the demo issues none."""
        admin = self.access(ADMIN_EMAIL)
        today = estate_today()
        schedule_create(
            access=admin,
            data=ScheduleInput(
                title="Service charge",
                description="Monthly service charge: cleaning, landscaping, common-area power.",
                category=BillCategory.SERVICE_CHARGE,
                amount=Decimal("25000.00"),
                allow_payment_after_due=False,
                frequency="monthly",
                first_due_date=add_months(today.replace(day=1), 2),  # the 1st of the month after next
                issue_days_before=14,
            ),
            origin=ORIGIN,
        )
        parking = schedule_create(
            access=admin,
            data=ScheduleInput(
                title="Parking bay rental",
                description="Covered bay 4 by the gatehouse.",
                category=BillCategory.OTHER,
                amount=Decimal("30000.00"),
                allow_payment_after_due=True,
                frequency="yearly",
                first_due_date=today + datetime.timedelta(days=90),
                issue_days_before=30,
            ),
            user_id=r[6].user_id,
            origin=ORIGIN,
        )
        schedule_pause(access=admin, schedule=parking, origin=ORIGIN)


class Command(BaseCommand):
    help = "Create the demo estate (idempotent) and print the demo logins."

    def handle(self, *args: Any, **options: Any) -> None:
        cluster = Cluster.objects.filter(name=ESTATE_NAME).order_by("created_at").first()
        if cluster is None:
            with transaction.atomic():
                cluster = DemoEstate(self.operator()).create()
            self.stdout.write(self.style.SUCCESS(f"Created the demo estate {ESTATE_NAME} ({cluster.currency})."))
        else:
            self.stdout.write(f"The demo estate {ESTATE_NAME} already exists: nothing changed.")
        self.report(cluster)

    def operator(self) -> User:
        operator = User.objects.filter(email__iexact=OPERATOR_EMAIL).first()
        if operator is None:
            return User.objects.create_superuser(OPERATOR_EMAIL, DEMO_PASSWORD, name=OPERATOR_NAME)
        if not operator.is_superuser:
            raise CommandError(f"{OPERATOR_EMAIL} exists but is not a superuser; the demo needs it as the operator.")
        return operator

    # --- what to print ----------------------------------------------------------------

    def report(self, cluster: Cluster) -> None:
        addr = os.environ.get("LEVY_DEMO_ADDR", DEFAULT_ADDR)
        write = self.stdout.write
        write("")
        write(f"Every demo login uses the password: {DEMO_PASSWORD}")
        write("The estate's staff and residents sign in to the pages; the platform operator also to the")
        write(f"Django admin at http://{addr}/admin/. Apps use the API (POST /api/v1/auth/token/).")
        write("")
        write(self.table(["email", "name", "role", "lives in estate", "Django admin"], self.login_rows(cluster)))
        write("")
        write("Bills, with each member's status:")
        write(self.table(["reference", "title", "scope", "amount", "due", "statuses"], self.bill_rows(cluster)))

    def login_rows(self, cluster: Cluster) -> list[list[str]]:
        rows = []
        operator = User.objects.filter(email__iexact=OPERATOR_EMAIL).first()
        if operator is not None:
            rows.append([operator.email, operator.name, "platform operator", "-", "yes"])
        memberships = sorted(
            Membership.objects.filter(cluster=cluster, active=True).select_related("user"),
            key=lambda m: (ROLE_ORDER.get(m.role, 9), m.user.email),
        )
        for m in memberships:
            rows.append(
                [
                    m.user.email,
                    m.user.name,
                    Role(m.role).label,
                    "yes" if m.is_resident else "no",
                    "yes" if m.user.is_staff else "no",
                ]
            )
        return rows

    def bill_rows(self, cluster: Cluster) -> list[list[str]]:
        rows = []
        order = list(BillStatus)
        for bill in Bill.objects.filter(cluster=cluster).select_related("cluster", "user").order_by("reference"):
            members: Any = bill_member_statuses(bill=bill)  # annotated with each member's status
            counts = Counter(BillStatus(member.status) for member in members)
            statuses = ", ".join(f"{status.value} {counts[status]}" for status in order if counts[status])
            rows.append(
                [
                    bill.reference,
                    bill.title,
                    bill.user.email if bill.user is not None else "estate-wide",
                    f"{cluster.currency} {bill.amount:,.2f}",
                    bill.due_date.isoformat(),
                    statuses,
                ]
            )
        return rows

    @staticmethod
    def table(header: list[str], rows: list[list[str]]) -> str:
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]
        ]
        lines.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join("  " + line.rstrip() for line in lines)
