from decimal import Decimal

from levy.billing.payments import bill_pay
from levy.billing.status import BillStatus
from tests.conftest import Estate, access, new_key


def test_wide_bill_acknowledge_and_pay(estate: Estate) -> None:
    from levy.billing.services import bill_acknowledge

    bill = estate.wide_bill()
    payer = estate.residents[0]
    estate.fund(payer, "20000.00")
    bill_acknowledge(access=access(payer), bill=bill)
    tx = bill_pay(access=access(payer), bill=bill, idempotency_key=new_key())
    assert tx.amount == Decimal("-15000.00")
    assert tx.balance_after == Decimal("5000.00")
    assert bill.status_for(payer.user) == BillStatus.PAID
