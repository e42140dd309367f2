"""Residents: sign-up and profile."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.db import db
from backend.errors import Forbidden, field_error
from backend.models import Community, CommunityMember, Household, HouseholdMember, Resident, User
from backend.services import users
from backend.services.regions import get_region


def sign_up(username: str, password: str, display_name: str, region: str) -> Resident:
    display_name = _clean_display_name(display_name)
    region_row = get_region(region)
    user = users.new_user(username, password, "resident")
    resident = Resident(user_id=user.id, display_name=display_name, region_code=region_row.code)
    db.session.add(resident)
    db.session.flush()
    return resident


def _clean_display_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise field_error("display_name", "must not be blank")
    return name


def resident_of(user: User) -> Resident:
    resident = db.session.scalar(select(Resident).where(Resident.user_id == user.id))
    if resident is None:
        raise Forbidden("This endpoint is for residents.", error="not_a_resident")
    return resident


def update_profile(resident: Resident, *, display_name: str | None, region: str | None) -> Resident:
    if display_name is not None:
        resident.display_name = _clean_display_name(display_name)
    if region is not None:
        resident.region_code = get_region(region).code
    db.session.flush()
    return resident


def household_of(resident_id: int) -> Household | None:
    return db.session.scalar(
        select(Household)
        .join(HouseholdMember, HouseholdMember.household_id == Household.id)
        .where(HouseholdMember.resident_id == resident_id)
    )


def communities_of(resident_id: int) -> list[Community]:
    return list(db.session.scalars(
        select(Community)
        .join(CommunityMember, CommunityMember.community_id == Community.id)
        .where(CommunityMember.resident_id == resident_id)
        .order_by(Community.name)
    ))


def profile(resident: Resident) -> dict[str, Any]:
    household = household_of(resident.id)
    return {
        "id": resident.id,
        "username": resident.user.username,
        "display_name": resident.display_name,
        "region": resident.region_code,
        "created_at": resident.created_at,
        "household": None if household is None else {
            "id": household.id,
            "name": household.name,
            "is_owner": household.owner_resident_id == resident.id,
        },
        "communities": [{"id": c.id, "name": c.name, "region": c.region_code} for c in communities_of(resident.id)],
    }
