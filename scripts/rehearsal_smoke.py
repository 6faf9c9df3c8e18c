#!/usr/bin/env python3
"""The deployment rehearsal's smoke flow, over HTTP, with the standard library only.

As the platform operator (a superuser the rehearsal creates beforehand): create an
estate, its admin and a resident. As the admin: issue an estate-wide bill. As the
resident: see it, acknowledge it. As the admin: credit the resident's wallet. As the
resident: pay (and replay the payment with the same Idempotency-Key), then wait until
the PAYMENT_DUE and PAYMENT_SUCCESSFUL notifications are in the resident's inbox —
which proves that the notification path (a Celery worker, where the release has one)
ran. Every step checks the status code and the body; the first failure exits 1.

Every request carries ``X-Forwarded-Proto: https``, as the TLS proxy in front of the
web processes would send it.

Usage: LEVY_SMOKE_OPERATOR_PASSWORD=… rehearsal_smoke.py --base-url http://127.0.0.1:8500 \
           --label upgrade --operator-email op@example.test [--static-path /static/x.css]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

BILL_AMOUNT = "2500.00"
CREDIT_AMOUNT = "5000.00"
BALANCE_AFTER = "2500.00"


class SmokeFailure(Exception):
    pass


class Client:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        expect: int = 200,
    ) -> tuple[Any, dict[str, str]]:
        """Send one request; fail unless the status is ``expect``. Returns (JSON body, headers)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("X-Forwarded-Proto", "https")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
                status, raw, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), dict(error.headers)
        if status != expect:
            raise SmokeFailure(f"{method} {path}: expected {expect}, got {status}: {raw[:500]!r}")
        if "json" not in got.get("Content-Type", ""):
            return raw.decode(errors="replace"), got
        try:
            return json.loads(raw), got
        except ValueError as error:
            raise SmokeFailure(f"{method} {path}: the body is not JSON: {raw[:200]!r}") from error


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def field(body: Any, name: str, where: str) -> Any:
    if not isinstance(body, dict) or name not in body:
        raise SmokeFailure(f"{where}: no {name!r} in {str(body)[:300]}")
    return body[name]


def sign_in(client: Client, email: str, password: str) -> str:
    body, _ = client.call("POST", "/api/v1/auth/token/", body={"email": email, "password": password})
    field(body, "refresh", f"sign-in of {email}")
    return str(field(body, "access", f"sign-in of {email}"))


