"""Households: create, join by invite code, leave, transfer ownership, rotate the code.

The database guarantees one household per resident (unique ``household_members.resident_id``);
writers lock the household row first so member limits and ownership hold under concurrency.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from backend.db import db, utcnow
from backend.errors import Conflict, Forbidden, NotFound, field_error
from backend.models import Household, HouseholdMember, Resident
from backend.services.residents import household_of
from backend.validators import short_code

MAX_MEMBERS = 12
INVITE_CODE_LENGTH = 8


def _new_invite_code() -> str:
    for _ in range(10):
        code = short_code(INVITE_CODE_LENGTH)
        if db.session.scalar(select(Household.id).where(Household.invite_code == code)) is None:
            return code
    raise Conflict("Could not allocate an invite code; try again.", error="invite_code_exhausted")


def _ensure_not_in_household(resident: Resident) -> None:
    current = household_of(resident.id)
    if current is not None:
        raise Conflict(
            "You already belong to a household; leave it first.",
            error="already_in_household",
            errors={"household_id": current.id},
        )


def create(resident: Resident, name: str) -> Household:
    _ensure_not_in_household(resident)
    household = Household(
        name=" ".join(name.split()) or "Household",
        region_code=resident.region_code,
        owner_resident_id=resident.id,
        invite_code=_new_invite_code(),
    )
    db.session.add(household)
    db.session.flush()
    _add_member(household, resident)
    return household


def _add_member(household: Household, resident: Resident) -> None:
    """The unique index on resident_id is the final word when two requests race."""
    try:
        with db.session.begin_nested():
            db.session.add(HouseholdMember(household_id=household.id, resident_id=resident.id))
            db.session.flush()
    except IntegrityError:
        raise Conflict("You already belong to a household; leave it first.", error="already_in_household") from None


def locked(household_id: int) -> Household:
    household = db.session.scalar(select(Household).where(Household.id == household_id).with_for_update())
    if household is None:
        raise NotFound(f"No household {household_id}.")
    return household


def member_ids(household_id: int) -> list[int]:
    return list(db.session.scalars(
        select(HouseholdMember.resident_id)
        .where(HouseholdMember.household_id == household_id)
        .order_by(HouseholdMember.joined_at, HouseholdMember.resident_id)
    ))


def get_for_member(resident: Resident, household_id: int) -> Household:
    household = db.session.get(Household, household_id)
    if household is None:
        raise NotFound(f"No household {household_id}.")
    if resident.id not in member_ids(household_id):
        raise Forbidden("Only members can see a household.", error="not_a_member")
    return household


def join(resident: Resident, invite_code: str) -> Household:
    code = invite_code.strip().upper()
    household_id = db.session.scalar(
        select(Household.id).where(Household.invite_code == code, Household.status == "active")
    )
    if household_id is None:
        raise field_error("invite_code", "no household has this invite code", error="unknown_invite_code")
    household = locked(household_id)
    _ensure_not_in_household(resident)
    count = db.session.scalar(
        select(func.count()).select_from(HouseholdMember).where(HouseholdMember.household_id == household.id)
    )
    if count >= MAX_MEMBERS:
        raise Conflict(f"A household has at most {MAX_MEMBERS} members.", error="household_full")
    _add_member(household, resident)
    return household


def _owned(resident: Resident, household_id: int) -> Household:
    household = locked(household_id)
    if household.owner_resident_id != resident.id:
        raise Forbidden("Only the household's owner can do this.", error="not_owner")
    return household


def rotate_invite_code(resident: Resident, household_id: int) -> Household:
    household = _owned(resident, household_id)
    household.invite_code = _new_invite_code()
    db.session.flush()
    return household


def transfer(resident: Resident, household_id: int, new_owner_id: int) -> Household:
    household = _owned(resident, household_id)
    if new_owner_id not in member_ids(household.id):
        raise field_error("resident_id", "the new owner must be a member of the household", error="not_a_member")
    household.owner_resident_id = new_owner_id
    db.session.flush()
    return household


def remove_member(resident: Resident, household_id: int, member_id: int) -> Household:
    household = _owned(resident, household_id)
    if member_id == resident.id:
        raise Conflict("To leave your own household use leave.", error="use_leave")
    return _remove(household, member_id)


def leave(resident: Resident, household_id: int) -> Household:
    household = locked(household_id)
    members = member_ids(household.id)
    if resident.id not in members:
        raise Forbidden("You are not a member of this household.", error="not_a_member")
    if household.owner_resident_id == resident.id and len(members) > 1:
        raise Conflict(
            "Transfer ownership to another member before leaving.", error="owner_must_transfer"
        )
    return _remove(household, resident.id)


def _remove(household: Household, resident_id: int) -> Household:
    member = db.session.get(HouseholdMember, (household.id, resident_id))
    if member is None:
        raise NotFound(f"Resident {resident_id} is not a member of this household.")
    db.session.delete(member)
    db.session.flush()
    if not member_ids(household.id):
        # The last member left: the household is closed and its code stops working. Its wallet
        # and history stay, as every ledger row must.
        household.status = "closed"
        household.closed_at = utcnow()
        household.invite_code = None
        household.owner_resident_id = None
    db.session.flush()
    return household


def hand_over_or_close(resident: Resident) -> None:
    """Used when a resident deletes their account: the longest-standing member becomes owner."""
    household = household_of(resident.id)
    if household is None:
        return
    household = locked(household.id)
    others = [m for m in member_ids(household.id) if m != resident.id]
    if household.owner_resident_id == resident.id and others:
        household.owner_resident_id = others[0]
    _remove(household, resident.id)


def members(household_id: int) -> list[tuple[Resident, HouseholdMember]]:
    return list(db.session.execute(
        select(Resident, HouseholdMember)
        .join(HouseholdMember, HouseholdMember.resident_id == Resident.id)
        .where(HouseholdMember.household_id == household_id)
        .order_by(HouseholdMember.joined_at, Resident.id)
    ).all())
