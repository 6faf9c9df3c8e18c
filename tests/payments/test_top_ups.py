"""Top-ups against the fake providers over real HTTP: started, confirmed from the return
page, the webhook or the sweep — exactly once, in any order — and never credited when
the provider reports something else than was asked."""

from __future__ import annotations

import datetime
import io
import itertools
import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from levy.audit.models import AuditEvent
from levy.common.errors import IdempotencyKeyReusedError, RuleViolation, ValidationError
from levy.notifications.models import Notification
from levy.payments import secrets
from levy.payments.accounts import provider_account_save
from levy.payments.fake import FakeProvider
from levy.payments.models import PaymentAnomaly, ProviderAccount, TopUp
from levy.payments.providers.base import ProviderError
from levy.payments.services import topup_return, topup_start, topups_sweep
from levy.wallets.models import Transaction, Wallet
from levy.wallets.selectors import ledger_balance
from tests.conftest import Estate, access, committed, new_key
from tests.payments.conftest import connect, get_return, post_webhook, start

pytestmark = pytest.mark.django_db


def balance(member: object) -> Decimal:
    wallet = Wallet.objects.filter(user=member.user, cluster=member.cluster).first()  # type: ignore[attr-defined]
    return wallet.balance if wallet else Decimal("0.00")


def deposits(top_up: TopUp) -> list[Transaction]:
    return list(Transaction.objects.filter(idempotency_key=f"topup:{top_up.reference}"))


# --- provider accounts -------------------------------------------------------------------------


