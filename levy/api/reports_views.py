"""API endpoints that answer with a file: receipts (PDF), statements (PDF, CSV).

Each view parses its input, calls one selector and renders the file. Errors stay JSON
in the shape of api.md, whatever the client's ``Accept`` says.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request

from levy.access import access_bill_as_staff, access_membership, access_own_transaction, access_transaction
from levy.api.management.views import BillFilterSerializer, BillMemberFilterSerializer
from levy.api.management.views_ledger import TransactionFilterSerializer
from levy.api.management.views_members import MemberFilterSerializer
from levy.api.schema import errors
from levy.api.views import EstateAPIView
from levy.billing.selectors import BillFilters, BillMemberFilters, MemberFilters
from levy.common.errors import ValidationError
from levy.estates.models import Membership
from levy.reports.exports import (
    bill_members_export,
    bills_export,
    export_response,
    members_export,
    transactions_export,
)
from levy.reports.files import CSV, PDF, receipt_file, statement_file
from levy.reports.selectors import Statement, member_statement, receipt_of, statement_period
from levy.wallets.selectors import TransactionFilters

ERRORS = errors()


class JSONErrorsNegotiation(BaseContentNegotiation):
    """The file views render only their files and JSON errors: a client that asks for
    ``Accept: application/pdf`` gets the file, or an error it can read, never a 406."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


def file_schema(content_type: str, description: str) -> dict[Any, Any]:
    return {(200, content_type.split(";")[0]): OpenApiResponse(OpenApiTypes.BINARY, description=description), **ERRORS}


class FileAPIView(EstateAPIView):
    content_negotiation_class = JSONErrorsNegotiation


# --- receipts -----------------------------------------------------------------------------


class MemberReceiptView(FileAPIView):
    @extend_schema(
        responses=file_schema(PDF, "The receipt (PDF)."),
        summary="The receipt of one of the caller's payments or top-ups (PDF)",
        description="Completed bill payments and wallet top-ups have a receipt; any other "
        "entry, or someone else's, is not found.",
        operation_id="member_transaction_receipt",
    )
    def get(self, request: Request, cluster_id: str, transaction_id: str) -> HttpResponse:
        receipt = receipt_of(access_own_transaction(self.access, transaction_id), access=self.access)
        return receipt_file(receipt)


class ManagementReceiptView(FileAPIView):
    @extend_schema(
        responses=file_schema(PDF, "The receipt (PDF)."),
        summary="The receipt of any payment or top-up in the estate (PDF)",
        operation_id="management_transaction_receipt",
    )
    def get(self, request: Request, cluster_id: str, transaction_id: str) -> HttpResponse:
        receipt = receipt_of(access_transaction(self.access, transaction_id), access=self.access)
        return receipt_file(receipt)


# --- statements ---------------------------------------------------------------------------


