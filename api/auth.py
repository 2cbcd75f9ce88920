"""Bearer-token authentication: ``Authorization: Bearer TOKEN``.

The token is looked up by its SHA-256 (the database holds nothing else). A missing, malformed,
unknown or revoked token answers 401; a token whose user may not act (not in ``editors`` or
``admins``, see ``gallery.access``) answers 403.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from api.errors import ApiError
from api.models import ApiToken, token_digest
from gallery.access import can_act


def _unauthorized(message: str) -> ApiError:
    error = ApiError.field(401, "Authorization", message)
    error.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return error


class BearerToken(HttpBearer):
    def __call__(self, request: HttpRequest) -> Any:
        header = request.headers.get("Authorization", "")
        if not header:
            raise _unauthorized("send the header `Authorization: Bearer TOKEN`.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("the header must read `Bearer TOKEN`.")
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        row = ApiToken.objects.select_related("user").filter(digest=token_digest(token)).first()
        if row is None:
            raise _unauthorized("this token is not known; make one with `manage.py create_api_token USERNAME`.")
        if row.is_revoked:
            raise _unauthorized("this token was revoked; ask an admin for a new one.")
        if not row.user.is_active:
            raise _unauthorized("this token's user account is disabled.")
        if not can_act(row.user):
            raise ApiError.field(
                403, "Authorization", f"user {row.user.get_username()} may look but not act: add them to editors."
            )
        row.touch()
        request.user = row.user
        return row