def test_secrets_are_sealed_at_rest_and_shown_as_hints(estate: Estate) -> None:
    secret = "sk_live_abcdefghijklmnop1234"
    account = provider_account_save(access=access(estate.admin), provider="paystack", secret_key=secret, active=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_key_sealed FROM payments_provideraccount WHERE id = %s", [account.pk])
        stored = cursor.fetchone()[0]
    assert secret not in stored
    assert secrets.unseal(stored) == secret
    assert account.secret_key_hint == "sk_live_…1234"
    event = AuditEvent.objects.get(action="payments.provider_account.create")
    assert event.data == {
        "provider": "paystack",
        "changed": ["secret_key", "active"],
        "active": True,
        "secret_key_hint": "sk_live_…1234",
        "webhook_secret_hint": "",
    }
    assert secret not in json.dumps(event.data)


def test_flutterwave_needs_its_secret_hash_and_one_account_is_active(estate: Estate) -> None:
    admin = access(estate.admin)
    with pytest.raises(ValidationError) as raised:
        provider_account_save(access=admin, provider="flutterwave", secret_key="FLWSECK_TEST-1")
    assert raised.value.fields == {"webhook_secret": ["This field is required."]}
    provider_account_save(access=admin, provider="paystack", secret_key="sk_test_1", active=True)
    provider_account_save(
        access=admin, provider="flutterwave", secret_key="FLWSECK_TEST-1", webhook_secret="h", active=True
    )
    assert dict(ProviderAccount.objects.values_list("provider", "active")) == {"paystack": False, "flutterwave": True}
    # A change with nothing new records nothing.
    audits = AuditEvent.objects.count()
    provider_account_save(access=admin, provider="flutterwave", active=True)
    assert AuditEvent.objects.count() == audits


def test_only_the_estate_admin_sets_provider_accounts(estate: Estate) -> None:
    from levy.common.errors import PermissionDeniedError

    for member in (estate.treasurer, estate.auditor, estate.residents[0]):
        with pytest.raises(PermissionDeniedError):
            provider_account_save(access=access(member), provider="paystack", secret_key="sk_test_x")
    assert not ProviderAccount.objects.exists()


# --- starting ----------------------------------------------------------------------------------


def test_start_creates_a_pending_top_up_with_the_providers_checkout(estate: Estate, fake: FakeProvider) -> None:
    connect(estate, fake)
    member = estate.residents[0]
    key = new_key()
    top_up = topup_start(access=access(member), amount="7500.00", idempotency_key=key)
    assert (top_up.status, top_up.amount, top_up.currency, top_up.provider) == (
        "pending",
        Decimal("7500.00"),
        "NGN",
        "paystack",
    )
    assert top_up.reference.startswith("LVY") and len(top_up.reference) == 23
    assert top_up.checkout_url.endswith(f"/checkout/{top_up.reference}")
    assert fake.charges[top_up.reference].amount == Decimal("7500.00")
    # The same key is the same top-up; the same key for another amount is refused.
    assert topup_start(access=access(member), amount="7500.00", idempotency_key=key).pk == top_up.pk
    with pytest.raises(IdempotencyKeyReusedError):
        topup_start(access=access(member), amount="7600.00", idempotency_key=key)
    assert TopUp.objects.count() == 1 and len(fake.charges) == 1


def test_no_provider_no_top_up(estate: Estate) -> None:
    with pytest.raises(RuleViolation) as raised:
        start(estate.residents[0])
    assert raised.value.code == "provider_not_configured"
    assert not TopUp.objects.exists()


@pytest.mark.parametrize("mode", ["timeout", "error", "refuse"])
def test_a_provider_failing_at_initialize_leaves_no_credit_and_a_clear_error(
    estate: Estate, fake: FakeProvider, mode: str
) -> None:
    connect(estate, fake)
    fake.behaviour.initialize = mode
    fake.behaviour.timeout_seconds = 3
    with pytest.raises(ProviderError) as raised:
        start(estate.residents[0])
    assert raised.value.code == ("provider_refused" if mode == "refuse" else "provider_unavailable")
    top_up = TopUp.objects.get()
    assert top_up.status == "failed"
    assert top_up.failure_reason.startswith(raised.value.code)
    assert not Transaction.objects.exists()


# --- confirming ---------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["paystack", "flutterwave"])
def test_return_page_credits_once_however_often_it_is_reloaded(
    estate: Estate, fake: FakeProvider, provider: str
) -> None:
    connect(estate, fake, provider)
    member = estate.residents[0]
    top_up = start(member, "5000.00")
    assert get_return(top_up.reference).json()["status"] == "pending"  # not paid yet
    fake.pay(top_up.reference, send_webhook=False)
    with committed():
        answers = [get_return(top_up.reference).json() for _ in range(3)]
    assert [a["status"] for a in answers] == ["credited"] * 3
    assert answers[0] == {
        "reference": top_up.reference,
        "status": "credited",
        "amount": "5000.00",
        "currency": "NGN",
        "bill_outcome": "",
    }
    [entry] = deposits(top_up)
    assert (entry.type, entry.status, entry.amount, entry.balance_after, entry.payer_id, entry.initiated_by_id) == (
        "deposit",
        "completed",
        Decimal("5000.00"),
        Decimal("5000.00"),
        member.user_id,
        member.user_id,
    )
    assert balance(member) == Decimal("5000.00") == ledger_balance(entry.wallet)
    top_up.refresh_from_db()
    assert (top_up.status, top_up.transaction_id) == ("credited", entry.pk)
    assert AuditEvent.objects.filter(action="payments.top_up.credit", target_id=str(top_up.pk)).count() == 1
    assert Notification.objects.get(recipient=member.user, event="TOP_UP_CREDITED").body == (
        f"₦5,000.00 paid through {top_up.get_provider_display()} (reference {top_up.reference}) is in your wallet. "
        "Wallet balance ₦5,000.00."
    )


@pytest.mark.parametrize("provider", ["paystack", "flutterwave"])
def test_signed_webhook_credits_once_and_repeats_change_nothing(
    estate: Estate, fake: FakeProvider, provider: str
) -> None:
    account = connect(estate, fake, provider)
    member = estate.residents[0]
    top_up = start(member, "2500.00")
    fake.pay(top_up.reference, send_webhook=False)
    body, headers = fake.webhook(top_up.reference)
    results = [post_webhook(account, body, headers) for _ in range(3)]
    assert [(r.status_code, r.json()["result"]) for r in results] == [
        (200, "credited"),
        (200, "already_done"),
        (200, "already_done"),
    ]
    assert len(deposits(top_up)) == 1
    assert balance(member) == Decimal("2500.00")


def test_unsigned_forged_or_malformed_webhooks_credit_nothing(estate: Estate, fake: FakeProvider) -> None:
    account = connect(estate, fake)
    top_up = start(estate.residents[0], "2500.00")
    fake.pay(top_up.reference, send_webhook=False)
    body, headers = fake.webhook(top_up.reference)
    assert post_webhook(account, body, {}).status_code == 401
    forged = post_webhook(account, body, {"x-paystack-signature": "0" * 128})
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "invalid_signature")
    # Signed with the secret, but re-serialised JSON: other bytes, refused.
    tampered = json.dumps(json.loads(body), indent=1).encode()
    assert post_webhook(account, tampered, headers).status_code == 401
    # A correctly signed body that is not a webhook: 400, never a 500.
    from levy.payments.providers.paystack import sign

    secret = secrets.unseal(account.secret_key_sealed)
    for garbage in (b"not json", b"[]", b'{"event": "charge.success"}', b'{"event":1,"data":{"reference":[]}}'):
        response = post_webhook(account, garbage, {"x-paystack-signature": sign(secret, garbage)})
        assert (response.status_code, response.json()["error"]["code"]) == (400, "validation_error"), garbage
    # An account id that does not exist.
    missing = ProviderAccount(pk="00000000-0000-0000-0000-000000000000")
    assert post_webhook(missing, body, headers).status_code == 404
    assert not Transaction.objects.exists()
    assert TopUp.objects.get().status == "pending"


