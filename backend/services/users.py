"""Login identities: creation, roles, passwords, disabling."""

from __future__ import annotations

import re

from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from backend.db import db, utcnow
from backend.errors import Conflict, Forbidden, NotFound, field_error
from backend.models import Merchant, MerchantStaff, RefreshToken, Resident, Role, User, UserRole
from backend.models.user import STAFF_ROLES
from backend.security.passwords import hash_password, verify_password
from backend.services import audit
from backend.services.regions import get_region, is_within

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
STAFF_ROLE_VALUES = tuple(r.value for r in STAFF_ROLES)


def normalize_username(username: str) -> str:
    value = username.strip().lower()
    if not USERNAME_RE.match(value):
        raise field_error(
            "username",
            "3-64 characters: letters, digits, dot, dash or underscore, starting with a letter or digit",
        )
    return value


def check_password_policy(password: str, username: str, *, field: str = "password") -> None:
    """NIST SP 800-63B style: length matters, composition rules do not."""
    if len(password) < 8:
        raise field_error(field, "must be at least 8 characters", error="weak_password")
    if len(password) > 128:
        raise field_error(field, "must be at most 128 characters")
    # Context-specific words (NIST SP 800-63B 5.1.1.2): the username itself must not carry it.
    if username.lower() in password.lower() or len(set(password)) < 3:
        raise field_error(field, "is too easy to guess", error="weak_password")


def _ensure_username_free(username: str) -> None:
    taken = db.session.scalar(select(func.count()).select_from(User).where(User.username == username))
    if taken:
        raise Conflict(f"The username {username!r} is taken.", error="username_taken",
                       errors={"json": {"username": ["is taken"]}})


def new_user(username: str, password: str, kind: str) -> User:
    username = normalize_username(username)
    check_password_policy(password, username)
    _ensure_username_free(username)
    user = User(username=username, password_hash=hash_password(password), kind=kind)
    db.session.add(user)
    db.session.flush()
    return user


def create_staff_user(
    username: str, password: str, roles: list[str], *, scope_region: str | None, actor: User | None
) -> User:
    roles = _validate_roles(roles)
    if scope_region is not None:
        get_region(scope_region, field="scope_region")
    if actor is not None and not _within(scope_region, actor.scope_region_code):
        # An admin of a region makes staff for that region only, never one who reaches beyond it.
        raise Forbidden(f"You administer {actor.scope_region_code}: give a scope_region within it.",
                        error="out_of_scope")
    user = new_user(username, password, "staff")
    user.scope_region_code = scope_region
    for role in roles:
        db.session.add(UserRole(user_id=user.id, role=role))
    db.session.flush()
    db.session.refresh(user, ["staff_roles"])
    audit.record("user.create", "user", user.id, actor=actor, region_code=scope_region,
                 after={"username": user.username, "roles": roles, "scope_region": scope_region})
    return user


def _validate_roles(roles: list[str]) -> list[str]:
    unique = sorted(set(roles))
    if not unique:
        raise field_error("roles", "give at least one role")
    for role in unique:
        if role == Role.RESIDENT:
            raise field_error("roles", "residents sign up themselves; a staff user cannot also be a resident")
        if role not in STAFF_ROLE_VALUES:
            raise field_error("roles", f"unknown role {role!r}; one of {', '.join(STAFF_ROLE_VALUES)}")
    return unique


def get_user(user_id: int, actor: User | None = None) -> User:
    """A user; with ``actor``, only one in the actor's region: staff scoped within it, a till's
    staff of a shop there, a resident living there (a national user: national admins only)."""
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user {user_id}.")
    if actor is not None and not _within(region_of(user), actor.scope_region_code):
        raise Forbidden(f"User {user_id} is outside your scope ({actor.scope_region_code}).", error="out_of_scope")
    return user


def _within(region: str | None, scope: str | None) -> bool:
    """Whether an actor of ``scope`` reaches ``region`` (None: national, reached by national actors only)."""
    return scope is None or (region is not None and is_within(region, scope))


def region_of(user: User) -> str | None:
    """The region a user belongs to (None: national staff)."""
    if user.kind == "resident":
        return db.session.scalar(select(Resident.region_code).where(Resident.user_id == user.id))
    if user.scope_region_code is not None:
        return user.scope_region_code
    return db.session.scalar(select(Merchant.region_code).join(MerchantStaff, MerchantStaff.merchant_id == Merchant.id)
                             .where(MerchantStaff.user_id == user.id))


def set_roles(user: User, roles: list[str], *, actor: User) -> User:
    if user.kind != "staff":
        raise field_error("roles", "a resident has no staff roles")
    roles = _validate_roles(roles)
    before = sorted(user.roles)
    if user.id == actor.id and Role.ADMIN in before and Role.ADMIN not in roles:
        raise Conflict("You cannot remove your own admin role; ask another admin.", error="self_demotion")
    user.staff_roles = [UserRole(user_id=user.id, role=r) for r in roles]
    user.token_version += 1
    db.session.flush()
    audit.record("user.roles", "user", user.id, actor=actor, before={"roles": before}, after={"roles": roles})
    return user


def set_active(user: User, active: bool, *, actor: User, reason: str | None = None) -> User:
    if user.id == actor.id and not active:
        raise Conflict("You cannot disable your own account.", error="self_disable")
    if user.is_active == active:
        return user
    user.is_active = active
    user.token_version += 1
    revoke_all_refresh_tokens(user.id)
    db.session.flush()
    audit.record("user.enable" if active else "user.disable", "user", user.id, actor=actor, reason=reason)
    return user


def change_password(user: User, current: str, new: str) -> None:
    if not verify_password(user.password_hash, current):
        raise field_error("current_password", "is not correct", error="wrong_password")
    check_password_policy(new, user.username, field="new_password")
    user.password_hash = hash_password(new)
    user.token_version += 1
    revoke_all_refresh_tokens(user.id)
    db.session.flush()


def revoke_all_refresh_tokens(user_id: int) -> None:
    db.session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def list_users(*, before: int | None, limit: int, role: str | None = None,
               actor: User | None = None) -> tuple[list[User], int | None]:
    from backend.services.pagination import keyset_page
    from backend.services.scope import descendants

    query = select(User).where(User.kind == "staff").options(selectinload(User.staff_roles))
    if actor is not None and actor.scope_region_code is not None:  # the staff of the actor's region
        regions = sorted(descendants(actor.scope_region_code))
        query = query.where(User.scope_region_code.in_(regions) | User.id.in_(
            select(MerchantStaff.user_id).join(Merchant, Merchant.id == MerchantStaff.merchant_id)
            .where(Merchant.region_code.in_(regions))))
    if role is not None:
        query = query.where(User.id.in_(select(UserRole.user_id).where(UserRole.role == role)))
    return keyset_page(query, User.id, before=before, limit=limit)
