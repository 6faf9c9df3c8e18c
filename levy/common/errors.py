"""Application errors: each has a stable ``code``; the API layer maps classes to HTTP.

Services raise these, never HTTP exceptions, so the same rule reads the same way
from a view, a Celery task or a management command.
"""

from __future__ import annotations

import math
from typing import Any


class ApplicationError(Exception):
    code = "application_error"
    default_message = "The request could not be completed."

    def __init__(self, message: str | None = None, *, code: str | None = None, details: dict[str, Any] | None = None):
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        self.details = details or {}
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ValidationError(ApplicationError):
    """Bad input. ``details['fields']`` maps field names to lists of messages."""

    code = "validation_error"
    default_message = "Invalid input."

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message, details={"fields": fields or {}, **(extra or {})})

    @property
    def fields(self) -> dict[str, list[str]]:
        return self.details["fields"]


class NotFoundError(ApplicationError):
    """Missing, or belonging to an estate the caller is not in: the two are one error."""

    code = "not_found"
    default_message = "Not found."


class PermissionDeniedError(ApplicationError):
    code = "permission_denied"
    default_message = "You do not have permission to perform this action."


class RuleViolation(ApplicationError):
    """A rule of the product contract refuses the action (HTTP 409)."""

    code = "conflict"
    default_message = "The action is not allowed in the current state."


class InsufficientFundsError(ApplicationError):
    """The wallet cannot cover the amount. The failed attempt is on the ledger."""

    code = "insufficient_funds"
    default_message = "Your wallet balance is below the amount due."


class IdempotencyKeyReusedError(ApplicationError):
    """The same idempotency key was used for a different request (HTTP 422)."""

    code = "idempotency_key_reused"
    default_message = "This idempotency key was already used for a different request."


class UpstreamError(ApplicationError):
    """A service Levy depends on (a payment provider) failed or timed out (HTTP 503):
    nothing was decided, and the same request may be tried again later."""

    code = "upstream_unavailable"
    default_message = "A service Levy depends on is unavailable. Try again in a few minutes."


class NotAuthenticatedError(ApplicationError):
    """Wrong or missing credentials (HTTP 401)."""

    code = "not_authenticated"
    default_message = "No active account found with the given credentials"


class TooManyAttemptsError(ApplicationError):
    """Refused for a while (HTTP 429 with ``Retry-After``): ``retry_after`` whole seconds."""

    code = "rate_limited"
    default_message = "Too many requests. Try again later."

    def __init__(self, message: str | None = None, *, retry_after: float, code: str | None = None):
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, code=code, details={"retry_after": self.retry_after})


class AccountLockedError(TooManyAttemptsError):
    """Too many wrong passwords for one account: sign-in is refused, whatever the
    password, until the lock ends or an admin lifts it."""

    code = "account_locked"
    default_message = (
        "This account is locked after too many wrong passwords. Try again later, or ask an estate admin to unlock it."
    )