def test_signed_webhook_for_an_unknown_reference_is_recorded_not_credited(estate: Estate, fake: FakeProvider) -> None:
    account = connect(estate, fake)
    top_up = start(estate.residents[0], "2500.00")
    fake.pay(top_up.reference, send_webhook=False)
    body, headers = fake.webhook(top_up.reference)
    TopUp.objects.filter(pk=top_up.pk).update(reference="LVYSOMETHINGELSE")
    response = post_webhook(account, body, headers)
    assert (response.status_code, response.json()["result"]) == (200, "unknown_reference")
    anomaly = PaymentAnomaly.objects.get()
    assert (anomaly.kind, anomaly.reference, anomaly.details["reported_amount"]) == (
        "unknown_reference",
        top_up.reference,
        "2500.00",
    )
    assert not Transaction.objects.exists()


@pytest.mark.parametrize(
    ("tweak", "kind", "reported"),
    [({"amount_delta": "-2400"}, "amount_mismatch", "100.00"), ({"currency": "USD"}, "currency_mismatch", "2500.00")],
)
@pytest.mark.parametrize("arrives_by", ["webhook", "return"])
def test_a_mismatch_is_flagged_to_the_managers_and_never_credited(
    estate: Estate, fake: FakeProvider, tweak: dict[str, str], kind: str, reported: str, arrives_by: str
) -> None:
    account = connect(estate, fake)
    member = estate.residents[0]
    top_up = start(member, "2500.00")
    for name, value in tweak.items():
        setattr(fake.behaviour, name, value)
    fake.pay(top_up.reference, send_webhook=False)
    with committed():
        if arrives_by == "webhook":
            body, headers = fake.webhook(top_up.reference)
            response = post_webhook(account, body, headers)
            assert (response.status_code, response.json()["result"]) == (200, "mismatch")
        else:
            assert get_return(top_up.reference).json()["status"] == "mismatch"
        # Repeats change nothing.
        get_return(top_up.reference)
    top_up.refresh_from_db()
    assert (top_up.status, top_up.failure_reason) == ("mismatch", kind)
    anomaly = PaymentAnomaly.objects.get()
    assert (anomaly.kind, anomaly.source, anomaly.top_up_id) == (kind, arrives_by, top_up.pk)
    assert anomaly.details["expected_amount"] == "2500.00"
    assert anomaly.details["reported_amount"] == reported
    flagged = Notification.objects.filter(event="TOP_UP_MISMATCH")
    assert {n.recipient_id for n in flagged} == {estate.admin.user_id, estate.treasurer.user_id}
    assert not Transaction.objects.exists()
    assert balance(member) == Decimal("0.00")


