"""Separation of duties for the money staff record on members' wallets.

A member of staff never records money into their own wallet: a credit (money
received) or a refund to themselves is recorded by another member of staff. Every
service that moves money into a wallet on a staff member's word calls
``require_not_own_wallet`` before it moves anything.
"""

from __future__ import annotations

from typing import Any, Literal

from levy.common.errors import RuleViolation
from levy.estates.access import EstateAccess

SelfDealing = Literal["credit", "refund"]

CODES: dict[str, str] = {"credit": "self_credit_not_allowed", "refund": "self_refund_not_allowed"}
MESSAGES: dict[str, str] = {
    "credit": "You cannot record money received into your own wallet. Another member of staff must record it.",
    "refund": "You cannot refund a payment to your own wallet. Another member of staff must refund it.",
}


def own_wallet_refusal(*, access: EstateAccess, member_user_id: Any, action: SelfDealing) -> RuleViolation | None:
    """The refusal when the staff member acting (``access.user``) is the member whose
    wallet would receive the money; None otherwise."""
    if str(member_user_id) != str(access.user.pk):
        return None
    return RuleViolation(MESSAGES[action], code=CODES[action])


def require_not_own_wallet(*, access: EstateAccess, member_user_id: Any, action: SelfDealing) -> None:
    """Raise ``RuleViolation`` (409, ``self_credit_not_allowed`` or
    ``self_refund_not_allowed``) when staff would move money into their own wallet."""
    refusal = own_wallet_refusal(access=access, member_user_id=member_user_id, action=action)
    if refusal is not None:
        raise refusal
