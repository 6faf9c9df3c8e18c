"""Bill day: an estate-wide bill lands and the residents pay it within minutes.

At the start of the test the estate admin signs in and creates one estate-wide bill.
Then:

- ``ResidentUser``: each simulated user works through a queue of distinct resident
  accounts. For each one it signs in once (JWT), opens the bill list (the new bill
  must be on the first page), opens the bill (status ``pending``), acknowledges it and
  pays it from the wallet with an ``Idempotency-Key``, pausing between steps as a
  person would. Then it takes the next resident. Their wallets must hold the bill's
  amount; ``python -m loadtest.billday fund`` tops them up before the run.
- ``StaffUser``: the estate's staff (admin, treasurer, auditor) sign in once and
  refresh the dashboard and the bill's per-member list now and then.

Every request sends ``X-Forwarded-Proto: https``, as the TLS proxy in front of a
production server does. Requests are named by operation (``resident: pay``) so the
statistics group per operation, and any status other than the expected one counts as
a failure. ``scripts/loadtest.sh`` (``make loadtest``) prepares the data, starts the
server and a worker, and runs this file; the settings below come from the environment.
"""

from __future__ import annotations

import csv
import datetime
import itertools
import logging
import math
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import FastHttpSession
from locust.exception import StopUser

logger = logging.getLogger("billday")


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, str(default)))


DOMAIN = os.environ.get("LOADTEST_EMAIL_DOMAIN", "estate0.bench.levy.test")
PASSWORD = os.environ.get("LOADTEST_PASSWORD", "levy-bench-password")
FIRST_RESIDENT = _env_int("LOADTEST_FIRST_RESIDENT", 1)
LAST_RESIDENT = _env_int("LOADTEST_LAST_RESIDENT", 5000)
BILL_AMOUNT = os.environ.get("LOADTEST_BILL_AMOUNT", "5000.00")
BILL_TITLE = os.environ.get("LOADTEST_BILL_TITLE", "Bill day levy")
STAFF_USERS = _env_int("LOADTEST_STAFF_USERS", 2)
THINK_MIN = _env_float("LOADTEST_THINK_MIN", 2.0)
THINK_MAX = _env_float("LOADTEST_THINK_MAX", 8.0)
STAFF_EVERY_MIN = _env_float("LOADTEST_STAFF_EVERY_MIN", 5.0)
STAFF_EVERY_MAX = _env_float("LOADTEST_STAFF_EVERY_MAX", 10.0)
# Staff sessions outlive an access token in long runs: refresh a minute before expiry.
TOKEN_MINUTES = _env_int("JWT_ACCESS_MINUTES", 15)
STAFF_ACCOUNTS = ["admin", "treasurer", "auditor"]

PROXY_HEADERS = {"X-Forwarded-Proto": "https"}
API = "/api/v1"


@dataclass
class BillDay:
    """What the test start set up, shared by every simulated user."""

    cluster_id: str = ""
    bill_id: str = ""
    ready: bool = False
    csv_prefix: str = ""
    # Per request name: the web process's own time (Server-Timing "app"), in ms.
    server_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


STATE = BillDay()
_residents = itertools.count(FIRST_RESIDENT)
_staff = itertools.cycle(STAFF_ACCOUNTS)


def email_of(account: str) -> str:
    return f"{account}@{DOMAIN}"


def error_code(response: Any) -> str:
    """The API's stable error code, if the body has one."""
    try:
        return str(response.json()["error"]["code"])
    except Exception:
        return "no error code"


def app_ms(response: Any) -> float | None:
    """The ``app`` duration of the ``Server-Timing`` header (``LEVY_SERVER_TIMING=1``)."""
    header = (response.headers or {}).get("Server-Timing") or ""
    for metric in header.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        if name == "app":
            for param in params:
                if param.startswith("dur="):
                    return float(param[4:])
    return None


