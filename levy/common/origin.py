from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    """Where an action came from, recorded on acknowledgements and audit events."""

    ip: str | None = None
    user_agent: str = ""
