"""A local fake of Paystack and Flutterwave for tests and the demo.

It speaks the part of each provider's API that Levy uses, over real HTTP, so the real
adapters run against it: initialize, verify, a checkout page with a "Pay" button, the
browser's return to the callback URL, and the webhook the provider then sends, signed
as that provider signs it. Nothing reaches the internet.

Paths: ``/paystack/…`` and ``/flutterwave/…`` are the two APIs (set
``LEVY_PAYSTACK_BASE_URL=http://HOST:PORT/paystack`` and
``LEVY_FLUTTERWAVE_BASE_URL=http://HOST:PORT/flutterwave``); ``/checkout/<ref>`` is the
page a person pays on; ``/_fake/…`` is its control panel (register an account's webhook
URL and secret, change its behaviour).

It can be told to misbehave (``FakeBehaviour``): time out or answer 500 at initialize
or verify, send each webhook twice or late or not at all, report a different amount
or currency than was asked for.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from levy.payments.providers import flutterwave, paystack
from levy.payments.providers.amounts import from_major_units, major_units_text

logger = logging.getLogger("levy.payments.fake")


@dataclass
class FakeBehaviour:
    initialize: str = "ok"  # ok | timeout | error | refuse
    verify: str = "ok"  # ok | timeout | error
    webhook: str = "once"  # once | twice | late | none
    webhook_delay_seconds: float = 2.0  # for "late"
    timeout_seconds: float = 30.0  # how long a "timeout" answer hangs
    amount_delta: str = "0"  # reported amount = asked amount + delta (naira)
    currency: str = ""  # reported currency, if not the one asked for


@dataclass
class FakeAccount:
    secret_key: str
    webhook_url: str = ""
    webhook_secret: str = ""  # Flutterwave's secret hash; Paystack signs with the secret key


@dataclass
class FakeCharge:
    provider: str
    reference: str
    amount: Decimal
    currency: str
    email: str
    callback_url: str
    secret_key: str
    id: int
    status: str = "pending"  # pending | success | failed


@dataclass
class FakeProvider:
    """The state behind the server: accounts, charges and behaviour (thread-safe)."""

    public_url: str = ""
    behaviour: FakeBehaviour = field(default_factory=FakeBehaviour)
    accounts: dict[str, FakeAccount] = field(default_factory=dict)
    charges: dict[str, FakeCharge] = field(default_factory=dict)
    webhooks_sent: list[tuple[str, int]] = field(default_factory=list)
    # Called with an unknown secret key: may return the account (the demo reads Levy's
    # database, as the provider's dashboard knows each account's webhook settings).
    resolve_account: Callable[[str], FakeAccount | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1000001))

    # --- control -------------------------------------------------------------------------

    def register(self, *, secret_key: str, webhook_url: str = "", webhook_secret: str = "") -> None:
        with self.lock:
            self.accounts[secret_key] = FakeAccount(secret_key, webhook_url, webhook_secret)

    def account(self, secret_key: str) -> FakeAccount | None:
        with self.lock:
            found = self.accounts.get(secret_key)
        if found is None and self.resolve_account is not None:
            found = self.resolve_account(secret_key)
            if found is not None:
                with self.lock:
                    self.accounts[secret_key] = found
        return found

    def reset(self) -> None:
        with self.lock:
            self.behaviour = FakeBehaviour()
            self.charges.clear()
            self.webhooks_sent.clear()

    # --- what the provider reports ------------------------------------------------------------

    def reported(self, charge: FakeCharge) -> tuple[Decimal, str]:
        return charge.amount + Decimal(self.behaviour.amount_delta), self.behaviour.currency or charge.currency

    def charge_view(self, charge: FakeCharge) -> dict[str, Any]:
        amount, currency = self.reported(charge)
        if charge.provider == "paystack":
            status = {"pending": "abandoned", "success": "success", "failed": "failed"}[charge.status]
            return {
                "id": charge.id,
                "reference": charge.reference,
                "amount": int(amount * 100),
                "currency": currency,
                "status": status,
                "customer": {"email": charge.email},
            }
        status = {"pending": "pending", "success": "successful", "failed": "failed"}[charge.status]
        return {
            "id": charge.id,
            "tx_ref": charge.reference,
            "amount": int(amount) if amount == amount.to_integral_value() else str(amount),
            "currency": currency,
            "status": status,
            "customer": {"email": charge.email},
        }

    def webhook(self, reference: str) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the webhook for a charge, signed as its provider signs."""
        charge = self.charges[reference]
        account = self.account(charge.secret_key) or FakeAccount(charge.secret_key)
        view = self.charge_view(charge)
        if charge.provider == "paystack":
            body = json.dumps({"event": paystack.SUCCESS_EVENT, "data": view}).encode()
            return body, {paystack.SIGNATURE_HEADER: paystack.sign(charge.secret_key, body)}
        body = json.dumps({"event": flutterwave.SUCCESS_EVENT, "data": view}).encode()
        return body, {flutterwave.SIGNATURE_HEADER: flutterwave.sign(account.webhook_secret, body)}

    def pay(self, reference: str, *, send_webhook: bool = True) -> FakeCharge:
        """The person clicks "Pay": the charge succeeds and the webhook goes out (by the
        behaviour: once, twice, late or not at all)."""
        with self.lock:
            charge = self.charges[reference]
            charge.status = "success"
        if send_webhook and self.behaviour.webhook != "none":
            copies = 2 if self.behaviour.webhook == "twice" else 1
            delay = self.behaviour.webhook_delay_seconds if self.behaviour.webhook == "late" else 0.0
            threading.Thread(target=self._send_webhooks, args=(reference, copies, delay), daemon=True).start()
        return charge

    def _send_webhooks(self, reference: str, copies: int, delay: float) -> None:
        time.sleep(delay)
        charge = self.charges[reference]
        account = self.account(charge.secret_key)
        if account is None or not account.webhook_url:
            logger.warning("fake provider: no webhook URL for the account of %s", reference)
            return
        body, headers = self.webhook(reference)
        for _ in range(copies):
            request = urllib.request.Request(  # noqa: S310 - a local URL registered by the test or demo
                account.webhook_url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
            )
            try:
                with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                status = 0
            with self.lock:
                self.webhooks_sent.append((reference, status))

    def return_url(self, charge: FakeCharge) -> str:
        if charge.provider == "paystack":
            query = {"trxref": charge.reference, "reference": charge.reference}
        else:
            query = {"status": "successful", "tx_ref": charge.reference, "transaction_id": str(charge.id)}
        separator = "&" if "?" in charge.callback_url else "?"
        return f"{charge.callback_url}{separator}{urllib.parse.urlencode(query)}"


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeProvider/1"
    fake: FakeProvider

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake provider: " + format, *args)

    # --- plumbing ------------------------------------------------------------------------------

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        try:
            value = json.loads(raw or b"{}", parse_float=Decimal)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _token(self) -> str:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else ""

    def _misbehave(self, mode: str) -> bool:
        if mode == "timeout":
            time.sleep(self.fake.behaviour.timeout_seconds)
            self._send(504, {"status": False, "message": "timeout"})
            return True
        if mode == "error":
            self._send(500, {"status": False, "message": "internal error"})
            return True
        return False

    # --- routes --------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        params = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
        parts = [p for p in path.split("/") if p]
        fake = self.fake
        if parts[:3] == ["paystack", "transaction", "verify"] and len(parts) == 4:
            if self._misbehave(fake.behaviour.verify):
                return
            charge = fake.charges.get(urllib.parse.unquote(parts[3]))
            if charge is None or charge.provider != "paystack" or charge.secret_key != self._token():
                self._send(400, {"status": False, "message": "Transaction reference not found"})
                return
            self._send(200, {"status": True, "message": "Verification successful", "data": fake.charge_view(charge)})
            return
        if parts[:3] == ["flutterwave", "v3", "transactions"]:
            if self._misbehave(fake.behaviour.verify):
                return
            found: FakeCharge | None = None
            if len(parts) == 4 and parts[3] == "verify_by_reference":
                found = fake.charges.get(params.get("tx_ref", ""))
            elif len(parts) == 5 and parts[4] == "verify":
                found = next((c for c in list(fake.charges.values()) if str(c.id) == parts[3]), None)
            if found is None or found.provider != "flutterwave" or found.secret_key != self._token():
                self._send(400, {"status": "error", "message": "No transaction was found for this id", "data": None})
                return
            self._send(
                200,
                {"status": "success", "message": "Transaction fetched successfully", "data": fake.charge_view(found)},
            )
            return
        if parts[:1] == ["checkout"] and len(parts) == 2:
            charge = fake.charges.get(urllib.parse.unquote(parts[1]))
            if charge is None:
                self._send(404, b"<h1>Unknown payment</h1>", "text/html; charset=utf-8")
                return
            self._send(200, _checkout_page(charge).encode(), "text/html; charset=utf-8")
            return
        if parts == ["_fake", "state"]:
            with fake.lock:
                state = {
                    "behaviour": asdict(fake.behaviour),
                    "charges": {r: c.status for r, c in fake.charges.items()},
                    "webhooks_sent": fake.webhooks_sent,
                }
            self._send(200, state)
            return
        self._send(404, {"status": False, "message": "not found"})

    def do_POST(self) -> None:
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        fake = self.fake
        body = self._body()
        if parts == ["paystack", "transaction", "initialize"] or parts == ["flutterwave", "v3", "payments"]:
            provider = parts[0]
            if self._misbehave(fake.behaviour.initialize):
                return
            if fake.behaviour.initialize == "refuse" or not self._token():
                self._send(400, {"status": False if provider == "paystack" else "error", "message": "Invalid key"})
                return
            self._initialize(provider, body)
            return
        if parts[:1] == ["checkout"] and len(parts) == 3 and parts[2] in ("pay", "cancel"):
            reference = urllib.parse.unquote(parts[1])
            charge = fake.charges.get(reference)
            if charge is None:
                self._send(404, b"<h1>Unknown payment</h1>", "text/html; charset=utf-8")
                return
            if parts[2] == "pay":
                fake.pay(reference)
            else:
                charge.status = "failed"
            self.send_response(303)
            self.send_header("Location", fake.return_url(charge))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts == ["_fake", "accounts"]:
            fake.register(
                secret_key=str(body.get("secret_key", "")),
                webhook_url=str(body.get("webhook_url", "")),
                webhook_secret=str(body.get("webhook_secret", "")),
            )
            self._send(200, {"ok": True})
            return
        if parts == ["_fake", "behaviour"]:
            with fake.lock:
                for key, value in body.items():
                    if hasattr(fake.behaviour, key):
                        setattr(fake.behaviour, key, type(getattr(fake.behaviour, key))(value))
            self._send(200, asdict(fake.behaviour))
            return
        if parts == ["_fake", "reset"]:
            fake.reset()
            self._send(200, {"ok": True})
            return
        self._send(404, {"status": False, "message": "not found"})

    def _initialize(self, provider: str, body: dict[str, Any]) -> None:
        fake = self.fake
        if provider == "paystack":
            reference, kobo = str(body.get("reference", "")), str(body.get("amount", ""))
            amount = Decimal(kobo) / 100 if kobo.isdigit() else None
            callback = str(body.get("callback_url", ""))
            email = str(body.get("email", ""))
        else:
            reference, amount = str(body.get("tx_ref", "")), from_major_units(body.get("amount"))
            callback = str(body.get("redirect_url", ""))
            customer = body.get("customer")
            email = str(customer.get("email", "")) if isinstance(customer, dict) else ""
        if not reference or amount is None or amount <= 0:
            self._send(400, {"status": False if provider == "paystack" else "error", "message": "Invalid request"})
            return
        with fake.lock:
            if reference in fake.charges:
                self._send(
                    400, {"status": False if provider == "paystack" else "error", "message": "Duplicate reference"}
                )
                return
            charge = FakeCharge(
                provider=provider,
                reference=reference,
                amount=amount.quantize(Decimal("0.01")),
                currency=str(body.get("currency") or "NGN"),
                email=email,
                callback_url=callback,
                secret_key=self._token(),
                id=next(fake._ids),
            )
            fake.charges[reference] = charge
        url = f"{fake.public_url.rstrip('/')}/checkout/{urllib.parse.quote(reference, safe='')}"
        if provider == "paystack":
            access_code = hashlib.sha256(reference.encode()).hexdigest()[:15]
            self._send(
                200,
                {
                    "status": True,
                    "message": "Authorization URL created",
                    "data": {"authorization_url": url, "access_code": access_code, "reference": reference},
                },
            )
        else:
            self._send(200, {"status": "success", "message": "Hosted Link", "data": {"link": url}})


