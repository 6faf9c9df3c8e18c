"""Adding members in a real browser: one member (who is invited), and a CSV file with
one bad line — nothing is imported, and the page names the line."""

from __future__ import annotations

import pytest
from django.core import mail

from levy.accounts.models import User
from levy.estates.models import MemberImport, Membership
from tests.conftest import make_estate
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser


def test_import_a_csv_with_one_bad_line_and_see_the_line(page, live, tmp_path) -> None:
    estate = make_estate(residents=1)
    bad = tmp_path / "new-residents.csv"
    bad.write_text(
        "email,name,role,is_resident\n"
        "ada.obi@example.test,Ada Obi,resident,true\n"
        "tunde.bello@example.test,Tunde Bello,treasurer,\n"
        "chi.eze@example,Chi Eze,resident,true\n"
    )
    sign_in(page, live, estate.admin.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/members/import/"))
    shoot(page, "members-import")
    page.get_by_label("CSV file").set_input_files(str(bad))
    page.get_by_role("button", name="Upload and import").click()
    page.get_by_role("heading", level=2, name="Nothing imported").wait_for()
    assert "Nothing was imported: 1 line is wrong." in page.get_by_role("alert").inner_text()
    row = page.get_by_role("region", name="Bad lines").locator("tbody tr")
    assert row.count() == 1 and row.inner_text().split("\t") == ["Line 4", "email: Enter a valid email address."]
    shoot(page, "member-import-failed")
    assert MemberImport.objects.get(cluster=estate.cluster).status == MemberImport.Status.FAILED
    assert not User.objects.filter(email__in=["ada.obi@example.test", "tunde.bello@example.test"]).exists()
    # Fixed and uploaded again: everyone is added and invited.
    bad.write_text(bad.read_text().replace("chi.eze@example,", "chi.eze@example.test,"))
    page.get_by_role("link", name="upload it again").click()
    page.get_by_label("CSV file").set_input_files(str(bad))
    page.get_by_role("button", name="Upload and import").click()
    page.get_by_role("heading", level=2, name="Imported").wait_for()
    assert "3 members added." in page.get_by_role("status").inner_text()
    shoot(page, "member-import-done")
    added = Membership.objects.filter(cluster=estate.cluster, user__email__endswith="@example.test").exclude(
        user__email__startswith="person"
    )
    assert sorted(added.values_list("user__email", flat=True)) == [
        "ada.obi@example.test",
        "chi.eze@example.test",
        "tunde.bello@example.test",
    ]
    invited = sorted(m.to[0] for m in mail.outbox if m.subject.startswith("You have been added to"))
    assert invited == ["ada.obi@example.test", "chi.eze@example.test", "tunde.bello@example.test"]


def test_add_one_member_with_the_keyboard(page, live) -> None:
    estate = make_estate(residents=1)
    sign_in(page, live, estate.admin.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/members/new/"))
    page.get_by_label("Full name").focus()
    page.keyboard.type("Ngozi Okafor")
    page.keyboard.press("Tab")
    page.keyboard.type("ngozi.okafor@example.test")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past "role" (resident) to "lives in the estate" (yes)
    shoot(page, "member-new")
    page.get_by_role("button", name="Add the member").press("Enter")
    page.get_by_role("status").wait_for()
    assert "Ngozi Okafor (ngozi.okafor@example.test) added as Resident." in page.get_by_role("status").inner_text()
    member = Membership.objects.get(cluster=estate.cluster, user__email="ngozi.okafor@example.test")
    assert (member.role, member.is_resident) == ("resident", True)
    assert [m.to for m in mail.outbox if m.subject.startswith("You have been added to")] == [
        ["ngozi.okafor@example.test"]
    ]
