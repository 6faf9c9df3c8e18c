"""Adding members on the pages, over HTTP: one member through ``member_add`` (with the
invitation email), a CSV file through the import job (each bad line named, nothing
imported from a file with one), the import's progress and result, who may do it, and
the queries each page costs."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from levy.accounts.models import User
from levy.audit.models import AuditEvent
from levy.estates.models import MemberImport, Membership
from tests.api.test_isolation import db_snapshot
from tests.conftest import Estate, make_estate
from tests.factories import UserFactory
from tests.web.conftest import browser_as, count_queries, estate_url

pytestmark = pytest.mark.django_db

HEADER = "email,name,role,is_resident\n"


def _invitations() -> list[Any]:
    return [m for m in mail.outbox if m.subject.startswith("You have been added to")]


def _upload(browser: Any, estate: Estate, text: str | bytes, name: str = "members.csv") -> Any:
    content = text.encode() if isinstance(text, str) else text
    return browser.post(estate_url(estate, "members/import/"), {"file": SimpleUploadedFile(name, content)})


def test_the_members_page_links_to_adding_and_importing(estate: Estate) -> None:
    html = browser_as(estate.admin).get(estate_url(estate, "members/")).content.decode()
    assert f'href="{estate_url(estate, "members/new/")}"' in html
    assert f'href="{estate_url(estate, "members/import/")}"' in html


def test_a_manager_adds_a_member_who_is_invited_to_choose_a_password(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    form = browser.get(estate_url(estate, "members/new/"))
    assert form.status_code == 200 and "Add a member" in form.content.decode()
    response = browser.post(
        estate_url(estate, "members/new/"),
        {"name": "Ada Obi", "email": "Ada.Obi@Example.test", "role": "treasurer", "lives_here": "no"},
    )
    assert response.status_code == 302
    member = Membership.objects.get(cluster=estate.cluster, user__email="ada.obi@example.test")
    assert (member.role, member.is_resident, member.active) == ("treasurer", False, True)
    assert member.user.name == "Ada Obi" and not member.user.has_usable_password()
    assert [m.to for m in _invitations()] == [["ada.obi@example.test"]]
    assert AuditEvent.objects.filter(action="member.add", cluster=estate.cluster).count() == 1
    page = browser.get(response["Location"]).content.decode()
    assert "Ada Obi (ada.obi@example.test) added as Treasurer. They have been emailed a link" in page


def test_someone_with_an_account_is_added_without_an_invitation_and_told_by_the_name_typed(
    estate: Estate, other_estate: Estate
) -> None:
    elsewhere = other_estate.residents[0].user
    browser = browser_as(estate.admin)
    response = browser.post(
        estate_url(estate, "members/new/"),
        {"name": "Typed Name", "email": elsewhere.email, "role": "resident", "lives_here": "yes"},
    )
    assert response.status_code == 302 and _invitations() == []
    page = browser.get(response["Location"]).content.decode()
    message = page.split('<div class="messages" role="status">')[1].split("</div>")[0]
    assert "Typed Name" in message and elsewhere.name not in message and "already have a Levy account" in message
    assert Membership.objects.get(cluster=estate.cluster, user=elsewhere).is_resident


def test_bad_input_is_explained_next_to_its_field_and_nobody_is_added(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    before = Membership.objects.count()
    bad = browser.post(
        estate_url(estate, "members/new/"), {"name": "", "email": "not-an-email", "role": "boss", "lives_here": "yes"}
    )
    html = bad.content.decode()
    assert bad.status_code == 400
    assert 'id="id_name_error"' in html and 'id="id_email_error"' in html and 'id="id_role_error"' in html
    twice = browser.post(
        estate_url(estate, "members/new/"),
        {"name": "X", "email": estate.residents[0].user.email, "role": "resident", "lives_here": "yes"},
    )
    assert twice.status_code == 400 and "This person is already a member of the estate." in twice.content.decode()
    assert Membership.objects.count() == before


def test_an_import_runs_and_shows_what_it_did(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    text = HEADER + "ada@example.test,Ada Obi,resident,true\ntunde@example.test,Tunde Bello,treasurer,\n"
    text += f"{estate.residents[0].user.email},Already Here,resident,true\n"
    response = _upload(browser, estate, text)
    job = MemberImport.objects.get(cluster=estate.cluster)
    assert response.status_code == 302
    assert response["Location"] == estate_url(estate, f"members/imports/{job.pk}/")
    page = browser.get(response["Location"]).content.decode()
    assert "2 members added; 1 skipped (already members)." in page
    assert "hx-trigger" not in page  # finished: the page stops asking
    assert sorted(m.to[0] for m in _invitations()) == ["ada@example.test", "tunde@example.test"]
    assert Membership.objects.get(cluster=estate.cluster, user__email="tunde@example.test").role == "treasurer"
    listing = browser.get(estate_url(estate, "members/import/")).content.decode()
    assert "Recent imports" in listing and "Imported: 2 added" in listing


def test_a_file_with_a_bad_line_imports_nothing_and_names_the_line(estate: Estate) -> None:
    browser = browser_as(estate.admin)
    text = HEADER + "ada@example.test,Ada Obi,resident,true\nnot-an-email,Bad Person,resident,maybe\n"
    text += "chi@example.test,Chi Eze,landlord,true\n"
    response = _upload(browser, estate, text)
    page = browser.get(response["Location"]).content.decode()
    assert "Nothing was imported:</strong> 2 lines are wrong." in page
    assert "<td>Line 3</td><td>email: Enter a valid email address.; is_resident: use true or false</td>" in page
    assert "<td>Line 4</td><td>role: Choose one of: admin, auditor, resident, treasurer.</td>" in page
    assert not User.objects.filter(email__in=["ada@example.test", "chi@example.test"]).exists()
    assert _invitations() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The submitted file is empty."),
        ("email,name\n".encode("utf-16"), "The file must be UTF-8 text."),
        (b"x" * (5 * 1024 * 1024 + 1), "The file is larger than 5 MB."),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_at_once(estate: Estate, content: bytes, message: str) -> None:
    response = _upload(browser_as(estate.admin), estate, content)
    assert response.status_code == 400 and message in response.content.decode()
    assert not MemberImport.objects.exists()


def test_no_file_is_a_clear_message(estate: Estate) -> None:
    response = browser_as(estate.admin).post(estate_url(estate, "members/import/"), {})
    assert response.status_code == 400 and "Choose the CSV file to import." in response.content.decode()


def test_a_running_import_asks_for_its_progress_every_second(estate: Estate) -> None:
    job = MemberImport.objects.create(
        cluster=estate.cluster,
        created_by=estate.admin.user,
        file_name="big.csv",
        status=MemberImport.Status.VALIDATING,
        total_lines=10000,
        processed_lines=5000,
    )
    browser = browser_as(estate.admin)
    path = estate_url(estate, f"members/imports/{job.pk}/")
    page = browser.get(path).content.decode()
    assert f'hx-get="{path}" hx-trigger="every 1s"' in page
    assert "5000 of 10000 lines checked" in page and '<progress max="10000" value="5000"' in page
    fragment = browser.get(path, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in fragment and fragment.strip().startswith('<section id="import-progress"')
    MemberImport.objects.filter(pk=job.pk).update(
        status=MemberImport.Status.SUCCEEDED, processed_lines=10000, created_count=10000
    )
    done = browser.get(path, headers={"HX-Request": "true"}).content.decode()
    assert "10000 members added" in done and "hx-trigger" not in done


@pytest.mark.parametrize("who", ["treasurer", "auditor", "resident"])
def test_only_those_who_manage_members_add_them(estate: Estate, who: str) -> None:
    member = {"treasurer": estate.treasurer, "auditor": estate.auditor, "resident": estate.residents[0]}[who]
    job = MemberImport.objects.create(cluster=estate.cluster, created_by=estate.admin.user)
    browser = browser_as(member)
    before = db_snapshot()
    assert browser.get(estate_url(estate, "members/new/")).status_code == 403
    assert browser.get(estate_url(estate, "members/import/")).status_code == 403
    assert browser.get(estate_url(estate, f"members/imports/{job.pk}/")).status_code == 403
    body = {"name": "X", "email": "x@example.test", "role": "admin", "lives_here": "yes"}
    assert browser.post(estate_url(estate, "members/new/"), body).status_code == 403
    assert _upload(browser, estate, HEADER + "x@example.test,X,admin,\n").status_code == 403
    assert db_snapshot() == before


# --- queries ------------------------------------------------------------------------------

EXPECTED = {"member-new": 4, "members-import": 5, "member-import": 6}


def _estate_with(members: int) -> tuple[Estate, MemberImport]:
    estate = make_estate(residents=members)
    job = None
    for n in range(members):
        job = MemberImport.objects.create(
            cluster=estate.cluster,
            created_by=estate.admin.user,
            status=MemberImport.Status.FAILED,
            error_count=n + 1,
            errors=[{"line": line + 2, "message": "email: Enter a valid email address."} for line in range(n + 1)],
        )
    UserFactory.create_batch(members)
    assert job is not None
    return estate, job


def test_each_member_adding_page_costs_the_same_queries_with_1_or_many_rows() -> None:
    small = _estate_with(1)
    large = _estate_with(20)
    seen = {}
    for name, path in [
        ("member-new", "members/new/"),
        ("members-import", "members/import/"),
        ("member-import", "members/imports/{job}/"),
    ]:
        counts = []
        for estate, job in (small, large):
            browser = browser_as(estate.admin)
            url = estate_url(estate, path.format(job=job.pk))
            browser.get(url)
            n, response = count_queries(lambda: browser.client.get(url))  # noqa: B023
            assert response.status_code == 200
            counts.append(n)
        seen[name] = counts
    assert seen == {name: [n, n] for name, n in EXPECTED.items()}