def _checkout_page(charge: FakeCharge) -> str:
    name = "Paystack" if charge.provider == "paystack" else "Flutterwave"
    ref = html.escape(urllib.parse.quote(charge.reference, safe=""))
    amount = html.escape(f"{charge.currency} {major_units_text(charge.amount)}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name} (fake) checkout</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}
button{{font-size:1.1rem;padding:.6rem 1.4rem}}</style>
</head><body>
<h1>{name} checkout <small>(local fake)</small></h1>
<p>Pay <strong>{amount}</strong> to the estate's account.</p>
<p>Reference <code>{html.escape(charge.reference)}</code> · {html.escape(charge.email)}</p>
<p>Status: {html.escape(charge.status)}</p>
<form method="post" action="/checkout/{ref}/pay"><button type="submit">Pay</button></form>
<form method="post" action="/checkout/{ref}/cancel"><button type="submit">Cancel</button></form>
</body></html>"""


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: fifty webhooks verified at once (the
    # concurrency tests, a load test) had connections refused, which a real provider
    # does not do.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (the adapters' timeout tests) is expected here.
        logger.debug("fake provider: connection from %s ended early", client_address)


class FakeProviderServer:
    """The fake on a real port, served by threads (start/stop, or as a context manager)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, public_url: str = ""):
        self.fake = FakeProvider()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self.httpd = _QuietServer((host, port), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.fake.public_url = public_url or self.url
        self._thread: threading.Thread | None = None

    @property
    def paystack_url(self) -> str:
        return f"{self.url}/paystack"

    @property
    def flutterwave_url(self) -> str:
        return f"{self.url}/flutterwave"

    def start(self) -> FakeProviderServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
