"""The recurring-bill endpoints: create, list, pause, resume, end."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from levy.audit.models import AuditEvent
from levy.billing.models import Bill, BillSchedule
from levy.billing.schedules import schedules_issue_due
from levy.billing.selectors import estate_today
from tests.api.conftest import api_as, assert_error, base
from tests.conftest import Estate

pytestmark = pytest.mark.django_db


def body(**overrides: Any) -> dict[str, Any]:
    values = {
        "title": "Service charge",
        "description": "Monthly service charge",
        "category": "service_charge",
        "amount": "15000.00",
        "frequency": "monthly",
        "first_due_date": (estate_today() + datetime.timedelta(days=30)).isoformat(),
        "issue_days_before": 10,
    }
    values.update(overrides)
    return values


def test_create_and_list_a_schedule(estate: Estate) -> None:
    admin = api_as(estate.admin)
    first = estate_today() + datetime.timedelta(days=30)
    created = admin.post(f"{base(estate)}/management/schedules/", body())
    assert created.status_code == 201, created.json()
    data = created.json()
    schedule = BillSchedule.objects.get()
    assert data == {
        "id": str(schedule.pk),
        "title": "Service charge",
        "description": "Monthly service charge",
        "category": "service_charge",
        "amount": "15000.00",
        "currency": estate.cluster.currency,
        "allow_payment_after_due": False,
        "is_cluster_wide": True,
        "user_id": None,
        "frequency": "monthly",
        "first_due_date": first.isoformat(),
        "issue_days_before": 10,
        "status": "active",
        "next_period": 0,
        "next_due_date": first.isoformat(),
        "next_issue_on": (first - datetime.timedelta(days=10)).isoformat(),
        "created_at": data["created_at"],
        "paused_at": None,
        "ended_at": None,
        "end_reason": "",
    }
    member = estate.residents[0]
    own = admin.post(
        f"{base(estate)}/management/schedules/", body(title="Parking", frequency="yearly", user_id=str(member.user_id))
    )
    assert own.status_code == 201, own.json()
    assert (own.json()["user_id"], own.json()["is_cluster_wide"]) == (str(member.user_id), False)

    listed = api_as(estate.auditor).get(f"{base(estate)}/management/schedules/").json()
    assert [s["title"] for s in listed["results"]] == ["Parking", "Service charge"]
    assert listed["next"] is None


def test_create_refuses_bad_input(estate: Estate) -> None:
    admin = api_as(estate.admin)
    past = (estate_today() - datetime.timedelta(days=1)).isoformat()
    response = admin.post(
        f"{base(estate)}/management/schedules/",
        body(frequency="weekly", amount="0", first_due_date=past, issue_days_before=-1),
    )
    assert_error(response, 400, "validation_error", ("frequency", "issue_days_before"))
    response = admin.post(f"{base(estate)}/management/schedules/", body(amount="0", first_due_date=past))
    assert_error(response, 400, "validation_error", ("amount", "first_due_date"))
    response = admin.post(f"{base(estate)}/management/schedules/", body(user_id=str(estate.treasurer.user_id)))
    assert_error(response, 400, "validation_error", ("user_id",))
    assert not BillSchedule.objects.exists()


def test_pause_resume_end_and_the_status_filter(estate: Estate) -> None:
    admin = api_as(estate.admin)
    url = f"{base(estate)}/management/schedules/"
    ids = [admin.post(url, body(title=t)).json()["id"] for t in ("A", "B", "C")]

    paused = admin.post(f"{url}{ids[0]}/pause/")
    assert (paused.status_code, paused.json()["status"]) == (200, "paused")
    ended = admin.post(f"{url}{ids[1]}/end/", {"reason": "Replaced by the new levy"})
    assert (ended.status_code, ended.json()["status"], ended.json()["end_reason"]) == (
        200,
        "ended",
        "Replaced by the new levy",
    )

    def titles(status: str) -> list[str]:
        return [s["title"] for s in admin.get(url, status=status).json()["results"]]

    assert (titles("active"), titles("paused"), titles("ended")) == (["C"], ["A"], ["B"])
    assert_error(admin.get(url, status="sleeping"), 400, "validation_error", ("status",))

    resumed = admin.post(f"{url}{ids[0]}/resume/")
    assert (resumed.status_code, resumed.json()["status"], resumed.json()["next_period"]) == (200, "active", 0)
    before = BillSchedule.objects.get(pk=ids[1]).ended_at
    for action in ("pause", "resume", "end"):
        assert_error(admin.post(f"{url}{ids[1]}/{action}/"), 409, "schedule_ended")
    assert BillSchedule.objects.get(pk=ids[1]).ended_at == before
    actions = AuditEvent.objects.filter(action__startswith="schedule.").values_list("action", flat=True)
    assert sorted(actions) == sorted(["schedule.create"] * 3 + ["schedule.pause", "schedule.end", "schedule.resume"])


def test_the_bills_a_schedule_issued_are_listed_by_schedule(estate: Estate) -> None:
    admin = api_as(estate.admin)
    created = admin.post(f"{base(estate)}/management/schedules/", body(issue_days_before=30)).json()
    schedules_issue_due()
    estate.wide_bill(title="One-off")
    bill = Bill.objects.get(schedule_id=created["id"])
    listed = admin.get(f"{base(estate)}/management/bills/", schedule_id=created["id"]).json()["results"]
    assert [(b["id"], b["schedule_id"], b["schedule_period"]) for b in listed] == [(str(bill.pk), created["id"], 0)]
    everything = admin.get(f"{base(estate)}/management/bills/").json()["results"]
    assert {b["title"]: b["schedule_id"] for b in everything} == {
        "One-off": None,
        bill.title: created["id"],
    }
