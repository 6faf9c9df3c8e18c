"""Serializers shared by the management and member APIs. Plain ``Serializer``s: the
hot paths read annotated querysets and should not pay for ModelSerializer machinery."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from levy.billing.models import BillCategory
from levy.billing.status import BillStatus
from levy.common.money import DECIMAL_PLACES, amount_format_message, amount_pattern

AMOUNT = amount_pattern(DECIMAL_PLACES)


class MoneyField(serializers.DecimalField):
    """Exact amounts as strings, e.g. "15000.00". A JSON number with a fraction is
    refused: a float has already lost the exact value."""

    default_error_messages = {
        "float": 'Send amounts as decimal strings, e.g. "15000.00".',
        "format": amount_format_message(DECIMAL_PLACES),
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("coerce_to_string", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, float):
            self.fail("float")
        if isinstance(data, bool) or (isinstance(data, str) and not AMOUNT.fullmatch(data)):
            # Decimal() also reads exponents, underscores, spaces and non-ASCII digits: refused.
            self.fail("format")
        return super().to_internal_value(data)


class MoneyTotalField(MoneyField):
    """Sums of amounts (dashboard, bill and member totals): they may exceed what one
    amount can hold."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 24)
        super().__init__(**kwargs)


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class BillBaseSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    reference = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    category = serializers.ChoiceField(choices=BillCategory.choices)
    amount = MoneyField()
    currency = serializers.CharField(source="cluster.currency")
    due_date = serializers.DateField()
    allow_payment_after_due = serializers.BooleanField()
    is_cluster_wide = serializers.SerializerMethodField()
    late_fee_of_id = serializers.UUIDField(allow_null=True, help_text="On a late fee: the bill it is the late fee of.")
    created_at = serializers.DateTimeField()

    def get_is_cluster_wide(self, bill: Any) -> bool:
        return bool(bill.user_id is None)


class MemberBillSerializer(BillBaseSerializer):
    status = serializers.ChoiceField(choices=BillStatus.choices)
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    paid_at = serializers.DateTimeField(allow_null=True)
    can_pay = serializers.BooleanField()


class TransactionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    reference = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    amount = MoneyField()
    currency = serializers.SerializerMethodField()
    balance_after = MoneyField(allow_null=True)
    bill_id = serializers.UUIDField(allow_null=True)
    user_id = serializers.UUIDField(source="payer_id")
    initiated_by_id = serializers.UUIDField()
    failure_reason = serializers.CharField()
    note = serializers.CharField()
    retry_of_id = serializers.UUIDField(allow_null=True)
    reverses_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_currency(self, tx: Any) -> str:
        return str(self.context["currency"])


class DisputeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    bill_id = serializers.UUIDField()
    user_id = serializers.UUIDField()
    status = serializers.CharField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    resolved_by_id = serializers.UUIDField(allow_null=True)
    resolution_note = serializers.CharField()
