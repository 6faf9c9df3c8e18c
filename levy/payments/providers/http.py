"""A small JSON-over-HTTP client for the providers: a timeout on every call, a few
retries with backoff on network errors and 5xx answers, and no database anywhere
near it (the services call it outside any transaction)."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from levy.payments.providers.base import ProviderError

logger = logging.getLogger("levy.payments")


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: dict[str, Any]


def request_json(method: str, url: str, *, token: str, payload: dict[str, Any] | None = None) -> HttpAnswer:
    """Send one request (retried on network errors and 5xx) and return the status and
    the JSON body of the provider's answer, 4xx included: a 4xx is an answer ("not
    found"), not an outage. Raises ``ProviderError`` when no usable answer came."""
    data = json.dumps(payload).encode() if payload is not None else None
    attempts = 1 + max(0, int(settings.LEVY_PROVIDER_RETRIES))
    timeout = float(settings.LEVY_PROVIDER_TIMEOUT_SECONDS)
    last_problem = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
        request = urllib.request.Request(  # noqa: S310 - the base URL is ours (settings), never the caller's
            url,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "Levy",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return HttpAnswer(response.status, _json(response.read()))
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if exc.code < 500:
                return HttpAnswer(exc.code, _json(raw, strict=False))
            last_problem = f"HTTP {exc.code}"
        except TimeoutError:
            last_problem = "timed out"
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last_problem = f"unreachable ({type(exc).__name__})"
        except ValueError:
            last_problem = "answered with a body that is not JSON"
        logger.warning(
            "payment provider call failed",
            extra={"method": method, "url": url.split("?")[0], "attempt": attempt + 1, "problem": last_problem},
        )
    raise ProviderError(details={"problem": last_problem})


def _json(raw: bytes, *, strict: bool = True) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}", parse_float=Decimal)
    except ValueError:
        if strict:
            raise
        return {}
    if not isinstance(value, dict):
        if strict:
            raise ValueError("not a JSON object")
        return {}
    return value
