"""Personal data: the export a resident may ask for, and account deletion by anonymisation.

Deletion keeps every ledger and registry row (the books must still balance and be auditable) but
cuts them loose from the person: the login is destroyed, the name replaced, memberships ended.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from backend.db import db, utcnow
from backend.errors import field_error
from backend.models import CommunityMember, Enterprise, RefreshToken, Resident
from backend.security.passwords import verify_password
from backend.services import households, residents, users
from backend.signals import resident_anonymise, resident_export

ANONYMOUS_NAME = "已注销用户"


def export(resident: Resident) -> dict[str, Any]:
    user = resident.user
    data: dict[str, Any] = {
        "exported_at": utcnow(),
        "account": {
            "username": user.username,
            "created_at": user.created_at,
            "last_login_at": user.last_login_at,
        },
        "profile": residents.profile(resident),
        "household": _household_section(resident),
        "communities": [
            {"id": c.id, "name": c.name, "region": c.region_code, "joined_at": m.joined_at}
            for c, m in _community_rows(resident)
        ],
        "enterprises": [
            {"id": e.id, "name": e.name, "uscc": e.uscc, "status": e.status, "created_at": e.created_at}
            for e in db.session.scalars(select(Enterprise).where(Enterprise.manager_resident_id == resident.id))
        ],
        "sessions": [
            {"issued_at": t.issued_at, "expires_at": t.expires_at, "revoked": t.revoked_at is not None}
            for t in db.session.scalars(
                select(RefreshToken).where(RefreshToken.user_id == user.id).order_by(RefreshToken.id)
            )
        ],
    }
    for _receiver, section in resident_export.send(resident):
        if section:
            name, content = section
            data[name] = content
    return data


def _household_section(resident: Resident) -> dict[str, Any] | None:
    household = residents.household_of(resident.id)
    if household is None:
        return None
    return {
        "id": household.id,
        "name": household.name,
        "is_owner": household.owner_resident_id == resident.id,
        "member_count": len(households.member_ids(household.id)),
    }


def _community_rows(resident: Resident) -> list[Any]:
    from backend.models import Community

    return list(db.session.execute(
        select(Community, CommunityMember)
        .join(CommunityMember, CommunityMember.community_id == Community.id)
        .where(CommunityMember.resident_id == resident.id)
        .order_by(Community.id)
    ).all())


def anonymise(resident: Resident, password: str) -> None:
    user = resident.user
    if not verify_password(user.password_hash, password):
        raise field_error("password", "is not correct", error="wrong_password")
    households.hand_over_or_close(resident)
    for member in db.session.scalars(select(CommunityMember).where(CommunityMember.resident_id == resident.id)):
        db.session.delete(member)
    for enterprise in db.session.scalars(select(Enterprise).where(Enterprise.manager_resident_id == resident.id)):
        # The business stays registered; it simply has no manager until one is assigned.
        enterprise.manager_resident_id = None
    resident_anonymise.send(resident)
    users.revoke_all_refresh_tokens(user.id)
    user.username = f"deleted-{resident.id}-{secrets.token_hex(4)}"
    user.password_hash = None
    user.is_active = False
    user.token_version += 1
    user.last_login_at = None
    resident.display_name = ANONYMOUS_NAME
    resident.anonymised_at = utcnow()
    db.session.flush()
