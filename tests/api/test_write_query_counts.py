"""Writes cost a fixed number of queries, whatever the estate's size.

Creating an estate-wide bill writes one intent row and returns; its fan-out to every
member happens after the commit, in a worker (targets.md: bill creation must not grow
with the estate). Each write below is measured in an estate of 1 resident and in one of
50 residents who have already acted on the bill; the counts must be equal. Only the
request is measured: its after-commit fan-out is not run here (the raw test client is
used, inside the test's transaction).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from levy.billing.payments import bill_pay
from levy.billing.schedules import schedule_create, schedule_pause
from levy.billing.selectors import estate_today
from levy.billing.services import bill_acknowledge, bill_dispute
from tests.api.conftest import api_as, base
from tests.conftest import Estate, access, make_estate, new_key, schedule_input

pytestmark = pytest.mark.django_db

DUE = (estate_today() + datetime.timedelta(days=20)).isoformat()


def world(residents: int) -> tuple[Estate, Any]:
    """An estate whose residents (all but the last) have acknowledged and paid a bill."""
    estate = make_estate(residents=residents)
    bill = estate.wide_bill()
    for member in estate.residents[:-1]:
        estate.fund(member, "15000.00")
        bill_acknowledge(access=access(member), bill=bill)
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    return estate, bill


# Each scenario prepares what its request needs (not measured) and returns the request.
Request = Callable[[], Any]


def _create_bill(estate: Estate, bill: Any) -> Request:
    body = {"title": "Levy", "category": "security", "amount": "100.00", "due_date": DUE}
    client = api_as(estate.admin).client
    return lambda: client.post(f"{base(estate)}/management/bills/", body, format="json")


def _acknowledge(estate: Estate, bill: Any) -> Request:
    client = api_as(estate.residents[-1]).client
    return lambda: client.post(f"{base(estate)}/bills/{bill.pk}/acknowledge/")


def _dispute(estate: Estate, bill: Any) -> Request:
    client = api_as(estate.residents[-1]).client
    return lambda: client.post(f"{base(estate)}/bills/{bill.pk}/dispute/", {"reason": "not mine"}, format="json")


def _pay(estate: Estate, bill: Any) -> Request:
    member = estate.residents[-1]
    estate.fund(member, "15000.00")
    bill_acknowledge(access=access(member), bill=bill)
    client = api_as(member).client
    return lambda: client.post(f"{base(estate)}/bills/{bill.pk}/pay/", headers={"Idempotency-Key": "p-1"})


def _credit(estate: Estate, bill: Any) -> Request:
    member = estate.residents[-1]
    client = api_as(estate.treasurer).client
    return lambda: client.post(
        f"{base(estate)}/management/wallets/{member.user_id}/credit/",
        {"amount": "10.00", "note": "cash"},
        format="json",
        headers={"Idempotency-Key": "c-1"},
    )


def _cancel(estate: Estate, bill: Any) -> Request:
    client = api_as(estate.admin).client
    return lambda: client.post(
        f"{base(estate)}/management/bills/{bill.pk}/cancel/", {"reason": "duplicate"}, format="json"
    )


def _resolve(estate: Estate, bill: Any) -> Request:
    dispute = bill_dispute(access=access(estate.residents[-1]), bill=bill, reason="x")
    client = api_as(estate.admin).client
    return lambda: client.post(
        f"{base(estate)}/management/disputes/{dispute.pk}/resolve/",
        {"resolution": "upheld", "note": "agreed"},
        format="json",
    )


def _edit_bill(estate: Estate, bill: Any) -> Request:
    client = api_as(estate.admin).client
    return lambda: client.patch(
        f"{base(estate)}/management/bills/{bill.pk}/", {"title": "Service charge (Nov)"}, format="json"
    )


def _change_member(estate: Estate, bill: Any) -> Request:
    member = estate.residents[-1]
    client = api_as(estate.admin).client
    return lambda: client.patch(
        f"{base(estate)}/management/members/{member.user_id}/", {"is_resident": False}, format="json"
    )


def _add_member(estate: Estate, bill: Any) -> Request:
    client = api_as(estate.admin).client
    email = f"{new_key('neighbour')}@example.test"  # a person new to the platform
    return lambda: client.post(f"{base(estate)}/management/members/", {"email": email, "name": "New"}, format="json")


def _retry(estate: Estate, bill: Any) -> Request:
    from levy.common.errors import InsufficientFundsError
    from levy.wallets.models import Transaction

    member = estate.residents[-1]
    bill_acknowledge(access=access(member), bill=bill)
    with pytest.raises(InsufficientFundsError):  # the last resident's wallet is empty
        bill_pay(access=access(member), bill=bill, idempotency_key=new_key())
    failed = Transaction.objects.get(payer=member.user, status="failed")
    estate.fund(member, "15000.00")
    client = api_as(member).client
    return lambda: client.post(f"{base(estate)}/transactions/{failed.pk}/retry/", headers={"Idempotency-Key": "r-1"})


def _leave(estate: Estate, bill: Any) -> Request:
    client = api_as(estate.residents[-1]).client
    return lambda: client.post(f"{base(estate)}/leave/")


def _unlock_sign_in(estate: Estate, bill: Any) -> Request:
    import datetime as dt

    from django.utils import timezone

    from levy.accounts.models import SignInState

    member = estate.residents[-1]
    SignInState.objects.create(user=member.user, failures=10, locked_until=timezone.now() + dt.timedelta(minutes=5))
    client = api_as(estate.admin).client
    return lambda: client.post(f"{base(estate)}/management/members/{member.user_id}/unlock-sign-in/")


def _schedule(estate: Estate, *, paused: bool = False) -> Any:
    schedule = schedule_create(access=access(estate.admin), data=schedule_input())
    if paused:
        schedule_pause(access=access(estate.admin), schedule=schedule)
    return schedule


def _create_schedule(estate: Estate, bill: Any) -> Request:
    body = {"title": "Levy", "category": "security", "amount": "100.00", "frequency": "monthly", "first_due_date": DUE}
    client = api_as(estate.admin).client
    return lambda: client.post(f"{base(estate)}/management/schedules/", body, format="json")


def _change_schedule(action: str) -> Callable[[Estate, Any], Request]:
    def scenario(estate: Estate, bill: Any) -> Request:
        schedule = _schedule(estate, paused=action == "resume")
        client = api_as(estate.admin).client
        return lambda: client.post(f"{base(estate)}/management/schedules/{schedule.pk}/{action}/", format="json")

    return scenario


def _import_members(estate: Estate, bill: Any) -> Request:
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = api_as(estate.admin).client
    text = b"email,name,role,is_resident\nnew.person@example.test,New Person,resident,true\n"
    return lambda: client.post(
        f"{base(estate)}/management/members/import/",
        {"file": SimpleUploadedFile("members.csv", text, content_type="text/csv")},
        format="multipart",
    )


def _read_all(estate: Estate, bill: Any) -> Request:
    client = api_as(estate.admin).client
    return lambda: client.post("/api/v1/notifications/read-all/")


WRITES: dict[str, tuple[Callable[[Estate, Any], Request], int, int]] = {
    # name: (scenario, expected status, expected queries — a change shows here first)
    "create estate-wide bill": (_create_bill, 201, 8),
    "acknowledge": (_acknowledge, 200, 10),
    "dispute": (_dispute, 201, 13),
    "pay": (_pay, 201, 15),
    "wallet credit": (_credit, 201, 11),
    # cancel and edit answer with the bill they hold, read afresh with its counts; they
    # no longer look it up a second time through the access helper
    "cancel bill": (_cancel, 200, 9),
    "resolve dispute": (_resolve, 200, 14),
    "edit bill": (_edit_bill, 200, 8),
    "change member": (_change_member, 200, 10),
    "add member": (_add_member, 201, 17),
    "retry payment": (_retry, 201, 16),
    "read all notifications": (_read_all, 200, 2),
    "leave the estate": (_leave, 200, 9),
    "upload a members import": (_import_members, 202, 5),
    "unlock a member's sign-in": (_unlock_sign_in, 200, 7),
    "create schedule": (_create_schedule, 201, 5),
    "pause schedule": (_change_schedule("pause"), 200, 7),
    "resume schedule": (_change_schedule("resume"), 200, 7),
    "end schedule": (_change_schedule("end"), 200, 7),
}


def measure(residents: int, name: str) -> int:
    estate, bill = world(residents)
    scenario, status, _ = WRITES[name]
    request = scenario(estate, bill)
    with CaptureQueriesContext(connection) as ctx:
        response = request()
    assert response.status_code == status, response.content
    return len(ctx.captured_queries)


@pytest.mark.parametrize("name", list(WRITES))
def test_write_query_count_does_not_grow_with_the_estate(name: str) -> None:
    small = measure(1, name)
    large = measure(50, name)
    assert small == large, f"{name}: {small} queries with 1 resident, {large} with 50"
    assert small == WRITES[name][2]
