"""Signing in and out, and choosing a password (forgotten, or first time from an
invitation). Browser sessions with CSRF protection; every sign-in passes the sign-in
guard (``levy.accounts.signin_guard``) before its password is checked."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import reverse_lazy

from levy.accounts.invitations import public_url
from levy.accounts.models import User
from levy.accounts.signin_guard import limit_count, limit_wait, sign_in_check, sign_in_failed, sign_in_succeeded
from levy.common.errors import AccountLockedError, NotAuthenticatedError, TooManyAttemptsError
from levy.common.origin import origin_of


class SignInForm(AuthenticationForm):
    username = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email", "inputmode": "email"}),
    )
    remember = forms.BooleanField(label="Keep me signed in on this device", required=False, initial=True)

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "The email or password is not right. Check them and try again, "
        "or reset your password by email.",
    }

    def clean(self) -> dict[str, Any]:
        email = (self.cleaned_data.get("username") or "").strip().lower()
        password = self.cleaned_data.get("password")
        if not email or not password:
            return self.cleaned_data
        origin = origin_of(self.request)
        # The API's token endpoint runs the same sequence (levy/accounts/signin_guard.py).
        try:
            state = sign_in_check(email=email, ip=origin.ip)
            self.user_cache = authenticate(self.request, username=email, password=password)
            if self.user_cache is None:
                sign_in_failed(email=email, origin=origin)
        except AccountLockedError as locked:
            raise forms.ValidationError(
                f"Too many wrong passwords for this account: it is locked for {_minutes(locked.retry_after)}. "
                "Reset your password by email, or ask an estate admin to unlock it.",
                code=locked.code,
            ) from None
        except TooManyAttemptsError as limited:
            raise forms.ValidationError(
                f"Too many failed sign-ins from your network. Try again in {_minutes(limited.retry_after)}.",
                code=limited.code,
            ) from None
        except NotAuthenticatedError:
            raise self.get_invalid_login_error() from None
        assert self.user_cache is not None
        self.confirm_login_allowed(self.user_cache)
        sign_in_succeeded(user=self.user_cache, state=state)
        return self.cleaned_data


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} more minute{'s' if minutes != 1 else ''}"


class SignInView(auth_views.LoginView):
    form_class = SignInForm
    template_name = "web/auth/sign_in.html"
    redirect_authenticated_user = True

    def form_valid(self, form: SignInForm) -> HttpResponse:  # type: ignore[override]
        response = super().form_valid(form)
        if not form.cleaned_data.get("remember"):
            self.request.session.set_expiry(0)
        return response


class SignOutView(auth_views.LogoutView):
    """POST only (Django's LogoutView refuses GET): a link cannot sign anyone out."""


class ForgotPasswordForm(PasswordResetForm):
    email = forms.EmailField(
        label="Email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )

    def get_users(self, email: str) -> Iterator[Any]:
        """Every active account with that email — including those invited who never
        chose a password (Django leaves out accounts without a usable password)."""
        return iter(User.objects.filter(email__iexact=email.strip(), is_active=True))


class ForgotPasswordView(auth_views.PasswordResetView):
    form_class = ForgotPasswordForm
    template_name = "web/auth/forgot_password.html"
    email_template_name = "web/auth/password_reset_email.txt"
    subject_template_name = "web/auth/password_reset_subject.txt"
    success_url = reverse_lazy("web:password-sent")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # Links in the email start with the configured public address, not the request's host.
        self.extra_email_context = {"public_url": public_url("")}
        return super().dispatch(request, *args, **kwargs)

    def form_valid(self, form: ForgotPasswordForm) -> HttpResponse:  # type: ignore[override]
        """Limited per client address and per email address asked for (the same answer
        either way: the page never says whether an account exists)."""
        email = form.cleaned_data["email"].strip().lower()
        limits = [
            ("password_reset", f"ip:{origin_of(self.request).ip or 'unknown'}"),
            ("password_reset_email", "email:" + hashlib.sha256(email.encode()).hexdigest()[:32]),
        ]
        waits = [limit_wait(scope=scope, subject=subject) for scope, subject in limits]
        if any(wait is not None for wait in waits):
            wait = max(w for w in waits if w is not None)
            form.add_error(None, f"Too many requests for a new password link. Try again in {_minutes(wait)}.")
            return self.form_invalid(form)
        for scope, subject in limits:
            limit_count(scope=scope, subject=subject)
        return super().form_valid(form)


class PasswordSentView(auth_views.PasswordResetDoneView):
    template_name = "web/auth/password_sent.html"


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """The link of a password reset or an invitation: choose a password, then you are
    signed in. The link works once and expires (``PASSWORD_RESET_TIMEOUT``)."""

    template_name = "web/auth/set_password.html"
    post_reset_login = True
    success_url = reverse_lazy("web:home")