def expect(response: Any, status: int, check: Callable[[Any], str | None] | None = None) -> Any:
    """Mark ``response`` (opened with ``catch_response=True``) as a success only if it
    has ``status`` and a JSON body that passes ``check``; return the body, or None."""
    server = app_ms(response) if response.status_code else None
    if server is not None:
        STATE.server_ms[response.request_meta["name"]].append(server)
    if response.status_code != status:
        response.failure(f"HTTP {response.status_code}, expected {status} ({error_code(response)})")
        return None
    try:
        body = response.json()
    except Exception:
        response.failure(f"HTTP {status} without a JSON body")
        return None
    problem = check(body) if check is not None else None
    if problem:
        response.failure(problem)
        return None
    response.success()
    return body


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {**PROXY_HEADERS, "Authorization": f"Bearer {token}", **extra}


def sign_in(client: Any, account: str, name: str) -> dict[str, str] | None:
    """POST /auth/token/: the access and refresh tokens, or None (a failure is recorded)."""
    with client.post(
        f"{API}/auth/token/",
        json={"email": email_of(account), "password": PASSWORD},
        headers=PROXY_HEADERS,
        name=name,
        catch_response=True,
        allow_redirects=False,
    ) as response:
        body = expect(response, 200, lambda b: None if b.get("access") else "no access token")
    return body


def has_status(expected: str) -> Callable[[Any], str | None]:
    return lambda body: None if body.get("status") == expected else f"status {body.get('status')!r}, not {expected!r}"


@events.test_start.add_listener
def create_the_bill(environment: Any, **_kwargs: Any) -> None:
    """The admin signs in, finds the estate and creates the estate-wide bill."""
    STATE.csv_prefix = getattr(environment.parsed_options, "csv_prefix", None) or ""
    session = FastHttpSession(environment.host, request_event=environment.events.request, user=None)
    tokens = sign_in(session, "admin", "admin: sign in")
    if tokens is not None:
        with session.get(
            f"{API}/clusters/",
            headers=bearer(tokens["access"]),
            name="admin: estates",
            catch_response=True,
            allow_redirects=False,
        ) as response:
            body = expect(response, 200, lambda b: None if b.get("results") else "the admin has no estate")
        if body is not None:
            STATE.cluster_id = body["results"][0]["id"]
            due = datetime.date.today() + datetime.timedelta(days=30)
            with session.post(
                f"{API}/clusters/{STATE.cluster_id}/management/bills/",
                json={
                    "title": BILL_TITLE,
                    "description": "Estate-wide levy for the load test",
                    "category": "service_charge",
                    "amount": BILL_AMOUNT,
                    "due_date": due.isoformat(),
                },
                headers=bearer(tokens["access"], **{"Idempotency-Key": str(uuid.uuid4())}),
                name="admin: create bill",
                catch_response=True,
                allow_redirects=False,
            ) as response:
                bill = expect(response, 201, lambda b: None if b.get("is_cluster_wide") else "not estate-wide")
            if bill is not None:
                STATE.bill_id = bill["id"]
                STATE.ready = True
                logger.info(
                    "bill %s (%s %s) created for %s residents",
                    bill["reference"],
                    bill["amount"],
                    bill["currency"],
                    bill["stats"]["eligible"],
                )
    if not STATE.ready:
        logger.error("the bill could not be created: stopping the test")
        gevent.spawn_later(0, environment.runner.quit)


@events.quitting.add_listener
def final_csv(environment: Any, **_kwargs: Any) -> None:
    """Locust rewrites its ``--csv`` files once a second and not at exit, so requests
    of the last second (and of the graceful stop) could be missing. Every user has
    stopped by now: give the writer one more pass so the files hold the final numbers."""
    if getattr(environment.parsed_options, "csv_prefix", None):
        gevent.sleep(1.5)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[max(0, math.ceil(share * len(values)) - 1)]


