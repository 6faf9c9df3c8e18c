"""Invitations: a person added to an estate who has no password yet gets an email with
a link to set one.

The link carries Django's password-reset token (``default_token_generator``): it
expires after ``PASSWORD_RESET_TIMEOUT`` and works once, because the token is made
from the password hash and the last sign-in, and setting the password changes both.
Links start with ``LEVY_PUBLIC_URL``, the address people reach the site at, never
with the host of the request that happened to add the member.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

if TYPE_CHECKING:
    from levy.accounts.models import User


def public_url(path: str) -> str:
    """An absolute address on the site for ``path`` (from ``reverse``), for emails."""
    return settings.LEVY_PUBLIC_URL.rstrip("/") + path


def set_password_link(user: User) -> str:
    """A single-use, expiring link for ``user`` to choose a password."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return public_url(reverse("web:set-password", kwargs={"uidb64": uid, "token": token}))


def needs_invitation(user: User) -> bool:
    """Someone who cannot sign in yet: active, and no password chosen."""
    return user.is_active and not user.has_usable_password()


def invitation_send(*, user: User, estate_name: str, invited_by: str) -> bool:
    """Email ``user`` their invitation; returns whether one was sent (nobody who can
    already sign in is sent one)."""
    if not needs_invitation(user):
        return False
    context = {
        "name": user.name or user.email,
        "estate_name": estate_name,
        "invited_by": invited_by,
        "link": set_password_link(user),
        "sign_in_url": public_url(reverse("web:sign-in")),
        "valid_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400),
    }
    send_mail(
        subject=f"You have been added to {estate_name} on Levy",
        message=render_to_string("accounts/invitation_email.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[user.email],
        html_message=render_to_string("accounts/invitation_email.html", context),
    )
    return True
