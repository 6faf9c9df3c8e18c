"""Estate isolation of the pages, generated from the URL configuration.

Every page under ``/estates/<str:cluster_id>/`` is requested, with each method its view
implements,

- with its path parameters naming real objects of estate A, by someone who is not an
  active member of A (an admin of estate B, a former member of A), and
- with estate B's ``cluster_id`` but A's object ids, by B's admin and by someone in
  both estates,

and must answer the 404 page and leave the database as it was. ``RECIPES`` says how to
fill each page's parameters: a page without a recipe fails
``test_every_estate_page_has_a_recipe`` (add one when you add a page), as does a recipe
for a page that no longer exists. Pages outside ``/estates/`` must be listed in
``PERSONAL_PAGES`` (they show only the signed-in person's own things).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver

from levy.estates.models import Membership
from tests.api.test_isolation import (
    BILL,
    CLUSTER,
    DISPUTE,
    MEMBER,
    MEMBER_IMPORT,
    PARAM,
    RECEIPT_TX,
    SCHEDULE,
    World,
    build_world,
    db_snapshot,
)
from tests.web.conftest import browser_as

pytestmark = pytest.mark.django_db

HTTP_METHODS = ("get", "post")
ESTATE_PREFIX = "estates/<str:cluster_id>/"


@dataclass(frozen=True)
class Page:
    name: str
    route: str
    params: tuple[str, ...]
    methods: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    params: dict[str, str]
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Who in estate A opens the page in ``test_the_estates_own_staff_open_every_page``:
    # its admin, or (the resident pages) a resident the objects belong to.
    opener: str = "admin"
    query: Callable[[World], str] | None = None  # a query string the page reads


RECIPES: dict[str, Recipe] = {
    "web:estate": Recipe({"cluster_id": CLUSTER}),
    "web:dashboard": Recipe({"cluster_id": CLUSTER}),
    "web:bills": Recipe({"cluster_id": CLUSTER}),
    "web:bill-new": Recipe(
        {"cluster_id": CLUSTER},
        {
            "post": {
                "title": "Rogue levy",
                "category": "other",
                "amount": "999.00",
                "due_date": "2030-01-01",
                "target": "estate",
                "late_fee_kind": "fixed",
                "late_fee_value": "500",
                "late_fee_grace_days": "3",
                "idempotency_key": "isolation-bill",
            }
        },
    ),
    "web:bill": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}, {"post": {"action": "cancel", "reason": "Because"}}),
    "web:my-bills": Recipe({"cluster_id": CLUSTER}, opener="resident"),
    "web:my-bill": Recipe(
        {"cluster_id": CLUSTER, "bill_id": BILL}, {"post": {"action": "acknowledge"}}, opener="resident"
    ),
    "web:my-bill-pay": Recipe(
        {"cluster_id": CLUSTER, "bill_id": BILL}, {"post": {"idempotency_key": "isolation-pay"}}, opener="resident"
    ),
    "web:wallet-statement": Recipe({"cluster_id": CLUSTER}, opener="resident", query=lambda world: "format=pdf"),
    "web:wallet": Recipe(
        {"cluster_id": CLUSTER}, {"post": {"amount": "1000", "idempotency_key": "isolation-top-up"}}, opener="resident"
    ),
    # The dual member's pending top-up in A, by its reference.
    "web:top-up-return": Recipe(
        {"cluster_id": CLUSTER}, opener="dual", query=lambda world: f"reference={world.top_up.reference}"
    ),
    "web:bills-export": Recipe({"cluster_id": CLUSTER}),
    "web:bill-members-export": Recipe({"cluster_id": CLUSTER, "bill_id": BILL}),
    "web:members": Recipe({"cluster_id": CLUSTER}),
    "web:members-export": Recipe({"cluster_id": CLUSTER}),
    "web:member": Recipe(
        {"cluster_id": CLUSTER, "user_id": MEMBER},
        {"post": {"action": "credit", "amount": "5000.00", "note": "cash", "idempotency_key": "isolation-credit"}},
    ),
    "web:member-statement": Recipe({"cluster_id": CLUSTER, "user_id": MEMBER}, query=lambda world: "format=csv"),
    "web:member-new": Recipe(
        {"cluster_id": CLUSTER},
        {"post": {"name": "Rogue Member", "email": "rogue@example.test", "role": "admin", "lives_here": "no"}},
    ),
    "web:members-import": Recipe(
        {"cluster_id": CLUSTER},
        {"post": {"file": lambda: SimpleUploadedFile("m.csv", b"email,name\nrogue@example.test,Rogue\n")}},
    ),
    "web:member-import": Recipe({"cluster_id": CLUSTER, "import_id": MEMBER_IMPORT}),
    "web:disputes": Recipe({"cluster_id": CLUSTER}),
    "web:disputes-export": Recipe({"cluster_id": CLUSTER}),
    "web:dispute": Recipe(
        {"cluster_id": CLUSTER, "dispute_id": DISPUTE}, {"post": {"resolution": "upheld", "note": "Waived"}}
    ),
    "web:schedules": Recipe({"cluster_id": CLUSTER}),
    "web:schedule-new": Recipe(
        {"cluster_id": CLUSTER},
        {
            "post": {
                "title": "Rogue monthly levy",
                "category": "other",
                "amount": "999.00",
                "frequency": "monthly",
                "first_due_date": "2030-01-01",
                "issue_days_before": "14",
                "target": "estate",
                "idempotency_key": "isolation-schedule",
            }
        },
    ),
    "web:schedule": Recipe({"cluster_id": CLUSTER, "schedule_id": SCHEDULE}, {"post": {"action": "resume"}}),
    "web:payment-settings": Recipe(
        {"cluster_id": CLUSTER},
        {"post": {"provider": "paystack", "secret_key": "sk_test_intruder", "active": "on", "idempotency_key": "iso"}},
    ),
    "web:transactions": Recipe({"cluster_id": CLUSTER}),
    "web:transactions-export": Recipe({"cluster_id": CLUSTER}),
    "web:transaction": Recipe(
        {"cluster_id": CLUSTER, "transaction_id": RECEIPT_TX},
        {"post": {"reason": "Rogue refund", "idempotency_key": "isolation-refund"}},
    ),
}

# Pages that are not estate-scoped: each shows or changes only the signed-in person's own
# things (or nothing before sign-in).
PERSONAL_PAGES = {
    "web:home",
    "web:sign-in",
    "web:sign-out",
    "web:password-forgot",
    "web:password-sent",
    "web:set-password",
    "web:notifications",
    "web:notification-open",
}


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "", ns: str = "") -> Any:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            inner = f"{ns}{pattern.namespace}:" if pattern.namespace else ns
            yield from _walk(pattern.url_patterns, route, inner)
        else:
            yield route, f"{ns}{pattern.name}" if pattern.name else "", pattern


def web_pages() -> tuple[list[Page], list[str]]:
    estate_pages, others = [], []
    for route, name, pattern in _walk(get_resolver().url_patterns):
        if not name.startswith("web:"):
            continue
        if not route.startswith(ESTATE_PREFIX):
            others.append(name)
            continue
        view = getattr(pattern.callback, "view_class", None)
        methods = tuple(m for m in HTTP_METHODS if view is not None and hasattr(view, m))
        estate_pages.append(Page(name, route, tuple(PARAM.findall(route)), methods))
    return estate_pages, others


PAGES, OTHER_PAGES = web_pages()
CASES = [pytest.param(p, m, id=f"{p.name}:{m.upper()}") for p in PAGES for m in p.methods]
OBJECT_CASES = [c for c in CASES if set(c.values[0].params) - {"cluster_id"}]


def test_every_estate_page_has_a_recipe() -> None:
    from levy.web.views.base import EstatePage

    assert PAGES, "no estate page found: has estates/<str:cluster_id>/ been renamed?"
    names = [p.name for p in PAGES]
    missing = sorted(set(names) - set(RECIPES))
    assert not missing, f"estate pages without an isolation recipe in RECIPES: {missing}"
    stale = sorted(set(RECIPES) - set(names))
    assert not stale, f"RECIPES names pages that no longer exist: {stale}"
    for page in PAGES:
        assert set(page.params) == set(RECIPES[page.name].params), (page.name, page.params)
        assert page.methods, f"{page.name}: not a class-based view with get/post"
    unlisted = sorted(set(OTHER_PAGES) - PERSONAL_PAGES)
    assert not unlisted, f"pages outside /estates/<id>/ must be personal (PERSONAL_PAGES): {unlisted}"
    for _route, name, pattern in _walk(get_resolver().url_patterns):
        if name in RECIPES:
            assert issubclass(pattern.callback.view_class, EstatePage), f"{name} is not an EstatePage"


def fill(page: Page, world: World, cluster: Any) -> str:
    recipe = RECIPES[page.name]
    path = "/" + PARAM.sub(lambda m: str(world.ids(recipe.params[m.group(1)], cluster)), page.route)
    return f"{path}?{recipe.query(world)}" if recipe.query is not None else path


def assert_404_page_and_unchanged(who: Any, page: Page, method: str, path: str) -> None:
    browser = browser_as(who)
    before = db_snapshot()
    if method == "get":
        response = browser.get(path)
    else:
        body = {k: v() if callable(v) else v for k, v in RECIPES[page.name].bodies.get(method, {}).items()}
        response = browser.post(path, body)
    assert response.status_code == 404, (method.upper(), path, response.status_code)
    assert b"We can" in response.content, "not the 404 page"
    assert db_snapshot() == before, f"{method.upper()} {path} changed the database"


@pytest.mark.parametrize("caller", ["admin_of_other_estate", "former_member"])
@pytest.mark.parametrize(("page", "method"), CASES)
def test_outsider_gets_the_404_page(page: Page, method: str, caller: str) -> None:
    world = build_world()
    who = {"admin_of_other_estate": world.b.admin, "former_member": world.former}[caller]
    assert not Membership.objects.filter(cluster=world.a.cluster, user=who.user, active=True).exists()
    assert_404_page_and_unchanged(who, page, method, fill(page, world, world.a.cluster))


@pytest.mark.parametrize("caller", ["admin_of_other_estate", "member_of_both_estates"])
@pytest.mark.parametrize(("page", "method"), OBJECT_CASES)
def test_other_estates_objects_under_own_estate_get_the_404_page(page: Page, method: str, caller: str) -> None:
    world = build_world()
    who = {"admin_of_other_estate": world.b.admin, "member_of_both_estates": world.dual}[caller]
    assert_404_page_and_unchanged(who, page, method, fill(page, world, world.b.cluster))


def test_the_estates_own_staff_open_every_page() -> None:
    """The 404s above are about the estate: A's admin gets each page of A, and a
    resident of A each resident page."""
    world = build_world()
    openers = {"admin": world.a.admin, "resident": world.a.residents[0], "dual": world.a.residents[2]}
    for page in PAGES:
        path = fill(page, world, world.a.cluster)
        response = browser_as(openers[RECIPES[page.name].opener]).get(path)
        assert response.status_code in (200, 302), (page.name, response.status_code)
