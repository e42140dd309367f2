"""Merchants and their till staff."""

from __future__ import annotations

from sqlalchemy import select

from backend.db import db
from backend.errors import Conflict, NotFound, field_error
from backend.models import Merchant, MerchantStaff, Role, User, UserRole
from backend.services import audit, users
from backend.services.pagination import keyset_page
from backend.services.regions import get_region
from backend.services.scope import require_in_scope, scope_filter


def create(name: str, region: str, *, actor: User) -> Merchant:
    name = " ".join(name.split())
    if not name:
        raise field_error("name", "must not be blank")
    region_row = get_region(region)
    require_in_scope(actor, region_row.code)
    merchant = Merchant(name=name, region_code=region_row.code)
    db.session.add(merchant)
    db.session.flush()
    audit.record("merchant.create", "merchant", merchant.id, actor=actor, region_code=merchant.region_code,
                 after={"name": merchant.name, "region": merchant.region_code})
    return merchant


def get(merchant_id: int) -> Merchant:
    merchant = db.session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound(f"No merchant {merchant_id}.")
    return merchant


def get_scoped(merchant_id: int, actor: User) -> Merchant:
    merchant = get(merchant_id)
    require_in_scope(actor, merchant.region_code)
    return merchant


def add_staff(merchant_id: int, username: str, password: str, *, actor: User) -> User:
    merchant = get_scoped(merchant_id, actor)
    if merchant.status != "active":
        raise Conflict("A disabled merchant cannot get new staff.", error="merchant_disabled")
    user = users.new_user(username, password, "staff")
    user.scope_region_code = merchant.region_code
    db.session.add(UserRole(user_id=user.id, role=Role.MERCHANT_STAFF.value))
    db.session.add(MerchantStaff(user_id=user.id, merchant_id=merchant.id))
    db.session.flush()
    audit.record("merchant.staff_add", "merchant", merchant.id, actor=actor, region_code=merchant.region_code,
                 after={"staff_user_id": user.id, "username": user.username})
    return user


def staff_of(merchant_id: int) -> list[User]:
    return list(db.session.scalars(
        select(User).join(MerchantStaff, MerchantStaff.user_id == User.id)
        .where(MerchantStaff.merchant_id == merchant_id).order_by(User.id)
    ))


def merchant_of_staff(user: User) -> Merchant:
    merchant = db.session.scalar(
        select(Merchant).join(MerchantStaff, MerchantStaff.merchant_id == Merchant.id)
        .where(MerchantStaff.user_id == user.id)
    )
    if merchant is None:
        raise NotFound("This login is not attached to a merchant.", error="no_merchant")
    return merchant


def set_status(merchant_id: int, status: str, *, actor: User, reason: str | None) -> Merchant:
    merchant = get_scoped(merchant_id, actor)
    if merchant.status == status:
        return merchant
    before = merchant.status
    merchant.status = status
    for staff in staff_of(merchant.id):
        # A disabled shop's tills stop working at once; enabling again re-activates them.
        staff.is_active = status == "active"
        staff.token_version += 1
        users.revoke_all_refresh_tokens(staff.id)
    db.session.flush()
    audit.record("merchant.enable" if status == "active" else "merchant.disable", "merchant", merchant.id,
                 actor=actor, region_code=merchant.region_code, before={"status": before},
                 after={"status": status}, reason=reason)
    return merchant


def browse(actor: User, *, before: int | None, limit: int) -> tuple[list[Merchant], int | None]:
    return keyset_page(scope_filter(select(Merchant), Merchant.region_code, actor), Merchant.id,
                       before=before, limit=limit)
