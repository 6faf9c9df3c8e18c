"""The ledger's fixed statement against its ORM reference: on the same rows, both forms
answer the same and leave the same rows behind (each run in a transaction that is
rolled back, so that the other form starts from the same state)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from levy.common.money import MAX_AMOUNT
from levy.wallets.ledger import _move_balance_orm, move_balance
from levy.wallets.models import Wallet
from tests.conftest import Estate

pytestmark = pytest.mark.django_db


def test_moving_a_balance_matches_the_orm(estate: Estate) -> None:
    """``_move_balance_sql`` against ``_move_balance_orm``: a debit up to the balance and
    a credit up to the most a balance holds move it and return the new balance; a debit
    beyond the balance or a credit beyond that bound move nothing and return None; the
    other wallets are left alone."""
    member, other = estate.residents[:2]
    estate.fund(member, "100.00")
    estate.fund(other, "40.00")
    wallet = Wallet.objects.get(cluster=estate.cluster, user_id=member.user_id)

    def state() -> list[tuple[Any, ...]]:
        return list(Wallet.objects.order_by("pk").values_list("pk", "balance"))

    cases = {
        Decimal("-30.00"): Decimal("70.00"),
        Decimal("-100.00"): Decimal("0.00"),
        Decimal("-100.01"): None,
        Decimal("0.00"): Decimal("100.00"),
        Decimal("25.50"): Decimal("125.50"),
        MAX_AMOUNT - Decimal("100.00"): MAX_AMOUNT,
        MAX_AMOUNT - Decimal("99.99"): None,
    }
    for delta, expected in cases.items():
        outcomes = []
        for form in (move_balance, _move_balance_orm):
            with transaction.atomic():
                outcomes.append((form(wallet, delta), state()))
                transaction.set_rollback(True)
        assert outcomes[0] == outcomes[1], delta
        assert outcomes[0][0] == expected, delta
