"""Bad input (targets.md): schemathesis against the app's own OpenAPI schema.

Every operation in ``/api/schema/`` gets a bounded, derandomized run of generated
requests, sent in-process to the WSGI application. The caller is the admin of an
estate with bills in every state, members, open and resolved disputes, notifications
and ledger entries (a failed payment among them). Generated identifiers are swapped
for real ones most of the time, so requests get past the 404 and reach the handlers.
No response may be a 5xx, and every response must match the schema: status code,
content type, headers and body.

The data is committed (``transaction=True``), as in production. A request that hits
a database error then fails only itself, and does not break the requests after it,
which can happen inside a test transaction.

The tests after the fuzz run send request sequences that stateless generation does not
reach.
"""

from __future__ import annotations

import contextlib
import datetime
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.test import override_settings
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from levy.accounts.models import User
from levy.billing.models import BillDispute, DisputeStatus
from levy.billing.payments import bill_pay
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_cancel, bill_dispute, dispute_resolve
from levy.common.errors import InsufficientFundsError
from levy.notifications.models import Notification
from levy.wallets.models import Transaction, Wallet
from tests.conftest import Estate, access, make_estate, new_key

pytestmark = pytest.mark.django_db(transaction=True)

schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Bounded and reproducible: 15 generated cases per operation (plus schemathesis's
# deterministic coverage cases), the same ones on every run.
FUZZ = settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class World:
    """The estate under test, the caller's token and the real identifiers per path parameter."""

    estate: Estate
    token: str
    ids: dict[str, list[str]] = field(default_factory=dict)


def _pks(queryset: Any) -> list[str]:
    return [str(pk) for pk in queryset.values_list("pk", flat=True)]


def build_world() -> World:
    estate = make_estate(residents=3)
    admin = estate.admin
    # The admin also lives in the estate, so the resident endpoints find bills for them.
    admin.is_resident = True
    admin.save(update_fields=["is_resident"])
    r0, r1, r2 = estate.residents
    as_admin = access(admin)
    estate.fund(admin, "20000.00")
    for member in (r0, r1, r2):
        estate.fund(member, "50000.00")

    paid = estate.wide_bill(title="Security levy", category="security", amount=Decimal("5000.00"))
    for member in (admin, r0):
        bill_acknowledge(access=access(member), bill=paid)
        bill_pay(access=access(member), bill=paid, idempotency_key=new_key("pay"))

    service = estate.wide_bill(title="Service charge", amount=Decimal("15000.00"))
    bill_acknowledge(access=as_admin, bill=service)
    bill_acknowledge(access=access(r1), bill=service)
    bill_dispute(access=access(r2), bill=service, reason="Vacant all month.")

    water = estate.wide_bill(title="Water", category="water", amount=Decimal("3000.00"))
    bill_dispute(access=as_admin, bill=water, reason="The meter was not read.")
    rejected = bill_dispute(access=access(r0), bill=water, reason="Too high.")
    dispute_resolve(access=as_admin, dispute=rejected, resolution=DisputeStatus.REJECTED, note="Approved at the AGM.")
    upheld = bill_dispute(access=access(r1), bill=water, reason="Away all month.")
    dispute_resolve(access=as_admin, dispute=upheld, resolution=DisputeStatus.UPHELD, note="Waived.")

    diesel = estate.wide_bill(title="Diesel", category="electricity", amount=Decimal("2000.00"))
    bill_acknowledge(access=as_admin, bill=diesel)
    bill_cancel(access=as_admin, bill=diesel, reason="Grid supply restored.")

    estate.user_bill(r0, title="Gate remote", category="other", amount=Decimal("6500.00"))
    # More than the admin's wallet holds: the payment fails and stays on the ledger,
    # so the retry endpoint has something to retry.
    meter = estate.user_bill(
        admin,
        title="Meter replacement",
        category="water",
        amount=Decimal("90000.00"),
        due_date=estate_today() + datetime.timedelta(days=30),
    )
    bill_acknowledge(access=as_admin, bill=meter)
    with contextlib.suppress(InsufficientFundsError):
        bill_pay(access=as_admin, bill=meter, idempotency_key=new_key("pay"))

    cluster = estate.cluster
    members = [admin, estate.treasurer, estate.auditor, r0, r1, r2]
    return World(
        estate=estate,
        token=token_for(admin.user),
        ids={
            "cluster_id": [str(cluster.pk)],
            "bill_id": _pks(cluster.bills.order_by("created_at")),
            "dispute_id": _pks(BillDispute.objects.filter(cluster=cluster).order_by("created_at")),
            "user_id": [str(m.user_id) for m in members],
            # The failed payment first: it is the one a retry can act on.
            "transaction_id": _pks(
                Transaction.objects.filter(cluster=cluster, payer=admin.user).order_by("status", "created_at")
            ),
            "notification_id": _pks(Notification.objects.filter(recipient=admin.user).order_by("created_at")),
        },
    )


def token_for(user: User) -> str:
    return str(RefreshToken.for_user(user).access_token)


@pytest.fixture
def world(db: None) -> Iterator[World]:
    with override_settings(LEVY_RATE_LIMITS_ENABLED=False):
        yield build_world()


def use_real_ids(case: Any, world: World) -> None:
    """Swap generated path identifiers for real ones, most of the time.

    The choice is derived from the generated value, so a run stays as reproducible
    as the generation itself and shrinking still works. The estate is kept nine times
    in ten, another object three times in four; the rest stay generated (404s).
    """
    for name, value in list((case.path_parameters or {}).items()):
        real = world.ids.get(name)
        if not real:
            continue
        pick = zlib.crc32(repr(value).encode())
        keep_generated = pick % 10 == 0 if name == "cluster_id" else pick % 4 == 0
        if not keep_generated:
            case.path_parameters[name] = real[pick % len(real)]


def use_plausible_bodies(case: Any, world: World) -> None:
    """Make half of the generated bill and credit bodies pass the rules the schema
    cannot state, so the 201 paths run too: a due date after today, an amount above
    zero (the schema's decimal pattern also admits "", "-" and "."), and a user_id of
    a member. The choice is derived from the generated values, like the ids above.
    """
    body = case.body
    if not isinstance(body, dict) or zlib.crc32(repr(sorted(body.items(), key=str)).encode()) % 2:
        return
    due = body.get("due_date")
    if isinstance(due, str):
        with contextlib.suppress(ValueError):
            day = datetime.date.fromisoformat(due)
            if day <= estate_today():
                body["due_date"] = (estate_today() + datetime.timedelta(days=1 + day.toordinal() % 365)).isoformat()
    amount = body.get("amount")
    if isinstance(amount, str):
        try:
            valid = Decimal(amount) > 0
        except ArithmeticError:
            valid = False
        if not valid:
            body["amount"] = f"{1 + zlib.crc32(amount.encode()) % 100_000}.00"
    user_id = body.get("user_id")
    members = world.ids.get("user_id")
    if isinstance(user_id, str) and members:
        body["user_id"] = members[zlib.crc32(user_id.encode()) % len(members)]


def fuzz(case: Any, world: World, checks: list[Any] = CHECKS) -> None:
    use_real_ids(case, world)
    use_plausible_bodies(case, world)
    case.call_and_validate(headers={"Authorization": f"Bearer {world.token}"}, checks=checks)


@schema.parametrize()
@FUZZ
def test_api_conforms_to_its_schema(case: Any, world: World) -> None:
    fuzz(case, world)


# --- sequences the stateless fuzzer does not reach ---------------------------------------

MAX_AMOUNT = "999999999999.99"  # the largest amount the API accepts (levy.common.money.MAX_AMOUNT)
BILLS = "/api/v1/clusters/{cluster_id}/management/bills/"
CREDIT = "/api/v1/clusters/{cluster_id}/management/wallets/{user_id}/credit/"
DASHBOARD = "/api/v1/clusters/{cluster_id}/management/dashboard/"


def call(world: World, method: str, path: str, *, token: str | None = None, checked: bool = True, **parts: Any) -> Any:
    """One explicit request through the schema; ``checked`` runs the fuzz run's checks on it."""
    parts["path_parameters"] = {"cluster_id": world.ids["cluster_id"][0], **parts.get("path_parameters", {})}
    if "body" in parts:
        parts.setdefault("media_type", "application/json")
    case = schema[path][method].Case(**parts)
    headers = {"Authorization": f"Bearer {token or world.token}"}
    return case.call_and_validate(headers=headers, checks=CHECKS) if checked else case.call(headers=headers)


def new_bill(world: World, amount: str) -> dict[str, Any]:
    due = (estate_today() + datetime.timedelta(days=30)).isoformat()
    body = {"title": "Road resurfacing", "category": "other", "amount": amount, "due_date": due}
    return dict(call(world, "POST", BILLS, body=body).json())


# Found by this file: a credit that took a balance past 999999999999.99 overflowed the
# numeric(14,2) column (DataError, 500). Fixed in levy/wallets/services.py
# (_move_balance bounds credits; wallet_credit answers 400); this keeps it fixed.
def test_a_credit_past_the_largest_balance_is_refused(world: World) -> None:
    resident = world.estate.residents[0]
    before = Wallet.objects.get(user=resident.user).balance  # 45000.00
    refused = call(
        world,
        "POST",
        CREDIT,
        path_parameters={"user_id": str(resident.user_id)},
        headers={"Idempotency-Key": "credit-max"},
        body={"amount": MAX_AMOUNT, "note": "cash"},
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "validation_error"
    assert "amount" in refused.json()["error"]["details"]["fields"]
    assert Wallet.objects.get(user=resident.user).balance == before


# Found by this file: money totals were serialized with MoneyField (max_digits=14), so a
# sum past 12 integer digits raised decimal.InvalidOperation (500). One bill at the
# largest amount, owed by four members, broke the dashboard and the member list; two
# payments of it broke the bill's stats. Fixed with MoneyTotalField (max_digits=24) in
# levy/api/serializers.py; these keep it fixed.
def test_the_dashboard_adds_up_large_bills(world: World) -> None:
    before = Decimal(call(world, "GET", DASHBOARD).json()["billed_amount"])
    new_bill(world, MAX_AMOUNT)  # owed by the admin and the three residents
    after = call(world, "GET", DASHBOARD).json()
    assert Decimal(after["billed_amount"]) == before + 4 * Decimal(MAX_AMOUNT)


def test_the_member_list_adds_up_large_bills(world: World) -> None:
    new_bill(world, MAX_AMOUNT)
    new_bill(world, MAX_AMOUNT)
    listed = call(world, "GET", "/api/v1/clusters/{cluster_id}/management/members/", query={"role": "resident"})
    assert listed.status_code == 200, listed.text
    owed = {row["id"]: Decimal(row["bill_summary"]["outstanding_amount"]) for row in listed.json()["results"]}
    # Resident 2 owes the two new bills and the service charge, which they dispute.
    assert owed[str(world.estate.residents[2].user_id)] >= 2 * Decimal(MAX_AMOUNT)


def test_a_bill_collected_past_twelve_digits_is_served(world: World) -> None:
    payers = []
    for n in range(2):
        member = call(
            world,
            "POST",
            "/api/v1/clusters/{cluster_id}/management/members/",
            body={"email": f"whale{n}@example.test", "name": f"Whale {n}", "role": "resident"},
        ).json()
        call(
            world,
            "POST",
            CREDIT,
            path_parameters={"user_id": member["id"]},
            headers={"Idempotency-Key": f"whale-{n}"},
            body={"amount": MAX_AMOUNT, "note": "transfer"},
        )
        payers.append(token_for(User.objects.get(pk=member["id"])))
    bill = new_bill(world, MAX_AMOUNT)
    one = {"bill_id": bill["id"]}
    for token in payers:
        call(
            world,
            "POST",
            "/api/v1/clusters/{cluster_id}/bills/{bill_id}/acknowledge/",
            token=token,
            path_parameters=one,
        )
        call(
            world,
            "POST",
            "/api/v1/clusters/{cluster_id}/bills/{bill_id}/pay/",
            token=token,
            path_parameters=one,
            headers={"Idempotency-Key": "pay-road"},
        )
    served = call(world, "GET", BILLS + "{bill_id}/", path_parameters=one).json()
    assert served["stats"]["paid"] == 2
    assert Decimal(served["stats"]["collected_amount"]) == 2 * Decimal(MAX_AMOUNT)


# A field over the csv module's 131072-character limit (well inside the 5 MB upload
# limit) is bad input, not a crash: the upload is accepted and its import fails,
# naming the line, with nothing imported.
def test_an_import_with_an_oversized_field_is_refused(world: World) -> None:
    from levy.estates.models import MemberImport, Membership
    from levy.members.imports import members_import

    members = Membership.objects.count()
    text = 'email,name,role,is_resident\n"' + "x" * 140_000 + '",Someone,resident,true\n'
    response = call(
        world,
        "POST",
        "/api/v1/clusters/{cluster_id}/management/members/import/",
        checked=False,
        body={"file": text.encode()},
        media_type="multipart/form-data",
    )
    assert response.status_code == 202, response.text
    members_import(import_id=response.json()["id"])  # the job, whether or not it ran already
    job = MemberImport.objects.get(pk=response.json()["id"])
    assert job.status == MemberImport.Status.FAILED
    assert job.errors == [{"line": 2, "message": "The file is not valid CSV: field larger than field limit (131072)."}]
    assert Membership.objects.count() == members