@events.quit.add_listener
def server_time_report(**_kwargs: Any) -> None:
    """After Locust's summary: each operation's time inside the web process, from the
    Server-Timing header. The difference from Locust's times is the wait for a free
    gunicorn worker (and the network); also written to <csv prefix>_server_timing.csv."""
    if not STATE.server_ms:
        return
    rows = []
    for name in sorted(STATE.server_ms):
        values = sorted(STATE.server_ms[name])
        rows.append([name, len(values), *(round(percentile(values, q)) for q in (0.5, 0.95, 0.99, 1.0))])
    header = ["Name", "Responses", "50%", "95%", "99%", "100%"]
    print("\nServer time per operation (Server-Timing app, ms: the web process's own time, without the wait")
    print("for a free worker)")
    print(f"{header[0]:<28}{header[1]:>10}" + "".join(f"{h:>8}" for h in header[2:]))
    for row in rows:
        print(f"{row[0]:<28}{row[1]:>10}" + "".join(f"{v:>8}" for v in row[2:]))
    if STATE.csv_prefix:
        with open(f"{STATE.csv_prefix}_server_timing.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])


class ResidentUser(FastHttpUser):
    """One resident after another: sign in, bill list, the bill, acknowledge, pay."""

    wait_time = between(THINK_MIN, THINK_MAX)
    default_headers = PROXY_HEADERS

    @task
    def pay_the_bill(self) -> None:
        if not STATE.ready:
            raise StopUser()
        number = next(_residents)
        if number > LAST_RESIDENT:
            logger.warning("every resident account up to resident%d has been used", LAST_RESIDENT)
            raise StopUser()
        tokens = sign_in(self.client, f"resident{number}", "resident: sign in")
        if tokens is None:
            return
        headers = bearer(tokens["access"])
        estate = f"{API}/clusters/{STATE.cluster_id}"
        bill_url = f"{estate}/bills/{STATE.bill_id}/"

        def lists_the_bill(body: Any) -> str | None:
            ids = [row.get("id") for row in body.get("results", [])]
            return None if STATE.bill_id in ids else "the new bill is not on the first page"

        self.wait()
        with self.client.get(
            f"{estate}/bills/",
            headers=headers,
            name="resident: bill list",
            catch_response=True,
            allow_redirects=False,
        ) as response:
            if expect(response, 200, lists_the_bill) is None:
                return
        self.wait()
        with self.client.get(
            bill_url, headers=headers, name="resident: bill", catch_response=True, allow_redirects=False
        ) as response:
            if expect(response, 200, has_status("pending")) is None:
                return
        self.wait()
        with self.client.post(
            f"{bill_url}acknowledge/",
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            name="resident: acknowledge",
            catch_response=True,
            allow_redirects=False,
        ) as response:
            if expect(response, 200, has_status("acknowledged")) is None:
                return
        self.wait()
        with self.client.post(
            f"{bill_url}pay/",
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            name="resident: pay",
            catch_response=True,
            allow_redirects=False,
        ) as response:
            expect(response, 201, has_status("paid"))


class StaffUser(FastHttpUser):
    """Estate staff watching the money come in."""

    fixed_count = STAFF_USERS
    wait_time = between(STAFF_EVERY_MIN, STAFF_EVERY_MAX)
    default_headers = PROXY_HEADERS

    access = ""
    refresh = ""
    signed_in_at = 0.0

    def on_start(self) -> None:
        if STATE.ready:
            tokens = sign_in(self.client, next(_staff), "admin: sign in")
            if tokens is not None:
                self.access, self.refresh = tokens["access"], tokens["refresh"]
                self.signed_in_at = time.monotonic()

    def headers(self) -> dict[str, str]:
        if not self.access:
            raise StopUser()  # no bill, or the sign-in failed (recorded)
        if time.monotonic() - self.signed_in_at > max(TOKEN_MINUTES - 1, 1) * 60:
            with self.client.post(
                f"{API}/auth/token/refresh/",
                json={"refresh": self.refresh},
                headers=PROXY_HEADERS,
                name="admin: refresh token",
                catch_response=True,
                allow_redirects=False,
            ) as response:
                body = expect(response, 200, lambda b: None if b.get("access") else "no access token")
            if body is not None:
                self.access = body["access"]
                self.signed_in_at = time.monotonic()
        return bearer(self.access)

    @task
    def dashboard(self) -> None:
        with self.client.get(
            f"{API}/clusters/{STATE.cluster_id}/management/dashboard/",
            headers=self.headers(),
            name="admin: dashboard",
            catch_response=True,
            allow_redirects=False,
        ) as response:
            expect(response, 200, lambda b: None if "collected_amount" in b else "no collected_amount")

    @task
    def bill_members(self) -> None:
        with self.client.get(
            f"{API}/clusters/{STATE.cluster_id}/management/bills/{STATE.bill_id}/members/",
            headers=self.headers(),
            name="admin: bill members",
            catch_response=True,
            allow_redirects=False,
        ) as response:
            expect(response, 200, lambda b: None if b.get("results") else "no members listed")