def test_sweep_credits_what_was_paid_and_expires_what_was_abandoned(estate: Estate, fake: FakeProvider) -> None:
    connect(estate, fake)
    member = estate.residents[0]
    paid, abandoned, fresh = start(member, "1000.00"), start(member, "2000.00"), start(member, "3000.00")
    fake.pay(paid.reference, send_webhook=False)
    now = timezone.now()
    TopUp.objects.filter(pk__in=[paid.pk, abandoned.pk]).update(
        created_at=now - datetime.timedelta(hours=2), expires_at=now - datetime.timedelta(hours=1)
    )
    with committed():
        counts = topups_sweep()
    assert counts == {"checked": 2, "credited": 1, "mismatch": 0, "expired": 1, "unreachable": 0}
    statuses = dict(TopUp.objects.values_list("reference", "status"))
    assert statuses == {paid.reference: "credited", abandoned.reference: "expired", fresh.reference: "pending"}
    assert balance(member) == Decimal("1000.00")
    # A payment completed after expiry still credits, once.
    fake.pay(abandoned.reference, send_webhook=False)
    assert get_return(abandoned.reference).json()["status"] == "credited"
    assert topups_sweep() == {"checked": 0, "credited": 0, "mismatch": 0, "expired": 0, "unreachable": 0}
    assert balance(member) == Decimal("3000.00")


def test_sweep_with_the_provider_down_expires_but_credits_nothing(estate: Estate, fake: FakeProvider) -> None:
    connect(estate, fake)
    top_up = start(estate.residents[0], "1000.00")
    TopUp.objects.filter(pk=top_up.pk).update(
        created_at=timezone.now() - datetime.timedelta(hours=2), expires_at=timezone.now()
    )
    fake.behaviour.verify = "error"
    assert topups_sweep() == {"checked": 1, "credited": 0, "mismatch": 0, "expired": 1, "unreachable": 1}
    # The return page does not fail the resident when the provider is down.
    assert topup_return(reference=top_up.reference).status == "expired"
    assert not Transaction.objects.exists()


ORDERS = list(itertools.permutations(["return", "webhook", "sweep"]))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_return_webhook_and_sweep_credit_once_in_every_order(
    estate: Estate, fake: FakeProvider, order: tuple[str, ...]
) -> None:
    account = connect(estate, fake)
    member = estate.residents[0]
    top_up = start(member, "4000.00")
    TopUp.objects.filter(pk=top_up.pk).update(created_at=timezone.now() - datetime.timedelta(minutes=10))
    fake.pay(top_up.reference, send_webhook=False)
    body, headers = fake.webhook(top_up.reference)
    for step in order * 2:
        if step == "return":
            assert get_return(top_up.reference).json()["status"] == "credited"
        elif step == "webhook":
            assert post_webhook(account, body, headers).status_code == 200
        else:
            topups_sweep()
    assert len(deposits(top_up)) == 1
    assert balance(member) == Decimal("4000.00")


def test_credit_query_count(estate: Estate, fake: FakeProvider) -> None:
    account = connect(estate, fake)
    top_up = start(estate.residents[0], "4000.00")
    fake.pay(top_up.reference, send_webhook=False)
    body, headers = fake.webhook(top_up.reference)
    with CaptureQueriesContext(connection) as queries:
        assert post_webhook(account, body, headers).status_code == 200
    assert len(queries) == 11, [q["sql"][:80] for q in queries]


def test_key_rotation_reseals_every_secret(estate: Estate, settings: object) -> None:
    from cryptography.fernet import Fernet
    from django.core.management import CommandError, call_command

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.LEVY_PROVIDER_SECRETS_KEY = old  # type: ignore[attr-defined]
    account = provider_account_save(access=access(estate.admin), provider="paystack", secret_key="sk_test_rotate")
    settings.LEVY_PROVIDER_SECRETS_KEY = f"{new},{old}"  # type: ignore[attr-defined]
    call_command("provider_secrets", "--reseal", stdout=io.StringIO())
    settings.LEVY_PROVIDER_SECRETS_KEY = new  # type: ignore[attr-defined]
    account.refresh_from_db()
    assert secrets.unseal(account.secret_key_sealed) == "sk_test_rotate"
    settings.LEVY_PROVIDER_SECRETS_KEY = Fernet.generate_key().decode()  # type: ignore[attr-defined]
    with pytest.raises(CommandError, match=str(account.pk)):
        call_command("provider_secrets")