class StatementPeriodSerializer(serializers.Serializer):
    start = serializers.DateField(
        required=False, help_text="First day (included); default: the first day of this month."
    )
    end = serializers.DateField(required=False, help_text="Last day (included); default: today.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            start, end = statement_period(attrs.get("start"), attrs.get("end"))
        except ValidationError as exc:
            raise serializers.ValidationError(exc.fields) from None
        return {"start": start, "end": end}


def _period(request: Request) -> dict[str, datetime.date]:
    period = StatementPeriodSerializer(data=request.query_params)
    period.is_valid(raise_exception=True)
    return dict(period.validated_data)


def _own_statement(view: FileAPIView, request: Request) -> Statement:
    membership: Membership = view.access.require_member()
    membership.user = view.access.user
    return member_statement(access=view.access, membership=membership, **_period(request))


def _members_statement(view: FileAPIView, request: Request, user_id: str) -> Statement:
    view.access.require_read_finances()
    membership = access_membership(view.access, user_id)
    return member_statement(access=view.access, membership=membership, **_period(request))


STATEMENT_DESCRIPTION = (
    "Opening balance, every completed ledger entry of the period with the running "
    "balance, closing balance; all from the ledger. Days are the estate's calendar days."
)


def file_operation(
    query: type[serializers.Serializer], content_type: str, operation_id: str, summary: str, description: str
) -> Any:
    """The schema of a GET that answers a file, with its query parameters."""
    return extend_schema(
        parameters=[query],
        responses=file_schema(content_type, "The file."),
        summary=summary,
        description=description,
        operation_id=operation_id,
    )


def statement_schema(content_type: str, operation_id: str, summary: str) -> Any:
    return file_operation(StatementPeriodSerializer, content_type, operation_id, summary, STATEMENT_DESCRIPTION)


class MemberStatementPdfView(FileAPIView):
    @statement_schema(PDF, "member_wallet_statement_pdf", "The caller's wallet statement for a period (PDF)")
    def get(self, request: Request, cluster_id: str) -> HttpResponse:
        return statement_file(_own_statement(self, request), "pdf")


class MemberStatementCsvView(FileAPIView):
    @statement_schema(CSV, "member_wallet_statement_csv", "The caller's wallet statement for a period (CSV)")
    def get(self, request: Request, cluster_id: str) -> HttpResponse:
        return statement_file(_own_statement(self, request), "csv")


class ManagementStatementPdfView(FileAPIView):
    @statement_schema(PDF, "management_member_statement_pdf", "A member's wallet statement for a period (PDF)")
    def get(self, request: Request, cluster_id: str, user_id: str) -> HttpResponse:
        return statement_file(_members_statement(self, request, user_id), "pdf")


class ManagementStatementCsvView(FileAPIView):
    @statement_schema(CSV, "management_member_statement_csv", "A member's wallet statement for a period (CSV)")
    def get(self, request: Request, cluster_id: str, user_id: str) -> HttpResponse:
        return statement_file(_members_statement(self, request, user_id), "csv")


# --- exports of the manager lists -----------------------------------------------------------


def _filters(serializer: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    parsed = serializer(data=request.query_params)
    parsed.is_valid(raise_exception=True)
    return dict(parsed.validated_data)


EXPORT_DESCRIPTION = (
    "Every row the list's filters keep, without pages, streamed as it is read from the "
    "database (constant memory at any size). A failure after the first bytes ends the "
    "file early: a complete export ends with a newline after its last row."
)


def export_schema(filters: type[serializers.Serializer], operation_id: str, summary: str) -> Any:
    return file_operation(filters, CSV, operation_id, summary, EXPORT_DESCRIPTION)


class BillsExportView(FileAPIView):
    @export_schema(BillFilterSerializer, "management_bills_export", "Export the bill list with its counts (CSV)")
    def get(self, request: Request, cluster_id: str) -> StreamingHttpResponse:
        filters = BillFilters(**_filters(BillFilterSerializer, request))
        return export_response(bills_export(access=self.access, filters=filters))


class BillMembersExportView(FileAPIView):
    @export_schema(
        BillMemberFilterSerializer, "management_bill_members_export", "Export one bill's member statuses (CSV)"
    )
    def get(self, request: Request, cluster_id: str, bill_id: str) -> StreamingHttpResponse:
        filters = BillMemberFilters(**_filters(BillMemberFilterSerializer, request))
        bill = access_bill_as_staff(self.access, bill_id)
        return export_response(bill_members_export(bill=bill, filters=filters))


class MembersExportView(FileAPIView):
    @export_schema(
        MemberFilterSerializer, "management_members_export", "Export the member list with bill summaries (CSV)"
    )
    def get(self, request: Request, cluster_id: str) -> StreamingHttpResponse:
        filters = MemberFilters(**_filters(MemberFilterSerializer, request))
        return export_response(members_export(access=self.access, filters=filters))


class TransactionsExportView(FileAPIView):
    @export_schema(TransactionFilterSerializer, "management_transactions_export", "Export the ledger entries (CSV)")
    def get(self, request: Request, cluster_id: str) -> StreamingHttpResponse:
        filters = TransactionFilters(**_filters(TransactionFilterSerializer, request))
        return export_response(transactions_export(access=self.access, filters=filters))
