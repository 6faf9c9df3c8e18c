"""The manager's member pages: the list (each member's bills at a glance, and the hover
card with their figures, loaded on demand), and one member (their bills, wallet and
ledger, disputes; record money received, change the role, deactivate). Every read is a
selector, every write the service the API's management endpoints call."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from levy.access import access_membership
from levy.billing.selectors import (
    DisputeFilters,
    MemberFilters,
    attach_member_summaries,
    dispute_list,
    member_bill_list,
    member_list,
)
from levy.common import ratelimit
from levy.common.errors import IdempotencyKeyReusedError, RuleViolation, ValidationError
from levy.estates.models import Membership
from levy.estates.permissions import MembersPermissions, PaymentsPermissions, Role
from levy.members.services import member_update
from levy.reports.exports import Export, members_export
from levy.wallets.models import Transaction, TransactionStatus, TransactionType
from levy.wallets.selectors import TransactionFilters, member_wallet_balance, transaction_list
from levy.wallets.services import wallet_credit
from levy.web import format
from levy.web.paging import web_page
from levy.web.views.base import EstatePage, url_if_exists
from levy.web.views.exports import ListExport
from levy.web.views.statements import statement_form

ANY = [("", "Any")]


class MemberFilterForm(forms.Form):
    """The list's filters, read from the URL (a filtered list is a link to share)."""

    search = forms.CharField(required=False, max_length=200, label="Search name or email")
    role = forms.ChoiceField(required=False, choices=[*ANY, *Role.choices])
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Active and deactivated"), ("active", "Active only"), ("deactivated", "Deactivated only")],
        label="Membership",
    )
    has_overdue = forms.BooleanField(required=False, label="Has an overdue bill")
    has_disputed = forms.BooleanField(required=False, label="Has a disputed bill")

    def filters(self) -> MemberFilters:
        data = self.cleaned_data if self.is_valid() else {}
        return MemberFilters(
            role=data.get("role") or None,
            active={"active": True, "deactivated": False}.get(data.get("status") or ""),
            search=(data.get("search") or "").strip() or None,
            has_overdue=True if data.get("has_overdue") else None,
            has_disputed=True if data.get("has_disputed") else None,
        )


def last_bill_payment(access: Any, membership: Membership) -> Transaction | None:
    """The member's latest completed bill payment in the estate (the hover card's "last
    payment"), read through the estate's ledger selector."""
    filters = TransactionFilters(
        user_id=membership.user_id, type=TransactionType.BILL_PAYMENT, status=TransactionStatus.COMPLETED
    )
    return transaction_list(access=access, filters=filters).rows.select_related("bill").first()


class MemberListPage(EstatePage):
    """The estate's members, each with their bills at a glance. Hovering or focusing a
    row asks this same page for its ``card`` fragment (``?card=<user id>``, htmx), so
    the card passes the page's own checks."""

    template_name = "web/members/list.html"
    finances = True

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if getattr(request, "htmx", False) and "card" in request.GET:
            return render(request, f"{self.template_name}#card", self.card(request.GET.get("card", "")))
        return super().get(request, *args, **kwargs)

    def card(self, user_id: str) -> dict[str, Any]:
        membership = access_membership(self.access, user_id)  # another estate's member: the 404 page
        attach_member_summaries([membership])
        return {
            "m": membership,
            "estate": self.access.cluster,
            "currency": self.access.cluster.currency,
            "last_payment": last_bill_payment(self.access, membership),
        }

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        form = MemberFilterForm(self.request.GET or None)
        page = web_page(member_list(access=self.access, filters=form.filters()), self.request)
        filtered = any(k != "after" for k in self.request.GET)
        context.update(form=form, page=page, filtered=filtered)
        context["can_add"] = self.access.can(MembersPermissions.ManageMembers)
        context["add_url"] = url_if_exists("web:member-new", cluster_id=self.access.cluster.pk)
        context["import_url"] = url_if_exists("web:members-import", cluster_id=self.access.cluster.pk)
        context["export_query"] = self.request.GET.urlencode()
        return context


class MembersExport(ListExport):
    """The member list as a CSV file, with the page's filters, every member with their
    bill summary (the hover card's figures)."""

    def export(self, request: HttpRequest) -> Export:
        return members_export(access=self.access, filters=MemberFilterForm(request.GET or None).filters())


class CreditForm(forms.Form):
    amount = forms.CharField(
        max_length=20,
        label="Amount received",
        help_text="In the estate's currency, e.g. 15000 or 15000.50.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    note = forms.CharField(
        required=False,
        max_length=2000,
        label="Note (optional)",
        help_text="How it came: cash, bank transfer and its reference…",
    )
    idempotency_key = forms.CharField(max_length=128, widget=forms.HiddenInput)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, label="Role")


BILLS_SHOWN = 10
DISPUTES_SHOWN = 10
LEDGER_PAGE = 20


def new_credit_form() -> CreditForm:
    # The key is made when the form is rendered: a double click, a resubmit after a slow
    # answer or the back button sends the same key, and the service credits once.
    return CreditForm(initial={"idempotency_key": f"web-credit-{uuid.uuid4()}"})


