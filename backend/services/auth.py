"""Logging in, refreshing and revoking sessions, and authenticating bearer tokens.

Browser sessions (the web console) are logins too: one ``refresh_tokens`` row each, whose token is
thrown away when it is made, so nothing can ever refresh with it. The row's family is the session's
handle (kept in the signed cookie); revoking the row ends the session on the server, and whatever
ends a user's refresh tokens (disabling, a new password) ends their browser sessions with them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, bindparam, select, text, update
from sqlalchemy.orm import joinedload

from backend.config import current_settings as settings
from backend.db import PREPARE, db, utcnow
from backend.errors import Forbidden, Unauthorized
from backend.models import RefreshToken, Resident, User
from backend.security import tokens
from backend.security.passwords import hash_password, needs_rehash, verify_password


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int

    def as_dict(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
        }


def _check_password(username: str, password: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username.strip().lower()))
    # verify_password runs even for an unknown username, so timing does not reveal which exist.
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        raise Unauthorized("The username or password is not correct.", error="invalid_credentials")
    return user


def _logged_in(user: User, password: str) -> None:
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()


def login(username: str, password: str) -> TokenPair:
    user = _check_password(username, password)
    _logged_in(user, password)
    return _issue(user, family=secrets.token_hex(16))


@dataclass(frozen=True)
class BrowserSession:
    user: User
    handle: str  # the refresh-token family of the session's row
    expires_at: datetime


def open_browser_session(username: str, password: str, *, roles: frozenset[str], ttl: int) -> BrowserSession:
    """Log in for a server-rendered page: only users holding one of ``roles``; ends after ``ttl`` seconds."""
    user = _check_password(username, password)
    if not (user.roles & roles):
        raise Forbidden(f"This login is for {', '.join(sorted(roles))} accounts only.", error="role_required")
    _logged_in(user, password)
    now = utcnow()
    handle = secrets.token_hex(16)
    _, digest = tokens.new_refresh_token()  # the token itself is dropped: the session can never refresh
    expires_at = now + timedelta(seconds=ttl)
    db.session.add(RefreshToken(user_id=user.id, token_hash=digest, family=handle, expires_at=expires_at))
    db.session.flush()
    return BrowserSession(user, handle, expires_at)


def browser_session_user(handle: str, user_id: int) -> User | None:
    """The user of a live browser session (not revoked, not expired, account active), roles loaded."""
    return db.session.scalars(
        select(User).join(RefreshToken, RefreshToken.user_id == User.id)
        .where(RefreshToken.family == handle, RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None),
               RefreshToken.expires_at > utcnow(), User.is_active.is_(True), User.password_hash.is_not(None))
        .options(joinedload(User.staff_roles)).limit(1)).unique().first()


def close_browser_session(handle: str) -> None:
    db.session.execute(update(RefreshToken).where(RefreshToken.family == handle, RefreshToken.revoked_at.is_(None))
                       .values(revoked_at=utcnow()))


def refresh(refresh_token: str) -> TokenPair:
    row = db.session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == tokens.hash_refresh_token(refresh_token))
        .with_for_update()
    )
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthorized("The refresh token is not valid; log in again.", error="refresh_invalid")
    if row.used_at is not None:
        # A rotated token came back: someone kept a copy. End every session of that login.
        db.session.execute(
            update(RefreshToken).where(RefreshToken.family == row.family).values(revoked_at=now)
        )
        error = Unauthorized("The refresh token was already used; log in again.", error="refresh_reused")
        error.keep_changes = True  # the revocation must stick although the request fails
        raise error
    user = db.session.get(User, row.user_id)
    if user is None or not user.is_active or user.password_hash is None:
        raise Unauthorized("The account is no longer active.", error="account_inactive")
    row.used_at = now
    return _issue(user, family=row.family)


def logout(refresh_token: str) -> None:
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == tokens.hash_refresh_token(refresh_token))
        .values(revoked_at=utcnow())
    )


def _issue(user: User, *, family: str) -> TokenPair:
    cfg = settings()
    now = utcnow()
    access = tokens.issue_access_token(
        cfg.secret_key, user_id=user.id, token_version=user.token_version, roles=user.roles,
        now=now, ttl=cfg.access_token_ttl,
    )
    raw, digest = tokens.new_refresh_token()
    db.session.add(RefreshToken(
        user_id=user.id, token_hash=digest, family=family,
        expires_at=now + timedelta(seconds=cfg.refresh_token_ttl),
    ))
    db.session.flush()
    return TokenPair(access, cfg.access_token_ttl, raw, cfg.refresh_token_ttl)


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the user behind a valid, current access token, their roles as the
    database has them (never the token's claims) and, for a resident, the resident's id."""

    user_id: int
    kind: str  # resident | staff
    roles: frozenset[str]
    resident_id: int | None


# Every authenticated request runs this, so it is one round trip with no ORM objects built: the
# user's state, the resident's id and the staff roles (one row per role; one with NULL for none).
_AUTHENTICATE = text(
    "SELECT u.is_active, u.token_version, u.kind, r.id, ur.role FROM users u"
    " LEFT JOIN residents r ON r.user_id = u.id"
    " LEFT JOIN user_roles ur ON ur.user_id = u.id"
    " WHERE u.id = :user_id"
).bindparams(bindparam("user_id", type_=BigInteger)).execution_options(**{PREPARE: True})


def authenticate(bearer: str) -> Principal:
    """The principal behind an access token, if the token is valid and still current (the user
    is active and the token's version is the user's); 401 otherwise."""
    try:
        claims = tokens.decode_access_token(settings().secret_key, bearer)
    except tokens.TokenError as exc:
        raise Unauthorized(exc.message, error=exc.error) from None
    rows = db.session.execute(_AUTHENTICATE, {"user_id": claims.user_id}).all()
    if not rows or not rows[0][0] or rows[0][1] != claims.token_version:
        raise Unauthorized("The access token has been revoked; log in again.", error="token_revoked")
    kind, resident_id = rows[0][2], rows[0][3]
    roles = frozenset({"resident"}) if kind == "resident" else frozenset(row[4] for row in rows if row[4])
    return Principal(claims.user_id, kind, roles, resident_id)


def user_of(principal: Principal) -> User:
    """The principal's user row, loaded when a view needs more than its id and roles."""
    options = [joinedload(User.staff_roles)] if principal.kind == "staff" else []
    user = db.session.get(User, principal.user_id, options=options)
    if user is None:  # users are never deleted; anonymised ones fail authenticate
        raise Unauthorized("The access token has been revoked; log in again.", error="token_revoked")
    return user


def resident_of(principal: Principal) -> Resident | None:
    if principal.resident_id is None:
        return None
    return db.session.get(Resident, principal.resident_id)
