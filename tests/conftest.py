from __future__ import annotations

import datetime
import itertools
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import TestCase

from config.celery import app as celery_app
from levy.billing.models import Bill
from levy.billing.schedules import ScheduleInput
from levy.billing.selectors import estate_today
from levy.billing.services import bill_create_cluster_wide, bill_create_user_specific
from levy.billing.validation import BillInput
from levy.estates.access import EstateAccess, access_cluster
from levy.estates.models import Cluster, Membership
from levy.estates.permissions import Role
from levy.payments.fake import FakeProviderServer
from levy.wallets.models import Transaction
from levy.wallets.services import wallet_credit
from tests.factories import ClusterFactory, MembershipFactory

_keys = itertools.count()


def new_key(prefix: str = "key") -> str:
    return f"{prefix}-{next(_keys)}"


@pytest.fixture(autouse=True)
def _tasks_in_process() -> Iterator[None]:
    """Unit tests run Celery tasks in-process (after the commit that scheduled them);
    the worker tests in tests/notifications/test_worker.py start a real worker."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(scope="session")
def fake_provider_server() -> Iterator[FakeProviderServer]:
    """One local fake of Paystack and Flutterwave for the whole run (levy/payments/fake.py)."""
    server = FakeProviderServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _providers_are_local_fakes(fake_provider_server: FakeProviderServer, settings: Any) -> None:
    """No test talks to a real provider: the adapters' base URLs point at the fake, with
    short timeouts so that a "timeout" test takes a second, not a minute."""
    settings.LEVY_PAYSTACK_BASE_URL = fake_provider_server.paystack_url
    settings.LEVY_FLUTTERWAVE_BASE_URL = fake_provider_server.flutterwave_url
    settings.LEVY_PROVIDER_TIMEOUT_SECONDS = 1.0
    settings.LEVY_PROVIDER_RETRIES = 1
    fake_provider_server.fake.reset()


@pytest.fixture(autouse=True)
def _no_wake_flag_left_over(request: pytest.FixtureRequest) -> Iterator[None]:
    """The flags that say a batch delivery task is on its way live in the cache, which
    outlives a test: a flag left by one test (a worker stopped before it cleared it)
    would keep the next test's commits from waking its worker. Each test that uses a
    real broker starts and ends without them."""
    if "real_broker" not in request.fixturenames:
        yield
        return
    from django.core.cache import cache

    from levy.notifications.events import Priority
    from levy.notifications.services import wake_key

    keys = [wake_key(priority) for priority in Priority.values]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def committed() -> Any:
    """Run what the enclosed code schedules with ``transaction.on_commit`` as if its
    transaction had committed — as a request does when it returns. Tests run inside
    one rolled-back transaction, where commit hooks otherwise never fire."""
    return TestCase.captureOnCommitCallbacks(execute=True)


@pytest.fixture(autouse=True)
def _require_postgres(request: pytest.FixtureRequest) -> None:
    if "django_db_setup" in request.fixturenames or request.node.get_closest_marker("django_db"):
        assert connection.vendor == "postgresql", (
            "The test suite runs on PostgreSQL: set DATABASE_URL (see README, `make test`)."
        )


def access(membership: Membership) -> EstateAccess:
    return access_cluster(membership.user, membership.cluster_id)


def bill_input(**overrides: Any) -> BillInput:
    values: dict[str, Any] = {
        "title": "Service charge November",
        "description": "Monthly service charge",
        "category": "service_charge",
        "amount": Decimal("15000.00"),
        "due_date": estate_today() + datetime.timedelta(days=14),
        "allow_payment_after_due": False,
    }
    values.update(overrides)
    return BillInput(**values)


def schedule_input(**overrides: Any) -> ScheduleInput:
    """A monthly service charge, first due in 30 days, issued 14 days before each due date."""
    values: dict[str, Any] = {
        "title": "Service charge",
        "description": "Monthly service charge",
        "category": "service_charge",
        "amount": Decimal("15000.00"),
        "allow_payment_after_due": False,
        "frequency": "monthly",
        "first_due_date": estate_today() + datetime.timedelta(days=30),
        "issue_days_before": 14,
    }
    values.update(overrides)
    return ScheduleInput(**values)


@dataclass
class Estate:
    cluster: Cluster
    admin: Membership
    treasurer: Membership
    auditor: Membership
    residents: list[Membership]

    def add(self, role: str = Role.RESIDENT, **kwargs: Any) -> Membership:
        return MembershipFactory(cluster=self.cluster, role=role, **kwargs)

    def wide_bill(self, **overrides: Any) -> Bill:
        with committed():
            return bill_create_cluster_wide(access=access(self.admin), data=bill_input(**overrides))

    def user_bill(self, member: Membership, **overrides: Any) -> Bill:
        with committed():
            return bill_create_user_specific(
                access=access(self.admin), user_id=member.user_id, data=bill_input(**overrides)
            )

    def fund(self, member: Membership, amount: str | Decimal) -> Transaction:
        return wallet_credit(
            access=access(self.treasurer),
            membership=member,
            amount=Decimal(amount),
            note="cash",
            idempotency_key=new_key("fund"),
        )


def make_estate(residents: int = 3, **cluster_kwargs: Any) -> Estate:
    cluster = ClusterFactory(**cluster_kwargs)
    return Estate(
        cluster=cluster,
        admin=MembershipFactory(cluster=cluster, role=Role.ADMIN),
        treasurer=MembershipFactory(cluster=cluster, role=Role.TREASURER),
        auditor=MembershipFactory(cluster=cluster, role=Role.AUDITOR),
        residents=[MembershipFactory(cluster=cluster) for _ in range(residents)],
    )


@pytest.fixture
def estate(db: None) -> Estate:
    return make_estate()


@pytest.fixture
def other_estate(db: None) -> Estate:
    return make_estate()


def free_port(ports: range) -> int:
    """A port of ``ports`` (a test file's reserved range) that nothing listens on now."""
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports}")
