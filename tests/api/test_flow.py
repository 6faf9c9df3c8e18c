"""The main flow over HTTP: an estate-wide bill is created, acknowledged, paid and
shows on the dashboard."""

from __future__ import annotations

import datetime

import pytest

from levy.billing.selectors import estate_today
from levy.wallets.models import Transaction, Wallet
from tests.api.conftest import api_as
from tests.conftest import Estate

pytestmark = pytest.mark.django_db


def test_bill_day(estate: Estate) -> None:
    base = f"/api/v1/clusters/{estate.cluster.pk}"
    admin = api_as(estate.admin)
    due = (estate_today() + datetime.timedelta(days=10)).isoformat()
    created = admin.post(
        f"{base}/management/bills/",
        {"title": "Security levy", "category": "security", "amount": "5000.00", "due_date": due},
    )
    assert created.status_code == 201, created.json()
    bill = created.json()
    assert bill["is_cluster_wide"] is True
    assert bill["stats"]["eligible"] == 3
    resident = estate.residents[0]
    estate.fund(resident, "7000.00")
    me = api_as(resident)
    listed = me.get(f"{base}/bills/")
    assert listed.status_code == 200
    assert [(b["id"], b["status"], b["can_pay"]) for b in listed.json()["results"]] == [(bill["id"], "pending", False)]
    refused = me.post(f"{base}/bills/{bill['id']}/pay/", key="k1")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "bill_not_acknowledged"
    ack = me.post(f"{base}/bills/{bill['id']}/acknowledge/")
    assert ack.status_code == 200
    assert ack.json()["status"] == "acknowledged"
    paid = me.post(f"{base}/bills/{bill['id']}/pay/", key="k2")
    assert paid.status_code == 201, paid.json()
    assert paid.json()["wallet_balance"] == "2000.00"
    replay = me.post(f"{base}/bills/{bill['id']}/pay/", key="k2")
    assert replay.status_code == 201
    assert replay.json() == paid.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert Wallet.objects.get(user=resident.user).balance.to_eng_string() == "2000.00"
    assert Transaction.objects.filter(type="bill_payment", status="completed").count() == 1
    dash = admin.get(f"{base}/management/dashboard/")
    assert dash.status_code == 200
    body = dash.json()
    assert (body["billed_amount"], body["collected_amount"], body["outstanding_amount"]) == (
        "15000.00",
        "5000.00",
        "10000.00",
    )
    assert body["recent_payments"][0]["amount"] == "5000.00"
    members = admin.get(f"{base}/management/members/")
    assert members.status_code == 200, members.json()
    assert api_as(None).get(f"{base}/bills/").status_code == 401


def test_the_api_docs_page_serves_its_own_assets() -> None:
    from django.test import Client

    page = Client().get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    schema = Client().get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/clusters/{cluster_id}/bills/{bill_id}/pay/" in schema.content


def test_due_soon_lists_only_bills_someone_still_owes() -> None:
    from levy.billing.payments import bill_pay
    from levy.billing.services import bill_acknowledge
    from tests.conftest import access, make_estate, new_key

    estate = make_estate(residents=1)
    settled = estate.wide_bill(title="Settled")
    owed = estate.wide_bill(title="Owed")
    payer = estate.residents[0]
    estate.fund(payer, "15000.00")
    bill_acknowledge(access=access(payer), bill=settled)
    bill_pay(access=access(payer), bill=settled, idempotency_key=new_key())
    dash = api_as(estate.admin).get(f"/api/v1/clusters/{estate.cluster.pk}/management/dashboard/").json()
    assert [(b["id"], b["outstanding"]) for b in dash["due_soon"]] == [(str(owed.pk), 1)]
    assert dash["bills_count"] == 2
