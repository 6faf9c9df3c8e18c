"""Serializers of the payment endpoints (provider accounts, top-ups, refunds)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from levy.api.serializers import MoneyField
from levy.payments.models import Provider, TopUpStatus


class ProviderAccountSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    provider = serializers.ChoiceField(choices=Provider.choices)
    active = serializers.BooleanField()
    public_key = serializers.CharField()
    secret_key_hint = serializers.CharField(help_text="The secret is never shown back whole.")
    webhook_secret_hint = serializers.CharField()
    webhook_url = serializers.SerializerMethodField(help_text="Enter it in the provider's dashboard.")
    updated_at = serializers.DateTimeField()

    def get_webhook_url(self, account: Any) -> str:
        from levy.payments.accounts import webhook_url

        return webhook_url(account)


class ProviderAccountInputSerializer(serializers.Serializer):
    provider = serializers.ChoiceField(choices=Provider.choices)
    secret_key = serializers.CharField(required=False, trim_whitespace=True, max_length=200, write_only=True)
    public_key = serializers.CharField(required=False, allow_blank=True, max_length=200)
    webhook_secret = serializers.CharField(
        required=False,
        max_length=200,
        write_only=True,
        help_text="Flutterwave: the dashboard's secret hash (required). Paystack signs with the secret key.",
    )
    active = serializers.BooleanField(required=False)


class TopUpSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    reference = serializers.CharField()
    provider = serializers.CharField()
    amount = MoneyField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=TopUpStatus.choices)
    checkout_url = serializers.CharField(help_text="Send the resident here to pay.")
    bill_id = serializers.UUIDField(allow_null=True)
    bill_outcome = serializers.CharField(help_text="Pay by card: 'paid', or why the bill could not be paid.")
    transaction_id = serializers.UUIDField(allow_null=True, help_text="The ledger entry once credited.")
    failure_reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    verified_at = serializers.DateTimeField(allow_null=True)


class ManagedTopUpSerializer(TopUpSerializer):
    user_id = serializers.UUIDField()
    member_name = serializers.CharField(source="user.name")


class TopUpInputSerializer(serializers.Serializer):
    amount = MoneyField()


class TopUpReturnSerializer(serializers.Serializer):
    reference = serializers.CharField()
    status = serializers.ChoiceField(choices=TopUpStatus.choices)
    amount = MoneyField()
    currency = serializers.CharField()
    bill_outcome = serializers.CharField()


class PaymentAnomalySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    reported_by = serializers.CharField(source="source", help_text="webhook, return or sweep")
    reference = serializers.CharField()
    top_up_id = serializers.UUIDField(allow_null=True)
    details = serializers.DictField()
    created_at = serializers.DateTimeField()


class WebhookAnswerSerializer(serializers.Serializer):
    result = serializers.CharField()
    reference = serializers.CharField()
