"""The members CSV import as a background job (issue 15, item 2), over HTTP: the upload
answers at once with the job's id; the job checks every line, imports nothing if any
is wrong (naming each bad line), or writes every member set-based; its status,
progress and errors are read back from the API."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from levy.audit.models import AuditEvent
from levy.estates.models import MemberImport, Membership
from levy.members.imports import members_import
from levy.notifications.events import NotificationEvents
from levy.notifications.models import Notification
from levy.wallets.models import Wallet
from tests.api.conftest import api_as, assert_error, base
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

HEADER = "email,name,role,is_resident\n"


def upload(estate: Estate, text: str, caller: Any = None) -> Any:
    api = api_as(caller or estate.admin)
    data = {"file": SimpleUploadedFile("members.csv", text.encode(), content_type="text/csv")}
    return api.post_multipart(f"{base(estate)}/management/members/import/", data)


def status(estate: Estate, import_id: str, caller: Any = None) -> Any:
    return api_as(caller or estate.admin).get(f"{base(estate)}/management/members/imports/{import_id}/")


def test_an_import_runs_as_a_job_and_reports_its_result(estate: Estate) -> None:
    already = estate.residents[0].user
    elsewhere = UserFactory(name="Their Own Name")
    text = (
        HEADER
        + "ada@example.test,Ada Obi,resident,true\n"
        + f"{already.email},Someone,resident,true\n"
        + "tunde@example.test,Tunde Bello,treasurer,\n"
        + f"{elsewhere.email.upper()},Typed Name,auditor,no\n"
    )
    response = upload(estate, text)
    assert response.status_code == 202, response.content
    body = response.json()
    assert response["Location"] == f"{base(estate)}/management/members/imports/{body['id']}/"
    assert body["status"] == "queued"
    assert body["total_lines"] == 4
    # The job ran after the commit (tasks run in-process in the tests).
    done = status(estate, body["id"])
    assert done.status_code == 200, done.content
    result = done.json()
    assert {
        k: result[k]
        for k in ("status", "total_lines", "processed_lines", "created", "skipped", "error_count", "errors")
    } == {
        "status": "succeeded",
        "total_lines": 4,
        "processed_lines": 4,
        "created": 3,
        "skipped": 1,
        "error_count": 0,
        "errors": [],
    }
    assert result["started_at"] is not None and result["finished_at"] is not None
    roles = dict(
        Membership.objects.filter(
            cluster=estate.cluster, user__email__in=["ada@example.test", "tunde@example.test", elsewhere.email]
        ).values_list("user__email", "role")
    )
    assert roles == {"ada@example.test": "resident", "tunde@example.test": "treasurer", elsewhere.email: "auditor"}
    tunde = Membership.objects.get(cluster=estate.cluster, user__email="tunde@example.test")
    assert tunde.is_resident is False  # the role's default
    assert Wallet.objects.filter(cluster=estate.cluster, user__email__in=list(roles)).count() == 3
    elsewhere.refresh_from_db()
    assert elsewhere.name == "Their Own Name"  # an existing account is never renamed
    # Everyone added is told.
    told = set(
        Notification.objects.filter(event=NotificationEvents.MEMBERSHIP_ADDED, cluster=estate.cluster).values_list(
            "recipient__email", flat=True
        )
    )
    assert told == set(roles)
    assert AuditEvent.objects.get(action="member.import").data == {"created": 3, "skipped": 1, "lines": 3 + 1}
    assert MemberImport.objects.get(pk=body["id"]).content == ""  # the file is not kept


def test_a_bad_file_imports_nothing_and_names_each_bad_line(estate: Estate) -> None:
    text = (
        HEADER
        + "good@example.test,Good Person,resident,true\n"
        + "not-an-email,Bad,resident,true\n"
        + "nameless@example.test,,resident,true\n"
        + "good@example.test,Again,resident,true\n"
        + "odd@example.test,Odd,landlord,maybe\n"
    )
    before = db_snapshot()
    body = upload(estate, text).json()
    result = status(estate, body["id"]).json()
    assert result["status"] == "failed"
    assert result["created"] == 0 and result["error_count"] == 4
    assert result["errors"] == [
        {"line": 3, "message": "email: Enter a valid email address."},
        {"line": 4, "message": "name: This field may not be blank."},
        {"line": 5, "message": "email: appears twice in the file"},
        {
            "line": 6,
            "message": "role: Choose one of: admin, auditor, resident, treasurer.; is_resident: use true or false",
        },
    ]
    after = db_snapshot()
    # Only the import itself (failed, nothing created) and its audit record were added.
    assert list(after.pop("member_imports").values()) == [("failed", 0)]
    before.pop("member_imports")
    new_events = set(after.pop("audit_events")) - set(before.pop("audit_events"))
    assert [AuditEvent.objects.get(pk=pk).action for pk in new_events] == ["member.import.start"]
    assert after == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,role\nAda,resident\n", "The first line must be a header with at least: email,name,role,is_resident"),
        (HEADER, "The file has no members."),
    ],
)
def test_a_file_without_members_fails_with_one_reason(estate: Estate, text: str, message: str) -> None:
    body = upload(estate, text).json()
    result = status(estate, body["id"]).json()
    assert (result["status"], result["errors"]) == ("failed", [{"line": 1, "message": message}])


def test_the_upload_is_refused_at_once_when_the_file_is_not_text(estate: Estate) -> None:
    api = api_as(estate.admin)
    data = {"file": SimpleUploadedFile("m.csv", b"\xff\xfe\x00binary", content_type="text/csv")}
    response = api.post_multipart(f"{base(estate)}/management/members/import/", data)
    assert_error(response, 400, "validation_error", ("file",))
    assert MemberImport.objects.count() == 0
    assert_error(
        api.post_multipart(f"{base(estate)}/management/members/import/", {}), 400, "validation_error", ("file",)
    )


def test_an_account_stored_with_capitals_is_found_not_duplicated(estate: Estate) -> None:
    from levy.accounts.models import User

    person = UserFactory(name="Mixed Case")
    User.objects.filter(pk=person.pk).update(email="Mixed.Case@Example.test")
    users = User.objects.count()
    body = upload(estate, HEADER + "mixed.case@example.test,Typed,resident,true\n").json()
    result = status(estate, body["id"]).json()
    assert (result["status"], result["created"]) == ("succeeded", 1)
    assert User.objects.count() == users
    assert Membership.objects.get(cluster=estate.cluster, user=person).active


def test_a_job_delivered_twice_runs_once(estate: Estate) -> None:
    body = upload(estate, HEADER + "once@example.test,Once,resident,true\n").json()
    assert members_import(import_id=body["id"]) is None  # already done: not claimed again
    assert Membership.objects.filter(user__email="once@example.test").count() == 1


def test_the_status_is_estate_scoped(estate: Estate, other_estate: Estate) -> None:
    body = upload(estate, HEADER + "scoped@example.test,Scoped,resident,true\n").json()
    assert_error(status(other_estate, body["id"], other_estate.admin), 404, "not_found")
    path = f"{base(estate)}/management/members/imports/{body['id']}/"
    assert_error(api_as(other_estate.admin).get(path), 404, "not_found")
    assert_error(api_as(estate.residents[0]).get(path), 403, "permission_denied")
    assert_error(api_as(estate.treasurer).get(path), 403, "permission_denied")
    assert_error(api_as(None).get(path), 401, "not_authenticated")
    assert_error(status(estate, "00000000-0000-0000-0000-000000000000"), 404, "not_found")


def test_the_status_read_is_one_query_after_access(estate: Estate) -> None:
    body = upload(estate, HEADER + "q@example.test,Q,resident,true\n").json()
    client = api_as(estate.admin).client
    path = f"{base(estate)}/management/members/imports/{body['id']}/"
    client.get(path)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    assert len(ctx.captured_queries) == 2  # the caller with their membership and its estate, the import


def test_everyone_imported_who_cannot_sign_in_yet_is_invited_once_it_commits(estate: Estate, settings: Any) -> None:
    """Issue 15 noted that people added by CSV got no invitation: they could not sign in."""
    from django.core import mail

    from levy.members import services

    settings.LEVY_PUBLIC_URL = "https://estate.example.org"
    services_batch = services.INVITATIONS_PER_TASK
    services.INVITATIONS_PER_TASK = 2  # several tasks for three people
    try:
        with_password = UserFactory(email="has.password@example.test")
        text = (
            HEADER
            + "ada@example.test,Ada Obi,resident,true\n"
            + "tunde@example.test,Tunde Bello,treasurer,\n"
            + "chi@example.test,Chi Eze,resident,true\n"
            + f"{with_password.email},Has Password,resident,true\n"
            + f"{estate.residents[0].user.email},Already Here,resident,true\n"
        )
        mail.outbox.clear()
        assert upload(estate, text).status_code == 202
    finally:
        services.INVITATIONS_PER_TASK = services_batch
    invitations = [m for m in mail.outbox if m.subject.startswith("You have been added to")]
    assert sorted(m.to[0] for m in invitations) == ["ada@example.test", "chi@example.test", "tunde@example.test"]
    assert all("https://estate.example.org/password/set/" in m.body for m in invitations)
    assert all(estate.admin.user.get_full_name() in m.body for m in invitations)


def test_a_file_with_a_bad_line_invites_nobody(estate: Estate) -> None:
    from django.core import mail

    mail.outbox.clear()
    assert (
        upload(estate, HEADER + "ada@example.test,Ada Obi,resident,true\nnot-an-email,X,resident,true\n").status_code
        == 202
    )
    assert not [m for m in mail.outbox if m.subject.startswith("You have been added to")]
