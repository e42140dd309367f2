"""Enterprise accounts for small and micro businesses: a resident applies, an operator reviews."""

from __future__ import annotations

from sqlalchemy import select

from backend.db import db, utcnow
from backend.errors import Conflict, Forbidden, NotFound, field_error
from backend.models import Enterprise, Resident, User
from backend.services import audit
from backend.services.pagination import keyset_page
from backend.services.regions import get_region
from backend.services.scope import require_in_scope, scope_filter
from backend.validators import uscc_problem


def apply(resident: Resident, name: str, region: str, uscc: str) -> Enterprise:
    code = uscc.strip().upper()
    problem = uscc_problem(code)
    if problem:
        raise field_error("uscc", problem, error="invalid_uscc")
    name = " ".join(name.split())
    if not name:
        raise field_error("name", "must not be blank")
    region_row = get_region(region)
    if db.session.scalar(select(Enterprise.id).where(Enterprise.uscc == code)) is not None:
        raise Conflict("An enterprise with this credit code is already registered.", error="uscc_taken",
                       errors={"json": {"uscc": ["is already registered"]}})
    enterprise = Enterprise(name=name, uscc=code, region_code=region_row.code, manager_resident_id=resident.id)
    db.session.add(enterprise)
    db.session.flush()
    return enterprise


def get(enterprise_id: int) -> Enterprise:
    enterprise = db.session.get(Enterprise, enterprise_id)
    if enterprise is None:
        raise NotFound(f"No enterprise {enterprise_id}.")
    return enterprise


def get_managed(resident: Resident, enterprise_id: int) -> Enterprise:
    enterprise = get(enterprise_id)
    if enterprise.manager_resident_id != resident.id:
        raise Forbidden("Only the enterprise's manager can see it.", error="not_manager")
    return enterprise


def managed_by(resident: Resident) -> list[Enterprise]:
    return list(db.session.scalars(
        select(Enterprise).where(Enterprise.manager_resident_id == resident.id).order_by(Enterprise.id)
    ))


_TRANSITIONS = {
    "approve": ({"pending", "suspended"}, "active"),
    "reject": ({"pending"}, "rejected"),
    "suspend": ({"active"}, "suspended"),
}


def review(enterprise_id: int, decision: str, *, actor: User, note: str | None) -> Enterprise:
    enterprise = db.session.scalar(select(Enterprise).where(Enterprise.id == enterprise_id).with_for_update())
    if enterprise is None:
        raise NotFound(f"No enterprise {enterprise_id}.")
    require_in_scope(actor, enterprise.region_code)
    allowed_from, target = _TRANSITIONS[decision]
    if enterprise.status not in allowed_from:
        raise Conflict(f"An enterprise that is {enterprise.status} cannot be {target}.", error="invalid_transition")
    if decision != "approve" and not note:
        raise field_error("note", "give a reason", error="reason_required")
    before = enterprise.status
    enterprise.status = target
    enterprise.reviewed_by_user_id = actor.id
    enterprise.reviewed_at = utcnow()
    enterprise.review_note = note
    db.session.flush()
    audit.record(f"enterprise.{decision}", "enterprise", enterprise.id, actor=actor,
                 region_code=enterprise.region_code, before={"status": before},
                 after={"status": target, "uscc": enterprise.uscc, "name": enterprise.name}, reason=note)
    return enterprise


def browse(actor: User, *, status: str | None, before: int | None, limit: int) -> tuple[list[Enterprise], int | None]:
    query = scope_filter(select(Enterprise), Enterprise.region_code, actor)
    if status is not None:
        query = query.where(Enterprise.status == status)
    return keyset_page(query, Enterprise.id, before=before, limit=limit)
