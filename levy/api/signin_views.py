"""Signing in to the API: a token pair for an email and a password, and a new access
token for a refresh token. Both are limited by the sign-in guard
(``levy.accounts.signin_guard``, decision 0017), as the web sign-in page is."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.tokens import RefreshToken

from levy.accounts import signin_guard
from levy.api.schema import error
from levy.api.views import LevyAPIView


class SignInInputSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class RefreshInputSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class AccessTokenSerializer(serializers.Serializer):
    access = serializers.CharField()


SIGN_IN_ERRORS = {
    400: error("validation_error"),
    401: error("not_authenticated (wrong email or password, or an invalid refresh token)"),
    415: error("unsupported_media_type"),
    429: error(
        "rate_limited (too many failed attempts from this address) or account_locked (too many wrong "
        "passwords for this account; the right password is refused too until the lock ends); see Retry-After"
    ),
}


class AnonymousAPIView(LevyAPIView):
    """Sign-in and refresh: no credentials needed, and limited by the sign-in guard
    (levy/accounts/signin_guard.py) instead of the general per-caller limits."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def check_throttles(self, request: Request) -> None:
        pass


class TokenView(AnonymousAPIView):
    """Exchange email and password for an access and a refresh token."""

    @extend_schema(
        request=SignInInputSerializer, responses={200: TokenPairSerializer, **SIGN_IN_ERRORS}, summary="Sign in"
    )
    def post(self, request: Request) -> Response:
        data = SignInInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = signin_guard.sign_in_authenticate(
            request=request._request,
            email=data.validated_data["email"],
            password=data.validated_data["password"],
            origin=self.origin,
        )
        refresh = RefreshToken.for_user(user)
        return Response({"access": str(refresh.access_token), "refresh": str(refresh)})


class RefreshView(AnonymousAPIView):
    """Exchange a refresh token for a new access token."""

    def check_throttles(self, request: Request) -> None:
        # A refresh from an address that sent too many bad refresh tokens is refused
        # before its body is read.
        if request.method == "POST":
            signin_guard.token_refresh_check(ip=self.origin.ip)

    @extend_schema(
        request=RefreshInputSerializer,
        responses={200: AccessTokenSerializer, **SIGN_IN_ERRORS},
        summary="Refresh the access token",
    )
    def post(self, request: Request) -> Response:
        data = RefreshInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        access = signin_guard.token_refresh(refresh=data.validated_data["refresh"], ip=self.origin.ip)
        return Response({"access": access})
