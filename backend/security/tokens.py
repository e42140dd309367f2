"""JWT access tokens and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

ISSUER = "carbon-points"
ALGORITHM = "HS256"


class TokenError(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    token_version: int
    roles: frozenset[str]


def _signing_key(secret_key: str) -> bytes:
    # A key of its own for tokens, so other uses of SECRET_KEY can never mint one.
    return hashlib.sha256(b"access-token\x00" + secret_key.encode()).digest()


def issue_access_token(
    secret_key: str, *, user_id: int, token_version: int, roles: frozenset[str], now: datetime, ttl: int
) -> str:
    payload = {
        "iss": ISSUER,
        "sub": str(user_id),
        "ver": token_version,
        "roles": sorted(roles),
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(payload, _signing_key(secret_key), algorithm=ALGORITHM)


def decode_access_token(secret_key: str, token: str) -> AccessClaims:
    try:
        payload = jwt.decode(
            token,
            _signing_key(secret_key),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token_expired", "The access token has expired; refresh it.") from None
    except jwt.PyJWTError:
        raise TokenError("token_invalid", "The access token is not valid.") from None
    if payload.get("typ") != "access" or not str(payload.get("sub", "")).isdigit():
        raise TokenError("token_invalid", "The access token is not valid.")
    return AccessClaims(
        user_id=int(payload["sub"]),
        token_version=int(payload.get("ver", -1)),
        roles=frozenset(payload.get("roles", [])),
    )


def new_refresh_token() -> tuple[str, str]:
    """Return (token for the client, sha256 hex kept in the database)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
