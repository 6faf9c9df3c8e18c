"""The permission matrix, from api.md: every management endpoint, estate creation and
listing, and the member endpoints, called by every kind of caller.

- anonymous: 401 ``not_authenticated`` everywhere;
- resident (no permission): 403 ``permission_denied`` on management;
- auditor (``ViewPayments``): management reads, no writes;
- treasurer (``ManageBill``, ``ManageWallet``, ``ManageTransaction``, ``ViewPayments``):
  reads, bills, disputes, wallet credits; not members (no ``ManageMembers``);
- admin: everything in management;
- platform operator (a superuser who is not a member): creates estates and appoints
  members in any estate (``ManageMembers`` only), nothing financial.

Every refused call leaves the database exactly as it was; every read leaves it alone
too; every allowed write answers its 2xx.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from levy.accounts.models import SignInState
from levy.billing.models import Bill, BillDispute, BillSchedule
from levy.billing.payments import bill_pay
from levy.billing.schedules import schedule_create
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute
from levy.common.errors import InsufficientFundsError
from levy.estates.models import MemberImport, Membership
from levy.payments.accounts import provider_account_save
from levy.payments.models import TopUp
from levy.payments.services import topup_start
from levy.wallets.models import Transaction, TransactionStatus
from tests.api.conftest import api_as
from tests.api.test_isolation import ROUTES, db_snapshot
from tests.conftest import Estate, access, make_estate, new_key, schedule_input
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "resident", "auditor", "treasurer", "admin", "operator")
SIGNED_IN = frozenset(ROLES) - {"anonymous"}

# Who holds what: api.md's permission column, and the roles of levy/estates/permissions.py.
VIEW_PAYMENTS = frozenset({"auditor", "treasurer", "admin"})
MANAGE_BILL = frozenset({"treasurer", "admin"})
MANAGE_WALLET = frozenset({"treasurer", "admin"})
MANAGE_MEMBERS = frozenset({"admin", "operator"})
MANAGE_PROVIDERS = frozenset({"admin"})
MANAGE_TRANSACTION = frozenset({"treasurer", "admin"})
PLATFORM_OPERATOR = frozenset({"operator"})
# The member endpoints are for any active member. A bill that does not apply to the
# caller (staff do not live in the estate, so estate-wide bills are not theirs) is
# "missing": 404. The operator is not a member: 404 on every member endpoint.
ANY_MEMBER = frozenset({"resident", "auditor", "treasurer", "admin"})
BILLED_MEMBER = frozenset({"resident"})

PLACEHOLDER = re.compile(r"<[^>]+>|\{[^}]+\}")
FORBIDDEN = (403, "permission_denied")
NOT_FOUND = (404, "not_found")


@dataclass
class World:
    estate: Estate
    bill: Bill  # acknowledged by the resident, who then failed to pay it, then was funded
    fresh_bill: Bill  # nobody has touched it
    dispute: BillDispute  # open, by another resident, on ``bill``
    failed: Transaction  # the resident's failed payment of ``bill``
    deposit: Transaction  # the resident's top-up (it has a receipt)
    operator: Any
    schedule: BillSchedule  # a running monthly schedule
    paused_schedule: BillSchedule
    member_import: MemberImport
    big_bill: Bill  # acknowledged by the resident; more than their wallet holds (pay by card)
    top_up: TopUp  # the resident's pending top-up
    refundable: Transaction  # another resident's payment of a bill cancelled since

    @property
    def resident(self) -> Membership:
        return self.estate.residents[0]

    def caller(self, role: str) -> Any:
        e = self.estate
        return {
            "anonymous": None,
            "resident": self.resident,
            "auditor": e.auditor,
            "treasurer": e.treasurer,
            "admin": e.admin,
            "operator": self.operator,
        }[role]

    def ids(self) -> dict[str, Any]:
        return {
            "cluster": self.estate.cluster.pk,
            "bill": self.bill.pk,
            "fresh_bill": self.fresh_bill.pk,
            "dispute": self.dispute.pk,
            "member": self.estate.residents[2].user_id,
            "member_import": self.member_import.pk,
            "failed": self.failed.pk,
            "big_bill": self.big_bill.pk,
            "top_up": self.top_up.pk,
            "refundable": self.refundable.pk,
            "receipt": self.deposit.pk,
            "schedule": self.schedule.pk,
            "paused_schedule": self.paused_schedule.pk,
        }


def build_world() -> World:
    estate = make_estate(residents=3)
    resident = estate.residents[0]
    bill = estate.wide_bill(title="Service charge", amount=Decimal("15000.00"))
    fresh_bill = estate.wide_bill(title="Security levy", amount=Decimal("5000.00"))
    bill_acknowledge(access=access(resident), bill=bill)
    with pytest.raises(InsufficientFundsError):
        bill_pay(access=access(resident), bill=bill, idempotency_key=new_key("pay"))
    failed = Transaction.objects.get(payer=resident.user, status=TransactionStatus.FAILED)
    deposit = estate.fund(resident, "50000.00")
    dispute = bill_dispute(access=access(estate.residents[1]), bill=bill, reason="I moved out in October")
    # The member whose sign-in an admin may unlock: locked after wrong passwords.
    SignInState.objects.create(
        user=estate.residents[2].user, failures=10, locked_until=timezone.now() + datetime.timedelta(minutes=15)
    )
    operator = UserFactory(is_superuser=True, is_staff=True)
    big_bill = estate.wide_bill(title="Borehole repair", amount=Decimal("80000.00"))
    bill_acknowledge(access=access(resident), bill=big_bill)
    provider_account_save(access=access(estate.admin), provider="paystack", secret_key=new_key("sk"), active=True)
    top_up = topup_start(access=access(resident), amount="1000.00", idempotency_key=new_key("topup"))
    schedules = [
        schedule_create(access=access(estate.admin), data=schedule_input(title=title))
        for title in ("Service charge", "Gate levy")
    ]
    BillSchedule.objects.filter(pk=schedules[1].pk).update(paused_at=timezone.now())
    member_import = MemberImport.objects.create(
        cluster=estate.cluster, created_by=estate.admin.user, status=MemberImport.Status.SUCCEEDED
    )
    payer = estate.residents[1]
    estate.fund(payer, "2000.00")
    water = estate.user_bill(payer, title="Water", amount=Decimal("2000.00"))
    bill_acknowledge(access=access(payer), bill=water)
    refundable = bill_pay(access=access(payer), bill=water, idempotency_key=new_key("pay"))
    bill_cancel(access=access(estate.admin), bill=water, reason="Meter misread")
    return World(
        estate,
        bill,
        fresh_bill,
        dispute,
        failed,
        deposit,
        operator,
        *schedules,
        member_import,
        big_bill,
        top_up,
        refundable,
    )


def _due() -> str:
    return (estate_today() + datetime.timedelta(days=30)).isoformat()


def _csv() -> dict[str, Any]:
    content = b"email,name,role,is_resident\nimported@example.test,Imported Person,resident,true\n"
    return {"file": SimpleUploadedFile("members.csv", content, content_type="text/csv")}


@dataclass(frozen=True)
class Endpoint:
    id: str
    method: str
    path: str  # a template over World.ids()
    allowed: frozenset[str]
    ok: int = 200
    body: dict[str, Any] | Callable[[], dict[str, Any]] | None = None
    multipart: bool = False
    refusal: tuple[int, str] = FORBIDDEN

    def expected(self, role: str) -> tuple[int, str | None]:
        if role == "anonymous":
            return 401, "not_authenticated"
        if role in self.allowed:
            return self.ok, None
        return self.refusal


M = "/api/v1/clusters/{cluster}/management"
C = "/api/v1/clusters/{cluster}"

ENDPOINTS = [
    # management
    Endpoint("members-list", "get", f"{M}/members/", VIEW_PAYMENTS),
    Endpoint(
        "members-add",
        "post",
        f"{M}/members/",
        MANAGE_MEMBERS,
        201,
        {"email": "new.person@example.test", "name": "New Person", "role": "resident"},
    ),
    Endpoint("members-import", "post", f"{M}/members/import/", MANAGE_MEMBERS, 202, _csv, multipart=True),
    Endpoint("members-import-status", "get", f"{M}/members/imports/{{member_import}}/", MANAGE_MEMBERS),
    Endpoint("member-change", "patch", f"{M}/members/{{member}}/", MANAGE_MEMBERS, 200, {"role": "auditor"}),
    Endpoint("member-unlock-sign-in", "post", f"{M}/members/{{member}}/unlock-sign-in/", MANAGE_MEMBERS),
    Endpoint("bills-list", "get", f"{M}/bills/", VIEW_PAYMENTS),
    Endpoint(
        "bills-create",
        "post",
        f"{M}/bills/",
        MANAGE_BILL,
        201,
        lambda: {"title": "Water", "category": "water", "amount": "2500.00", "due_date": _due()},
    ),
    Endpoint("bill-detail", "get", f"{M}/bills/{{bill}}/", VIEW_PAYMENTS),
    Endpoint("bill-edit", "patch", f"{M}/bills/{{fresh_bill}}/", MANAGE_BILL, 200, {"title": "Security levy (Q4)"}),
    Endpoint("bill-cancel", "post", f"{M}/bills/{{bill}}/cancel/", MANAGE_BILL, 200, {"reason": "Issued twice"}),
    Endpoint("bill-members", "get", f"{M}/bills/{{bill}}/members/", VIEW_PAYMENTS),
    Endpoint("dashboard", "get", f"{M}/dashboard/", VIEW_PAYMENTS),
    Endpoint("disputes-list", "get", f"{M}/disputes/", VIEW_PAYMENTS),
    Endpoint(
        "dispute-resolve",
        "post",
        f"{M}/disputes/{{dispute}}/resolve/",
        MANAGE_BILL,
        200,
        {"resolution": "upheld", "note": "Confirmed"},
    ),
    Endpoint("transactions-list", "get", f"{M}/transactions/", VIEW_PAYMENTS),
    Endpoint(
        "wallet-credit",
        "post",
        f"{M}/wallets/{{member}}/credit/",
        MANAGE_WALLET,
        201,
        {"amount": "10000.00", "note": "bank transfer"},
    ),
    Endpoint("payment-providers", "get", f"{M}/payment-providers/", VIEW_PAYMENTS),
    Endpoint(
        "payment-providers-set",
        "put",
        f"{M}/payment-providers/",
        MANAGE_PROVIDERS,
        200,
        {"provider": "flutterwave", "secret_key": "FLWSECK_TEST-perm", "webhook_secret": "hash"},
    ),
    Endpoint("top-ups-list", "get", f"{M}/top-ups/", VIEW_PAYMENTS),
    Endpoint(
        "refund",
        "post",
        f"{M}/transactions/{{refundable}}/refund/",
        MANAGE_TRANSACTION,
        201,
        {"reason": "The bill was issued by mistake"},
    ),
    Endpoint("payment-anomalies", "get", f"{M}/payment-anomalies/", VIEW_PAYMENTS),
    Endpoint("receipt-for-staff", "get", f"{M}/transactions/{{receipt}}/receipt/", VIEW_PAYMENTS),
    Endpoint("statement-pdf-for-staff", "get", f"{M}/members/{{member}}/statement.pdf", VIEW_PAYMENTS),
    Endpoint("statement-csv-for-staff", "get", f"{M}/members/{{member}}/statement.csv", VIEW_PAYMENTS),
    Endpoint("bills-export", "get", f"{M}/bills/export.csv", VIEW_PAYMENTS),
    Endpoint("bill-members-export", "get", f"{M}/bills/{{bill}}/members/export.csv", VIEW_PAYMENTS),
    Endpoint("members-export", "get", f"{M}/members/export.csv", VIEW_PAYMENTS),
    Endpoint("transactions-export", "get", f"{M}/transactions/export.csv", VIEW_PAYMENTS),
    Endpoint("schedules-list", "get", f"{M}/schedules/", VIEW_PAYMENTS),
    Endpoint(
        "schedules-create",
        "post",
        f"{M}/schedules/",
        MANAGE_BILL,
        201,
        lambda: {
            "title": "Water",
            "category": "water",
            "amount": "2500.00",
            "frequency": "quarterly",
            "first_due_date": _due(),
        },
    ),
    Endpoint("schedule-pause", "post", f"{M}/schedules/{{schedule}}/pause/", MANAGE_BILL),
    Endpoint("schedule-resume", "post", f"{M}/schedules/{{paused_schedule}}/resume/", MANAGE_BILL),
    Endpoint("schedule-end", "post", f"{M}/schedules/{{schedule}}/end/", MANAGE_BILL, 200, {"reason": "Replaced"}),
    # estates
    Endpoint("clusters-create", "post", "/api/v1/clusters/", PLATFORM_OPERATOR, 201, {"name": "Palm Court"}),
    Endpoint("clusters-list", "get", "/api/v1/clusters/", SIGNED_IN),
    # members
    Endpoint("my-bills", "get", f"{C}/bills/", ANY_MEMBER, refusal=NOT_FOUND),
    Endpoint("my-bill", "get", f"{C}/bills/{{bill}}/", BILLED_MEMBER, refusal=NOT_FOUND),
    Endpoint("acknowledge", "post", f"{C}/bills/{{fresh_bill}}/acknowledge/", BILLED_MEMBER, 200, refusal=NOT_FOUND),
    Endpoint(
        "dispute",
        "post",
        f"{C}/bills/{{fresh_bill}}/dispute/",
        BILLED_MEMBER,
        201,
        {"reason": "Wrong amount"},
        refusal=NOT_FOUND,
    ),
    Endpoint("pay", "post", f"{C}/bills/{{bill}}/pay/", BILLED_MEMBER, 201, refusal=NOT_FOUND),
    Endpoint("wallet", "get", f"{C}/wallet/", ANY_MEMBER, refusal=NOT_FOUND),
    Endpoint("wallet-transactions", "get", f"{C}/wallet/transactions/", ANY_MEMBER, refusal=NOT_FOUND),
    Endpoint("retry", "post", f"{C}/transactions/{{failed}}/retry/", BILLED_MEMBER, 201, refusal=NOT_FOUND),
    Endpoint("my-top-ups", "get", f"{C}/top-ups/", ANY_MEMBER, refusal=NOT_FOUND),
    Endpoint("top-up", "post", f"{C}/top-ups/", ANY_MEMBER, 201, {"amount": "1000.00"}, refusal=NOT_FOUND),
    Endpoint("my-top-up", "get", f"{C}/top-ups/{{top_up}}/", BILLED_MEMBER, refusal=NOT_FOUND),
    Endpoint("pay-by-card", "post", f"{C}/bills/{{big_bill}}/pay-by-card/", BILLED_MEMBER, 201, refusal=NOT_FOUND),
    # only the payer (the resident) has this receipt
    Endpoint("my-receipt", "get", f"{C}/transactions/{{receipt}}/receipt/", BILLED_MEMBER, refusal=NOT_FOUND),
    Endpoint("my-statement-pdf", "get", f"{C}/wallet/statement.pdf", ANY_MEMBER, refusal=NOT_FOUND),
    Endpoint("my-statement-csv", "get", f"{C}/wallet/statement.csv", ANY_MEMBER, refusal=NOT_FOUND),
]


def call(endpoint: Endpoint, world: World, role: str) -> Any:
    api = api_as(world.caller(role))
    path = endpoint.path.format(**world.ids())
    if endpoint.method == "get":
        return api.client.get(path)
    body = endpoint.body() if callable(endpoint.body) else (endpoint.body or {})
    return getattr(api.client, endpoint.method)(
        path,
        body,
        format="multipart" if endpoint.multipart else "json",
        headers={"Idempotency-Key": new_key("perm")},
    )


def test_the_matrix_covers_every_management_url() -> None:
    """A new management endpoint (route and method) fails here until ENDPOINTS has it."""

    def shape(path: str) -> str:
        return PLACEHOLDER.sub("{}", path.split("/management/", 1)[1])

    routes = {(shape(r.route), m) for r in ROUTES if "/management/" in r.route for m in r.methods}
    covered = {(shape(e.path), e.method) for e in ENDPOINTS if "/management/" in e.path}
    assert routes == covered


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.id)
def test_permission_matrix(endpoint: Endpoint, role: str) -> None:
    world = build_world()
    status, code = endpoint.expected(role)
    before = db_snapshot()
    response = call(endpoint, world, role)
    # Files (receipts, statements) are not JSON; their errors are.
    body = response.json() if response["Content-Type"] == "application/json" else {}
    assert response.status_code == status, (endpoint.id, role, response.status_code, body)
    if code is not None:
        assert body["error"]["code"] == code, body
        assert db_snapshot() == before, f"{endpoint.id} refused for {role} but changed the database"
    elif endpoint.method == "get":
        assert db_snapshot() == before, f"GET {endpoint.id} changed the database"
    else:
        assert db_snapshot() != before, f"{endpoint.id} succeeded for {role} but changed nothing"