class MemberPage(EstatePage):
    """One member: their bills with statuses, wallet balance and ledger, disputes; for
    those whose role allows it, record money received, change the role, deactivate."""

    template_name = "web/members/detail.html"
    finances = True

    def member(self) -> Membership:
        return access_membership(self.access, self.kwargs["user_id"])

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        member = kwargs.get("member") or self.member()
        access = self.access
        bills = web_page(
            member_bill_list(access=access, member=member), self.request, size=BILLS_SHOWN, param="bills_after"
        )
        entries = transaction_list(access=access, filters=TransactionFilters(user_id=member.user_id))
        # Each entry's bill, and a deposit's card top-up (its name), in the same statement.
        rows = entries.rows.select_related("bill", "top_up")
        ledger = web_page(replace(entries, rows=rows), self.request, size=LEDGER_PAGE)
        disputes_listing = dispute_list(access=access, filters=DisputeFilters(user_id=member.user_id))
        disputes = list(
            disputes_listing.rows.select_related("bill").order_by(*disputes_listing.ordering)[:DISPUTES_SHOWN]
        )
        is_self = member.user_id == access.user.pk
        can_credit = access.can(PaymentsPermissions.ManageWallet) and member.active and not is_self
        can_manage = access.can(MembersPermissions.ManageMembers) and member.active
        context.update(
            member=member,
            bills=bills,
            ledger=ledger,
            disputes=disputes,
            balance=member_wallet_balance(access=access, membership=member),
            can_credit=can_credit,
            can_manage=can_manage,
            is_self=is_self,
            disputes_url=url_if_exists("web:disputes", cluster_id=access.cluster.pk),
            statement_form=statement_form(),
            statement_url=reverse(
                "web:member-statement", kwargs={"cluster_id": access.cluster.pk, "user_id": member.user_id}
            ),
        )
        if can_credit:
            context.setdefault("credit_form", new_credit_form())
        if can_manage:
            context.setdefault("role_form", RoleForm(initial={"role": member.role}))
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """``action=credit`` (amount, note, idempotency_key), ``action=role`` (role) or
        ``action=deactivate``."""
        action = request.POST.get("action")
        if action == "credit":
            return self.credit(request)
        if action in ("role", "deactivate"):
            return self.change(request, action)
        messages.error(request, "Choose what to do: record money received, change the role, or deactivate.")
        return HttpResponseRedirect(request.path)

    def credit(self, request: HttpRequest) -> HttpResponse:
        self.access.require(PaymentsPermissions.ManageWallet)
        member = self.member()
        form = CreditForm(request.POST)
        wait = ratelimit.check_scope(request, "credit")
        if wait is not None:
            form.is_valid()
            form.add_error(None, f"Many credits in the last minute. Try again in {math.ceil(wait)} seconds.")
        elif form.is_valid():
            data = form.cleaned_data
            try:
                tx = wallet_credit(
                    access=self.access,
                    membership=member,
                    amount=data["amount"],
                    note=data["note"],
                    idempotency_key=data["idempotency_key"],
                    origin=self.origin,
                )
            except ValidationError as exc:
                for field, errors in exc.fields.items():
                    form.add_error(field if field in ("amount", "note") else None, errors)
                if not exc.fields:
                    form.add_error(None, exc.message)
            except IdempotencyKeyReusedError:
                # This form (its key) already recorded another amount: nothing moved now.
                # The form comes back with a new key, so sending it again is a new credit.
                fresh = request.POST.copy()
                fresh["idempotency_key"] = new_credit_form().initial["idempotency_key"]
                form = CreditForm(fresh)
                form.is_valid()
                form.add_error(
                    None,
                    "This form was already sent with another amount, so nothing was recorded this time. "
                    "Check the ledger below; to record this amount too, send the form again.",
                )
            except RuleViolation as exc:
                messages.error(request, exc.message)
                return HttpResponseRedirect(request.path)
            else:
                currency = self.access.cluster.currency
                amount, balance = format.money(tx.amount, currency), format.money(tx.balance_after, currency)
                messages.success(
                    request,
                    f"Recorded {amount} received for {member.user.get_full_name()} "
                    f"(ledger reference {tx.reference}). Their wallet holds {balance}.",
                )
                return HttpResponseRedirect(request.path)
        return self.render_to_response(self.get_context_data(member=member, credit_form=form), status=400)

    def change(self, request: HttpRequest, action: str) -> HttpResponse:
        self.access.require(MembersPermissions.ManageMembers)
        member = self.member()
        name = member.user.get_full_name()
        try:
            if action == "role":
                form = RoleForm(request.POST)
                if not form.is_valid():
                    return self.render_to_response(self.get_context_data(member=member, role_form=form), status=400)
                role = form.cleaned_data["role"]
                member_update(access=self.access, membership=member, role=role, origin=self.origin)
                messages.success(request, f"{name} is now {Role(role).label}.")
            else:
                member_update(access=self.access, membership=member, active=False, origin=self.origin)
                messages.success(
                    request,
                    f"{name} is deactivated: they can no longer open this estate and new estate-wide bills "
                    "no longer apply to them. Their wallet and ledger stay.",
                )
        except RuleViolation as exc:
            messages.error(request, exc.message)
        except ValidationError as exc:
            messages.error(request, " ".join(m for errors in exc.fields.values() for m in errors) or exc.message)
        return HttpResponseRedirect(request.path)
