"""Who is calling: bearer tokens for people, HMAC signatures for partners.

``requires(...)`` is the role check every person-facing endpoint carries; it also documents the
security requirement and the 401/403 answers in the OpenAPI spec.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g, request
from flask_smorest import Blueprint

from backend.config import current_settings
from backend.db import db, utcnow
from backend.errors import Forbidden, Unauthorized
from backend.models import Partner, Resident, User
from backend.services import auth, partners, residents

BEARER_SCHEME = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
PARTNER_SCHEMES = {
    "partnerKeyId": {"type": "apiKey", "in": "header", "name": "X-Key-Id"},
    "partnerTimestamp": {"type": "apiKey", "in": "header", "name": "X-Timestamp"},
    "partnerSignature": {"type": "apiKey", "in": "header", "name": "X-Signature"},
}


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send 'Authorization: Bearer <access token>'.", error="token_missing")
    return token.strip()


def requires(*roles: str, read_only: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Authenticate the bearer token and require one of ``roles``. ``read_only``: the view only
    reads the database, so the request runs on the read-only pool (``db.read_only``)."""
    allowed = frozenset(roles)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if read_only:
                db.read_only()
            principal = auth.authenticate(_bearer_token())
            if not (principal.roles & allowed):
                raise Forbidden(
                    f"This needs one of the roles: {', '.join(sorted(allowed))}.", error="role_required"
                )
            g.principal = principal
            return view(*args, **kwargs)

        wrapper._roles = allowed  # type: ignore[attr-defined]
        return Blueprint.doc(
            security=[{"bearerAuth": []}],
            responses={"401": {"description": "Not authenticated"}, "403": {"description": "Role not allowed"}},
        )(wrapper)

    return decorator


def partner_signed(view: Callable[..., Any]) -> Callable[..., Any]:
    """Authenticate a partner request signed as in DESIGN §9."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.partner = partners.authenticate_request(
            key_id=request.headers.get("X-Key-Id", ""),
            timestamp=request.headers.get("X-Timestamp", ""),
            signature=request.headers.get("X-Signature", ""),
            method=request.method,
            path=request.path,
            body=request.get_data(cache=True),
            now=utcnow(),
            window=current_settings().partner_signature_window,
        )
        return view(*args, **kwargs)

    wrapper._roles = frozenset({"partner"})  # type: ignore[attr-defined]
    return Blueprint.doc(
        security=[{"partnerKeyId": [], "partnerTimestamp": [], "partnerSignature": []}],
        responses={"401": {"description": "Missing, bad, stale or replayed signature"},
                   "403": {"description": "Partner disabled"}},
    )(wrapper)


def current_principal() -> auth.Principal:
    return g.principal


def current_user() -> User:
    """The caller's user row, loaded on first use (``requires`` checks the token without it)."""
    if "user" not in g:
        g.user = auth.user_of(g.principal)
    return g.user


def current_resident() -> Resident:
    """The calling resident's row, loaded on first use; 403 for staff."""
    if "resident" not in g:
        resident = auth.resident_of(g.principal)
        g.resident = resident if resident is not None else residents.resident_of(current_user())
    return g.resident


def current_resident_id() -> int:
    """The calling resident's id, without loading a row; 403 for staff."""
    resident_id = g.principal.resident_id
    return resident_id if resident_id is not None else current_resident().id


def current_partner() -> Partner:
    return g.partner
