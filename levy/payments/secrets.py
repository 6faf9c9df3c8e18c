"""Provider secrets, encrypted at rest.

Secrets are sealed with Fernet (AES-128-CBC with HMAC-SHA256, from the ``cryptography``
package) under the key(s) in ``LEVY_PROVIDER_SECRETS_KEY``: a comma-separated list
whose first key seals and every key opens, so a key is rotated by putting the new one
first and re-sealing (``manage.py provider_secrets --reseal``) before removing the old.
Production refuses to start without the variable (config/settings.py); development and
tests use a key derived from a fixed development string.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

DEVELOPMENT_KEY_SOURCE = b"levy-development-provider-secrets-not-for-production"


class SecretUnreadableError(Exception):
    """A stored secret that none of the configured keys opens (a key was removed too soon)."""


def development_key() -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(DEVELOPMENT_KEY_SOURCE).digest()).decode()


@functools.cache
def _fernet(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])


def _box() -> MultiFernet:
    return _fernet(settings.LEVY_PROVIDER_SECRETS_KEY or development_key())


def seal(plain: str) -> str:
    return _box().encrypt(plain.encode()).decode()


def unseal(sealed: str) -> str:
    try:
        return _box().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise SecretUnreadableError(
            "a stored provider secret cannot be decrypted with LEVY_PROVIDER_SECRETS_KEY"
        ) from None


def reseal(sealed: str) -> str:
    """The same secret sealed under the first (newest) key."""
    return _box().rotate(sealed.encode()).decode()


def hint(plain: str) -> str:
    """What may be shown back: the prefix that names the kind of key and the last four characters."""
    if not plain:
        return ""
    prefix = plain.split("_", 2)
    head = "_".join(prefix[:2]) + "_" if len(prefix) == 3 and len(plain) > 16 else ""
    return f"{head}…{plain[-4:]}"


def key_problem(value: str) -> str | None:
    """Why ``value`` is not a usable LEVY_PROVIDER_SECRETS_KEY, or None."""
    keys = [key.strip() for key in value.split(",") if key.strip()]
    if not keys:
        return "LEVY_PROVIDER_SECRETS_KEY is not set (a Fernet key: 32 random bytes, url-safe base64)"
    for key in keys:
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            return "LEVY_PROVIDER_SECRETS_KEY holds a key that is not a Fernet key (32 bytes, url-safe base64)"
    if development_key() in keys:
        return "LEVY_PROVIDER_SECRETS_KEY is the development key"
    return None
