"""What the base layout shows on every page: the person, their estates (the switcher),
the estate of this page with their role in it, and their unread notification count.
Read lazily: a page that does not render the header (an htmx fragment) reads nothing."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, cast

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from levy.estates.access import EstateAccess
from levy.estates.models import Membership
from levy.estates.permissions import EstatePermissions, Permission, Role
from levy.web import selectors

MANAGERS = "managers"  # staff who read the estate's finances
RESIDENTS = "residents"  # members who live in the estate

# The header's links for the estate pages: (label, URL name, who sees it: MANAGERS,
# RESIDENTS or those who hold a permission). A page whose URL name does not exist (yet)
# is left out; add yours here.
NAV: list[tuple[str, str, str | Permission]] = [
    ("Dashboard", "web:dashboard", MANAGERS),
    ("Bills", "web:bills", MANAGERS),
    ("Schedules", "web:schedules", MANAGERS),
    ("Members", "web:members", MANAGERS),
    ("Disputes", "web:disputes", MANAGERS),
    ("Transactions", "web:transactions", MANAGERS),
    ("My bills", "web:my-bills", RESIDENTS),
    ("Wallet", "web:wallet", RESIDENTS),
    ("Settings", "web:payment-settings", EstatePermissions.ManageProviders),
]


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    current: bool


class Layout:
    def __init__(self, request: HttpRequest):
        self.request = request
        self.user = request.user

    @cached_property
    def _header(self) -> tuple[list[Membership], int]:
        return selectors.header_reads(self.user)  # type: ignore[arg-type]

    @property
    def estates(self) -> list[Membership]:
        return self._header[0]

    @property
    def unread(self) -> int:
        return self._header[1]

    @property
    def access(self) -> EstateAccess | None:
        return getattr(self.request, "estate_access", None)

    @property
    def estate(self) -> Any:
        return self.access.cluster if self.access is not None else None

    @property
    def role_label(self) -> str:
        access = self.access
        if access is None:
            return ""
        if access.membership is None:
            return "Platform operator"
        return str(Role(access.membership.role).label)

    @property
    def is_manager(self) -> bool:
        return self.access is not None and self.access.can_read_finances()

    @property
    def nav(self) -> list[NavLink]:
        access = self.access
        if access is None:
            return []
        manager = access.can_read_finances()
        resident = access.membership is not None and access.membership.is_resident
        current = getattr(self.request.resolver_match, "view_name", "")
        links = []
        for label, name, audience in NAV:
            if audience == MANAGERS:
                visible = manager
            elif audience == RESIDENTS:
                visible = resident
            else:
                visible = access.can(cast(Permission, audience))
            if not visible:
                continue
            try:
                url = reverse(name, kwargs={"cluster_id": access.cluster.pk})
            except NoReverseMatch:
                continue
            # "web:bills" is current on "web:bills" and on the pages under it ("web:bill", "web:bill-new").
            links.append(NavLink(label, url, current.startswith(name.rstrip("s"))))
        return links

    @property
    def other_estates(self) -> list[Membership]:
        current = self.estate.pk if self.estate is not None else None
        return [m for m in self.estates if m.cluster_id != current]


def layout(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"layout": Layout(request)}
