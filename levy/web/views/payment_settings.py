"""The estate admin's settings: the estate's payment provider (Paystack or Flutterwave),
through which residents top up their wallets by card. Reads through
``provider_accounts``, writes through ``provider_account_save`` — the API's selector and
service (decisions 0019 and 0020): secrets are sealed before they are stored, shown back
only as hints, and every change is audited. Only those who hold
``EstatePermissions.ManageProviders`` (the estate admin) open the page."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.crypto import salted_hmac

from levy.common.errors import ValidationError
from levy.estates.permissions import EstatePermissions
from levy.payments.accounts import provider_account_save, webhook_url
from levy.payments.models import Provider, ProviderAccount
from levy.payments.selectors import provider_accounts
from levy.web.once import submit_once
from levy.web.views.base import EstatePage

# The write-only fields, and how a sentence names them.
SECRET_FIELDS = {"secret_key": "secret key", "webhook_secret": "secret hash"}


def _secret_input() -> forms.PasswordInput:
    # Never drawn back into the page, not even after a refused submit.
    return forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"})


class ProviderForm(forms.Form):
    provider = forms.ChoiceField(
        choices=Provider.choices,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose Paystack or Flutterwave.",
            "invalid_choice": "Choose Paystack or Flutterwave.",
        },
    )
    public_key = forms.CharField(
        required=False,
        max_length=200,
        label="Public key",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    secret_key = forms.CharField(required=False, max_length=200, label="Secret key", widget=_secret_input())
    webhook_secret = forms.CharField(
        required=False, max_length=200, label="Secret hash (Flutterwave only)", widget=_secret_input()
    )
    active = forms.BooleanField(required=False, initial=True, label="Residents top up through this provider")
    # Made when the form is drawn: a double click saves (and audits) once (levy.web.once).
    idempotency_key = forms.CharField(max_length=128, widget=forms.HiddenInput)

    def __init__(self, *args: Any, accounts: list[ProviderAccount], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", f"web-provider-{uuid.uuid4()}")
            chosen = next((a for a in accounts if a.active), accounts[0] if accounts else None)
            self.initial.setdefault("provider", chosen.provider if chosen else Provider.PAYSTACK)
        saved = {a.provider: a for a in accounts}
        public = "; ".join(f"{a.get_provider_display()}: {a.public_key}" for a in accounts if a.public_key)
        self.fields["public_key"].help_text = "Optional. Leave blank to keep the saved one" + (
            f" ({public})." if public else "."
        )
        keys = "; ".join(f"{a.get_provider_display()}: {a.secret_key_hint}" for a in accounts)
        self.fields["secret_key"].help_text = "From the provider's dashboard (API keys). It is never shown again" + (
            f": leave blank to keep the saved one ({keys})." if keys else "."
        )
        hook = saved.get(Provider.FLUTTERWAVE)
        self.fields["webhook_secret"].help_text = (
            "The secret hash you set in Flutterwave's webhook settings; Paystack signs with the secret key."
            + (f" Leave blank to keep the saved one ({hook.webhook_secret_hint})." if hook else "")
        )
        self.fields["active"].help_text = (
            "The other provider, if set up, stops being used. Untick to stop top-ups by card: "
            "residents then pay from what is already in their wallets."
        )


def required_message(field: str, provider: str) -> str:
    """The service's "required" in words that say what to do (a first account has no
    saved secret to keep)."""
    name = Provider(provider).label
    if field == "webhook_secret":
        return f"Enter {name}'s secret hash: Levy needs it to check that webhooks come from {name}."
    return f"Enter the secret key: {name} is not set up for this estate yet, so there is no saved one to keep."


class PaymentSettingsPage(EstatePage):
    """The estate's provider accounts as they are (hints only) and the form that
    changes them."""

    template_name = "web/settings/payments.html"
    permission = EstatePermissions.ManageProviders

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        accounts = provider_accounts(self.access)
        return self.render_to_response(self.get_context_data(accounts=accounts, form=ProviderForm(accounts=accounts)))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        accounts = provider_accounts(self.access)
        form = ProviderForm(request.POST, accounts=accounts)
        if form.is_valid():
            data = form.cleaned_data
            # The form's fingerprint holds keyed digests of the secrets, never the secrets.
            details = {
                name: salted_hmac("levy.web.provider-form", value).hexdigest()
                if name in SECRET_FIELDS and value
                else value
                for name, value in data.items()
                if name != "idempotency_key"
            }
            try:
                once, _ = submit_once(
                    access=self.access, key=data["idempotency_key"], data=details, work=lambda: self.save(data)
                )
            except ValidationError as exc:
                for field, errors in exc.fields.items():
                    if errors == ["This field is required."]:
                        errors = [required_message(field, data["provider"])]
                    form.add_error(field if field in form.fields else None, errors)
            else:
                if once.refused:
                    form.add_error(None, once.refused)
                else:
                    return HttpResponseRedirect(request.path)
        elif "idempotency_key" in form.errors:
            form.add_error(None, "This form is out of date. Reload the page, then fill it in again.")
        # What was typed into a secret field is not drawn back: say so, or it seems kept.
        retype = [words for name, words in SECRET_FIELDS.items() if request.POST.get(name, "").strip()]
        context = self.get_context_data(accounts=accounts, form=form, retype=retype)
        return self.render_to_response(context, status=400)

    def save(self, data: dict[str, Any]) -> dict[str, Any]:
        """Save a valid form through the API's service, once per form (``submit_once``
        runs it). Blank secrets and a blank public key keep what is saved."""
        account = provider_account_save(
            access=self.access,
            provider=data["provider"],
            public_key=data["public_key"] or None,
            secret_key=data["secret_key"] or None,
            webhook_secret=data["webhook_secret"] or None,
            active=data["active"],
            origin=self.origin,
        )
        name = account.get_provider_display()
        if account.active:
            messages.success(self.request, f"{name} settings saved. Residents top up through {name}.")
        else:
            messages.success(
                self.request,
                f"{name} settings saved. {name} is not in use: residents cannot top up by card through it.",
            )
        return {"provider": account.provider}

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        accounts: list[ProviderAccount] = context["accounts"]
        context["active"] = next((a for a in accounts if a.active), None)
        context["rows"] = [(account, webhook_url(account)) for account in accounts]
        return context
