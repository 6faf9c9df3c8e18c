"""The disputes page in a real browser: work through the open queue, uphold one with a
note, and see it among the latest decisions."""

from __future__ import annotations

import pytest

from levy.billing.models import BillDispute, DisputeStatus
from levy.billing.services import bill_dispute, dispute_resolve
from tests.conftest import access, make_estate
from tests.web.browser.conftest import shoot, sign_in

pytestmark = pytest.mark.browser


def test_resolve_a_dispute_from_the_queue(page, live) -> None:
    estate = make_estate(residents=3)
    water = estate.wide_bill(title="Water, November")
    diesel = estate.wide_bill(title="Generator diesel")
    mine = bill_dispute(access=access(estate.residents[0]), bill=water, reason="I was travelling all of November.")
    bill_dispute(access=access(estate.residents[1]), bill=diesel, reason="My flat has its own generator.")
    earlier = bill_dispute(access=access(estate.residents[2]), bill=diesel, reason="Wrong amount.")
    dispute_resolve(access=access(estate.admin), dispute=earlier, resolution="rejected", note="The amount is right.")
    sign_in(page, live, estate.admin.user)
    page.get_by_role("navigation", name="Estate").get_by_role("link", name="Disputes").click()
    assert page.get_by_role("heading", level=2, name="Open, waiting longest first").is_visible()
    shoot(page, "disputes")
    card = page.get_by_role("article", name=f"{estate.residents[0].user.get_full_name()} disputes Water, November")
    # The keyboard opens the form: focus "Resolve", Enter, then type the note.
    card.get_by_text("Resolve", exact=True).focus()
    page.keyboard.press("Enter")
    card.get_by_label(f"Note to {estate.residents[0].user.get_full_name()}").fill("Away all month: waived.")
    shoot(page, "disputes-resolving")
    card.get_by_role("button", name="Uphold").click()
    page.wait_for_load_state("networkidle")
    assert "no longer owes Water, November" in page.get_by_role("status").inner_text()
    mine = BillDispute.objects.get(pk=mine.pk)
    assert (mine.status, mine.resolution_note, mine.resolved_by_id) == (
        DisputeStatus.UPHELD,
        "Away all month: waived.",
        estate.admin.user_id,
    )
    recent = page.get_by_role("region", name="Recently resolved")
    assert "Away all month: waived." in recent.inner_text()
    page.get_by_role("link", name="Upheld").click()
    page.get_by_role("link", name=f"{estate.residents[0].user.get_full_name()} disputes Water, November").click()
    assert page.get_by_role("heading", level=1).inner_text().endswith("Upheld")
    shoot(page, "dispute")


def test_an_auditor_reads_the_queue_without_any_control_that_writes(page, live) -> None:
    estate = make_estate(residents=1)
    bill = estate.wide_bill(title="Water")
    dispute = bill_dispute(access=access(estate.residents[0]), bill=bill, reason="Not mine")
    sign_in(page, live, estate.auditor.user)
    page.goto(live(f"/estates/{estate.cluster.pk}/disputes/"))
    assert page.get_by_text("Resolve", exact=True).count() == 0
    page.get_by_role("link", name=f"{estate.residents[0].user.get_full_name()} disputes Water").click()
    buttons = [b.strip() for b in page.get_by_role("button").all_inner_texts()]
    assert buttons == ["Sign out"], buttons
    shoot(page, "dispute-auditor")
    assert BillDispute.objects.get(pk=dispute.pk).status == DisputeStatus.OPEN
