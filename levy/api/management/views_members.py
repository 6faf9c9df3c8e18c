"""Endpoints for estate admins about members: the list, one member's changes, the
sign-in unlock and the CSV import.

Reads need any financial permission; writes need ``ManageMembers``. Every list is
annotated in one query.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from levy.access import access_member_import, access_membership
from levy.api.pagination import listing_response
from levy.api.parsers import SafeJSONParser
from levy.api.schema import PAGE_PARAMETERS, error, errors, page_of
from levy.api.serializers import (
    MoneyTotalField,
)
from levy.api.views import EstateAPIView
from levy.billing.selectors import (
    MemberFilters,
    member_list,
)
from levy.common.errors import ValidationError
from levy.estates.models import MemberImport
from levy.estates.permissions import MembersPermissions, Role
from levy.members.imports import MAX_IMPORT_BYTES, member_import_start
from levy.members.services import member_add, member_sign_in_unlock, member_update

ERRORS = errors()


# --- members --------------------------------------------------------------------------------


class MemberInputSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    name = serializers.CharField(max_length=200)
    role = serializers.ChoiceField(choices=Role.choices, default=Role.RESIDENT)
    is_resident = serializers.BooleanField(required=False, allow_null=True, default=None)
    password = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=128, min_length=8)


class MemberSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="user_id")
    email = serializers.EmailField(source="user.email")
    name = serializers.CharField(source="user.name")
    role = serializers.CharField()
    is_resident = serializers.BooleanField()
    active = serializers.BooleanField()
    joined_at = serializers.DateTimeField()


class BillSummarySerializer(serializers.Serializer):
    outstanding_count = serializers.IntegerField(source="sum_outstanding_count")
    outstanding_amount = MoneyTotalField(source="sum_outstanding_amount")
    overdue_count = serializers.IntegerField(source="sum_overdue_count")
    unacknowledged_count = serializers.IntegerField(source="sum_unacknowledged_count")
    disputed_count = serializers.IntegerField(source="sum_disputed_count")
    paid_count = serializers.IntegerField(source="sum_paid_count")


class MemberWithSummarySerializer(MemberSerializer):
    bill_summary = BillSummarySerializer(source="*")


class MemberFilterSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    has_overdue = serializers.BooleanField(required=False, allow_null=True, default=None)
    search = serializers.CharField(required=False, max_length=200)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


class MemberListView(EstateAPIView):
    @extend_schema(
        parameters=[MemberFilterSerializer, *PAGE_PARAMETERS],
        responses={200: page_of(MemberWithSummarySerializer), **ERRORS},
        summary="Members with their bill summary (hover card)",
    )
    def get(self, request: Request, cluster_id: str) -> Response:
        self.access.require_read_finances()
        filters = MemberFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        listing = member_list(access=self.access, filters=MemberFilters(**filters.validated_data))
        return listing_response(self, listing, MemberWithSummarySerializer)

    @extend_schema(request=MemberInputSerializer, responses={201: MemberSerializer, **ERRORS}, summary="Add a member")
    def post(self, request: Request, cluster_id: str) -> Response:
        self.access.require(MembersPermissions.ManageMembers)
        data = MemberInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = member_add(access=self.access, origin=self.origin, **data.validated_data)
        # Only what the caller typed: adding an existing account must not reveal the name
        # that person chose (they are told they were added, and may leave).
        body = MemberSerializer(membership).data
        body["name"] = data.validated_data["name"].strip()
        return Response(body, status=201)


class MemberUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    is_resident = serializers.BooleanField(required=False)
    active = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Send role, is_resident or active.")
        return attrs


class MemberDetailView(EstateAPIView):
    @extend_schema(
        request=MemberUpdateSerializer,
        responses={200: MemberSerializer, 409: error("last_admin"), **ERRORS},
        summary="Change a member",
        description="Refused with 409 last_admin when it would leave the estate without an active admin.",
    )
    def patch(self, request: Request, cluster_id: str, user_id: str) -> Response:
        self.access.require(MembersPermissions.ManageMembers)
        membership = access_membership(self.access, user_id)
        data = MemberUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        updated = member_update(access=self.access, membership=membership, origin=self.origin, **data.validated_data)
        updated.user = membership.user
        return Response(MemberSerializer(updated).data)


class SignInUnlockSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    unlocked = serializers.BooleanField(help_text="False when the account had no lock and no failed sign-ins.")


class MemberSignInUnlockView(EstateAPIView):
    @extend_schema(
        request=None,
        responses={200: SignInUnlockSerializer, **ERRORS},
        summary="Unlock a member's sign-in after too many wrong passwords",
    )
    def post(self, request: Request, cluster_id: str, user_id: str) -> Response:
        self.access.require(MembersPermissions.ManageMembers)
        membership = access_membership(self.access, user_id)
        unlocked = member_sign_in_unlock(access=self.access, membership=membership, origin=self.origin)
        return Response({"user_id": membership.user_id, "unlocked": unlocked})


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    message = serializers.CharField()


class MemberImportSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=MemberImport.Status.choices)
    file_name = serializers.CharField()
    total_lines = serializers.IntegerField(help_text="Lines after the header.")
    processed_lines = serializers.IntegerField(help_text="Lines checked so far (all of them once imported).")
    created = serializers.IntegerField(source="created_count", help_text="Members added (new or returning).")
    skipped = serializers.IntegerField(
        source="skipped_count", help_text="Lines whose email is already an active member: not imported."
    )
    error_count = serializers.IntegerField(help_text="Bad lines; any bad line means nothing was imported.")
    errors = ImportErrorSerializer(many=True, help_text="The bad lines (the first 1,000).")  # type: ignore[assignment]
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class ImportInputSerializer(serializers.Serializer):
    file = serializers.FileField()


class MemberImportView(EstateAPIView):
    parser_classes = [MultiPartParser, FormParser, SafeJSONParser]

    @extend_schema(
        request={"multipart/form-data": ImportInputSerializer},
        responses={202: MemberImportSerializer, **ERRORS},
        summary="Import members from CSV (email,name,role,is_resident), as a background job",
        description="Answers 202 at once with the import's id and status (queued); follow it at "
        "members/imports/{import_id}/ (the Location header). A file with any bad line imports nothing "
        "(status failed, each bad line in errors as {line, message}); emails already active in the estate "
        "are skipped and counted. A file over 5 MB or not UTF-8 is refused at once (400 on file).",
    )
    def post(self, request: Request, cluster_id: str) -> Response:
        self.access.require(MembersPermissions.ManageMembers)
        upload = request.FILES.get("file")
        if upload is None:
            raise ValidationError(fields={"file": ["Upload a CSV file in the field 'file'."]})
        if upload.size is not None and upload.size > MAX_IMPORT_BYTES:
            raise ValidationError(fields={"file": ["The file is larger than 5 MB."]})
        job = member_import_start(
            access=self.access, file_name=upload.name or "", content=upload.read(), origin=self.origin
        )
        location = f"{request.path.rstrip('/').rsplit('/', 1)[0]}/imports/{job.pk}/"
        return Response(MemberImportSerializer(job).data, status=202, headers={"Location": location})


class MemberImportStatusView(EstateAPIView):
    @extend_schema(
        responses={200: MemberImportSerializer, **ERRORS},
        summary="A members import: status, progress and per-line errors",
        description="status: queued, validating (processed_lines counts the lines checked), importing, "
        "succeeded or failed. Poll it (every second or two) until succeeded or failed.",
    )
    def get(self, request: Request, cluster_id: str, import_id: str) -> Response:
        job = access_member_import(self.access, import_id)
        return Response(MemberImportSerializer(job).data)