def run(args: argparse.Namespace) -> None:
    client = Client(args.base_url)
    tag = f"{args.label}-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"    [{time.monotonic() - started:5.1f} s] {text}", flush=True)

    body, _ = client.call("GET", "/healthz")
    check(body == {"status": "ok"}, f"/healthz answered {body}")
    body, _ = client.call("GET", "/readyz")
    check(field(body, "status", "/readyz") == "ok", f"/readyz answered {body}")
    step("healthz and readyz: ok")

    body, _ = client.call("GET", f"/rehearsal-missing-{tag}/", expect=404)
    check("URLconf" not in str(body), "a 404 page shows Django's debug page: DEBUG is on")
    step("an unknown path answers a plain 404 (DEBUG is off)")
    if args.static_path:
        client.call("GET", args.static_path)
        step(f"static file {args.static_path}: 200")

    operator = sign_in(client, args.operator_email, os.environ.get("LEVY_SMOKE_OPERATOR_PASSWORD", ""))
    step(f"operator {args.operator_email} signed in")
    estate, _ = client.call(
        "POST",
        "/api/v1/clusters/",
        token=operator,
        body={"name": f"Rehearsal estate {tag}", "currency": "NGN"},
        expect=201,
    )
    cluster = field(estate, "id", "estate creation")
    check(estate.get("currency") == "NGN", f"estate created with {estate}")
    members = f"/api/v1/clusters/{cluster}/management/members/"
    admin_email, resident_email = f"admin-{tag}@rehearsal.levy.test", f"resident-{tag}@rehearsal.levy.test"
    admin, _ = client.call(
        "POST",
        members,
        token=operator,
        body={"email": admin_email, "name": "Rehearsal Admin", "role": "admin", "password": password},
        expect=201,
    )
    check(admin.get("role") == "admin" and admin.get("active") is True, f"admin added as {admin}")
    resident, _ = client.call(
        "POST",
        members,
        token=operator,
        body={"email": resident_email, "name": "Rehearsal Resident", "role": "resident", "password": password},
        expect=201,
    )
    check(resident.get("role") == "resident" and resident.get("is_resident") is True, f"resident is {resident}")
    resident_id = field(resident, "id", "resident creation")
    step(f"estate {cluster} with admin {admin_email} and resident {resident_email}")

    admin_token = sign_in(client, admin_email, password)
    due = (datetime.date.today() + datetime.timedelta(days=30)).isoformat()
    bill, _ = client.call(
        "POST",
        f"/api/v1/clusters/{cluster}/management/bills/",
        token=admin_token,
        body={
            "title": f"Rehearsal service charge {tag}",
            "description": "Issued by the deployment rehearsal",
            "category": "service_charge",
            "amount": BILL_AMOUNT,
            "due_date": due,
        },
        expect=201,
    )
    bill_id = field(bill, "id", "bill creation")
    check(bill.get("is_cluster_wide") is True and bill.get("amount") == BILL_AMOUNT, f"bill created as {bill}")
    check(field(bill, "stats", "bill creation").get("eligible") == 1, f"the bill applies to {bill.get('stats')}")
    step(f"admin signed in and issued estate-wide bill {bill.get('reference')} ({BILL_AMOUNT} NGN, due {due})")

    resident_token = sign_in(client, resident_email, password)
    listing, _ = client.call("GET", f"/api/v1/clusters/{cluster}/bills/", token=resident_token)
    mine = [b for b in field(listing, "results", "bill list") if b.get("id") == bill_id]
    check(len(mine) == 1 and mine[0].get("status") == "pending", f"the resident's bills: {listing}")
    ack, _ = client.call("POST", f"/api/v1/clusters/{cluster}/bills/{bill_id}/acknowledge/", token=resident_token)
    check(ack.get("status") == "acknowledged" and ack.get("acknowledged_at"), f"acknowledgement answered {ack}")
    step("resident signed in, sees the bill as pending, acknowledged it")

    credit, _ = client.call(
        "POST",
        f"/api/v1/clusters/{cluster}/management/wallets/{resident_id}/credit/",
        token=admin_token,
        body={"amount": CREDIT_AMOUNT, "note": f"rehearsal {tag}"},
        headers={"Idempotency-Key": f"credit-{uuid.uuid4()}"},
        expect=201,
    )
    check(credit.get("amount") == CREDIT_AMOUNT, f"credit answered {credit}")
    step(f"admin credited the resident's wallet with {CREDIT_AMOUNT}")

    pay_key = f"pay-{uuid.uuid4()}"
    pay_path = f"/api/v1/clusters/{cluster}/bills/{bill_id}/pay/"
    paid, _ = client.call("POST", pay_path, token=resident_token, headers={"Idempotency-Key": pay_key}, expect=201)
    check(
        paid.get("status") == "paid" and paid.get("wallet_balance") == BALANCE_AFTER and paid.get("transaction_id"),
        f"payment answered {paid}",
    )
    replay, replay_headers = client.call(
        "POST", pay_path, token=resident_token, headers={"Idempotency-Key": pay_key}, expect=201
    )
    check(replay == paid, f"the replayed payment answered {replay}, not {paid}")
    check(replay_headers.get("Idempotent-Replayed") == "true", "the replayed payment is not marked Idempotent-Replayed")
    wallet, _ = client.call("GET", f"/api/v1/clusters/{cluster}/wallet/", token=resident_token)
    check(wallet.get("balance") == BALANCE_AFTER, f"the wallet holds {wallet} after paying")
    step(f"resident paid ({paid.get('reference')}); the same key replays it; wallet holds {BALANCE_AFTER}")

    wanted = {"PAYMENT_DUE", "PAYMENT_SUCCESSFUL"}
    deadline = time.monotonic() + args.notification_timeout
    seen: set[str] = set()
    while True:
        inbox, _ = client.call("GET", "/api/v1/notifications/?page_size=100", token=resident_token)
        seen = {
            str(item.get("event"))
            for item in field(inbox, "results", "notification list")
            if (item.get("context") or {}).get("bill_id") == bill_id
        }
        if wanted <= seen:
            break
        if time.monotonic() > deadline:
            raise SmokeFailure(
                f"after {args.notification_timeout:.0f} s the resident's inbox has {sorted(seen)} "
                f"for the bill, not {sorted(wanted)}: is a worker running?"
            )
        time.sleep(0.5)
    step(f"the resident's inbox has {', '.join(sorted(wanted))} for the bill")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--label", required=True, help="names the estate and people created by this run")
    parser.add_argument("--operator-email", required=True)
    parser.add_argument("--static-path", default="", help="a static file that must be served (200)")
    parser.add_argument("--notification-timeout", type=float, default=90.0)
    args = parser.parse_args()
    if not os.environ.get("LEVY_SMOKE_OPERATOR_PASSWORD"):
        parser.error("set LEVY_SMOKE_OPERATOR_PASSWORD to the operator's password")
    try:
        run(args)
    except SmokeFailure as failure:
        print(f"    smoke flow FAILED: {failure}", file=sys.stderr, flush=True)
        return 1
    except (urllib.error.URLError, OSError) as error:
        print(f"    smoke flow FAILED: cannot reach {args.base_url}: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
