"""Bearer-token authentication: simplejwt's, with the user read by a fixed statement."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from levy.common.db import select_one
from levy.estates.access import user_with_membership


class LevyJWTAuthentication(JWTAuthentication):
    """``JWTAuthentication`` whose user lookup is one fixed statement (every API request
    makes it; see ``levy.common.db``). Under ``/clusters/<cluster_id>/`` the same
    statement reads the caller's membership of that estate, which the view's
    ``access_cluster`` then uses instead of reading it again. The checks are
    simplejwt's own."""

    cluster_id: uuid.UUID | None = None

    def authenticate(self, request: Request) -> Any:
        kwargs = (getattr(request, "parser_context", None) or {}).get("kwargs") or {}
        try:
            self.cluster_id = uuid.UUID(str(kwargs["cluster_id"])) if "cluster_id" in kwargs else None
        except ValueError:
            self.cluster_id = None  # matches no estate: access_cluster answers 404 as ever
        return super().authenticate(request)

    def get_user(self, validated_token: Any) -> Any:
        try:
            user_id = validated_token[api_settings.USER_ID_CLAIM]
        except KeyError as e:
            raise InvalidToken("Token contained no recognizable user identification") from e
        try:
            if self.cluster_id is not None and api_settings.USER_ID_FIELD == "id":
                user = user_with_membership(user_id, self.cluster_id)
            else:
                user = select_one(self.user_model, **{api_settings.USER_ID_FIELD: user_id})
        except (DjangoValidationError, ValueError, TypeError):
            user = None
        if user is None:
            raise AuthenticationFailed("User not found", code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed("The user's password has been changed.", code="password_changed")
        return user
