"""Opened rights (权益开放): entitlements with no cash value that residents claim with points or
unlock with a green level, and that the granting partner checks and consumes by code.

Points spent on a right leave circulation: they go to the issuance account of the region whose
rules are in force for the resident (nobody is paid for them, unlike a merchant redemption).
A claim locks the right's row first (stock and the per-user limit are decided under it), then
the wallet (``ledger.spend``); nothing else locks in the other order, so claims never deadlock.
Services flush; the request boundary commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from backend.db import db, utcnow
from backend.errors import Conflict, NotFound, field_error
from backend.models import OpenedRight, Partner, Resident, RightGrant, User
from backend.services import audit, idempotency, ledger, levels, wallets
from backend.services.pagination import keyset_page
from backend.services.regions import ancestors, get_region
from backend.services.scope import require_in_scope, scope_filter
from backend.validators import crockford_code, read_crockford

CODE_LENGTH = 10  # Crockford base32, 50 bits: hopeless to guess among the open codes


def normalise_code(raw: str) -> str:
    """What a partner types or scans: any case, dashes and spaces, O/I/L read as digits."""
    code = read_crockford(raw, CODE_LENGTH)
    if code is None:
        raise field_error("code", f"must be the {CODE_LENGTH}-character code of a granted right")
    return code


# --- operators -------------------------------------------------------------------------------------


def create(data: dict[str, Any], *, actor: User, now: datetime | None = None) -> OpenedRight:
    now = now or utcnow()
    region = get_region(data["region"]).code
    require_in_scope(actor, region)
    title = " ".join(data["title"].split())
    if not title:
        raise field_error("title", "must not be blank")
    partner = db.session.get(Partner, data["partner_id"])
    if partner is None:
        raise field_error("partner_id", f"no partner {data['partner_id']}", error="unknown_partner")
    if partner.status != "active":
        raise field_error("partner_id", "this partner is disabled and cannot honour a right", error="partner_disabled")
    price, min_level = data.get("points_price"), data.get("min_level")
    if price is None and min_level is None:
        raise field_error("points_price", "give points_price, min_level or both: how the right is claimed")
    if min_level is not None:
        names = [step["name"] for step in levels.ladder(region, now)]
        if min_level not in names:
            known = ", ".join(names) if names else "none: the rules in force there have no levels"
            raise field_error("min_level", f"{min_level!r} is not a level of the rules in force in {region} "
                                           f"(levels: {known})", error="unknown_level")
    if data["valid_until"] <= now:
        raise field_error("valid_until", "must be in the future")
    stock = data.get("stock")
    right = OpenedRight(
        region_code=region, partner_id=partner.id, kind=data["kind"], title=title,
        description=data.get("description", "").strip(), points_price=price, min_level=min_level,
        stock_total=stock, stock_left=stock, per_user_limit=data["per_user_limit"],
        code_valid_days=data["code_valid_days"], valid_until=data["valid_until"], status="active",
        created_by_user_id=actor.id, created_at=now,
    )
    db.session.add(right)
    db.session.flush()
    audit.record("right.create", "opened_right", right.id, actor=actor, region_code=region, after={
        "title": title, "kind": right.kind, "partner_id": partner.id, "points_price": price, "min_level": min_level,
        "stock": stock, "per_user_limit": right.per_user_limit, "valid_until": right.valid_until,
        "code_valid_days": right.code_valid_days})
    return right


def get(right_id: int) -> OpenedRight:
    right = db.session.get(OpenedRight, right_id)
    if right is None:
        raise NotFound(f"No right {right_id}.")
    return right


def get_scoped(right_id: int, actor: User) -> OpenedRight:
    right = get(right_id)
    require_in_scope(actor, right.region_code)
    return right


def browse(actor: User, *, before: int | None, limit: int) -> tuple[list[OpenedRight], int | None]:
    return keyset_page(scope_filter(select(OpenedRight), OpenedRight.region_code, actor), OpenedRight.id,
                       before=before, limit=limit)


def withdraw(right_id: int, *, actor: User, reason: str | None) -> OpenedRight:
    """No new claims. Codes already granted stay valid until they expire: the partner agreed to
    honour them and residents may have paid points for them."""
    right = get_scoped(right_id, actor)
    if right.status == "withdrawn":
        return right
    right.status = "withdrawn"
    db.session.flush()
    audit.record("right.withdraw", "opened_right", right.id, actor=actor, region_code=right.region_code,
                 before={"status": "active"}, after={"status": "withdrawn"}, reason=reason)
    return right


# --- residents -------------------------------------------------------------------------------------


def _visible(resident: Resident) -> list[str]:
    return ancestors(resident.region_code)


def _claimed_counts(resident_id: int, right_ids: list[int]) -> dict[int, int]:
    if not right_ids:
        return {}
    return dict(db.session.execute(
        select(RightGrant.right_id, func.count()).where(RightGrant.resident_id == resident_id,
                                                        RightGrant.right_id.in_(right_ids))
        .group_by(RightGrant.right_id)).all())


def _level_reached(right: OpenedRight, resident: Resident, grams: int, now: datetime,
                   ladders: dict[str, list[dict[str, Any]]]) -> bool:
    if right.min_level is None:
        return False
    # The level is named in the right's region's ladder; a resident of a district with its own
    # ladder is measured against it only when the right's region no longer has the level.
    for region in (right.region_code, resident.region_code):
        if region not in ladders:  # one rules lookup per region, however many rights are listed
            ladders[region] = levels.ladder(region, now)
        for step in ladders[region]:
            if step["name"] == right.min_level:
                return grams >= int(step["min_grams"])
    return False


def _why_not(right: OpenedRight, resident: Resident, *, claimed: int, grams: int, points: int, now: datetime,
             ladders: dict[str, list[dict[str, Any]]]) -> tuple[str | None, str | None]:
    """``(via, None)`` when the resident can claim now, else ``(None, reason)``."""
    if right.status != "active":
        return None, "right_withdrawn"
    if right.valid_until <= now:
        return None, "right_expired"
    if right.stock_left is not None and right.stock_left <= 0:
        return None, "out_of_stock"
    if claimed >= right.per_user_limit:
        return None, "limit_reached"
    if _level_reached(right, resident, grams, now, ladders):
        return "level", None
    if right.points_price is None:
        return None, "level_not_reached"
    if points < right.points_price:
        return None, "insufficient_points"
    return "points", None


def available(resident: Resident, *, before: int | None, limit: int,
              now: datetime | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Active, unexpired rights of the resident's region and the regions above it, with whether
    the resident can claim each one now and, if not, why."""
    now = now or utcnow()
    query = select(OpenedRight).where(OpenedRight.region_code.in_(_visible(resident)),
                                      OpenedRight.status == "active", OpenedRight.valid_until > now)
    rows, next_key = keyset_page(query, OpenedRight.id, before=before, limit=limit)
    counts = _claimed_counts(resident.id, [r.id for r in rows])
    balance = wallets.balance("resident_wallet", resident.id)
    grams, points = balance["reduction_g"], balance["points"]
    ladders: dict[str, list[dict[str, Any]]] = {}
    items = []
    for right in rows:
        via, reason = _why_not(right, resident, claimed=counts.get(right.id, 0), grams=grams, points=points, now=now,
                               ladders=ladders)
        items.append({**view(right), "claimed": counts.get(right.id, 0), "can_claim": via is not None,
                      "claim_via": via, "reason": reason})
    return items, next_key


def claim(resident: Resident, right_id: int, *, key: str | None,
          now: datetime | None = None) -> tuple[RightGrant, bool]:
    """Claim a right: by level when the resident has reached its ``min_level``, else for its points
    price. Returns ``(grant, created)``; a retry with the same ``Idempotency-Key`` returns the
    first grant (``created`` False)."""
    now = now or utcnow()
    if key is not None:
        previous = _previous(resident, right_id, key)
        if previous is not None:
            return previous, False
    right = db.session.scalar(select(OpenedRight).where(OpenedRight.id == right_id).with_for_update()
                              .execution_options(populate_existing=True))
    if right is None or right.region_code not in _visible(resident):
        raise NotFound(f"No right {right_id}.")
    if key is not None:  # a concurrent retry may have granted it while this one waited for the lock
        previous = _previous(resident, right_id, key)
        if previous is not None:
            return previous, False
    else:
        key = f"auto-{uuid.uuid4().hex}"
    claimed = _claimed_counts(resident.id, [right.id]).get(right.id, 0)
    grams = levels.lifetime_grams(resident.id)
    via, reason = _why_not(right, resident, claimed=claimed, grams=grams, points=right.points_price or 0, now=now,
                           ladders={})
    if via is None:
        raise Conflict(_MESSAGES[reason or ""].format(right=right, claimed=claimed), error=reason)
    if right.stock_left is not None:
        taken = db.session.execute(
            update(OpenedRight).where(OpenedRight.id == right.id, OpenedRight.stock_left > 0)
            .values(stock_left=OpenedRight.stock_left - 1).execution_options(synchronize_session=False))
        if taken.rowcount != 1:
            raise Conflict(_MESSAGES["out_of_stock"].format(right=right), error="out_of_stock")
        db.session.refresh(right)
    points, entry_id = 0, None
    if via == "points":
        assert right.points_price is not None
        version = ledger.rules_in_force(resident.region_code, now)
        issuance = ledger.accounts_for("issuance", [version.region_code])[version.region_code]
        points = right.points_price
        entry_id = ledger.spend(ledger.wallet_of_resident(resident.id), points, issuance, kind="spend",
                                key=f"right:{resident.id}:{key}", rule_version=version,
                                memo=f"Opened right: {right.title}"[:200], actor=resident.user)
    # A clash with an open code (one in 10^15 per open code) fails the unique constraint: a 409 to retry.
    grant = RightGrant(right_id=right.id, resident_id=resident.id, code=crockford_code(CODE_LENGTH), via=via,
                       points=points, entry_id=entry_id, idempotency_key=key, status="issued", issued_at=now,
                       expires_at=now + timedelta(days=right.code_valid_days))
    db.session.add(grant)
    db.session.flush()
    return grant, True


_MESSAGES = {
    "right_withdrawn": "The right '{right.title}' has been withdrawn.",
    "right_expired": "The right '{right.title}' can no longer be claimed.",
    "out_of_stock": "The right '{right.title}' is out of stock.",
    "limit_reached": "You have already claimed '{right.title}' {claimed} time(s), the most allowed.",
    "level_not_reached": "The right '{right.title}' needs the green level {right.min_level}.",
    "insufficient_points": "Not enough points for '{right.title}' ({right.points_price} needed).",
}


def _previous(resident: Resident, right_id: int, key: str) -> RightGrant | None:
    return idempotency.earlier(RightGrant, resident.id, key, same=lambda g: g.right_id == right_id,
                               what="another right")


def my_grants(resident: Resident, *, before: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    query = (select(RightGrant, OpenedRight).join(OpenedRight, OpenedRight.id == RightGrant.right_id)
             .where(RightGrant.resident_id == resident.id))
    rows, next_key = keyset_page(query, RightGrant.id, before=before, limit=limit)
    return [grant_view(grant, right) for grant, right in rows], next_key


# --- partners --------------------------------------------------------------------------------------


def _grant_of_partner(partner: Partner, raw_code: str, *, lock: bool) -> tuple[RightGrant, OpenedRight]:
    code = normalise_code(raw_code)
    query = (select(RightGrant, OpenedRight).join(OpenedRight, OpenedRight.id == RightGrant.right_id)
             .where(RightGrant.code == code))
    if lock:
        query = query.with_for_update(of=RightGrant).execution_options(populate_existing=True)
    row = db.session.execute(query).first()
    # Another partner's code is answered like an unknown one: a partner learns nothing of the rest.
    if row is None or row[1].partner_id != partner.id:
        raise NotFound("No right granted under this code.", error="unknown_code")
    return row[0], row[1]


def _expire_if_due(grant: RightGrant, now: datetime) -> None:
    if grant.status == "issued" and grant.expires_at <= now:
        grant.status = "expired"
        db.session.flush()


def check(partner: Partner, code: str, now: datetime | None = None) -> dict[str, Any]:
    grant, right = _grant_of_partner(partner, code, lock=False)
    _expire_if_due(grant, now or utcnow())
    return partner_view(grant, right)


def consume(partner: Partner, code: str, now: datetime | None = None) -> dict[str, Any]:
    """Honour a code once. The grant row is locked, so two tills consuming at once consume it once."""
    now = now or utcnow()
    grant, right = _grant_of_partner(partner, code, lock=True)
    _expire_if_due(grant, now)
    if grant.status == "consumed":
        raise Conflict(f"This code was already used at {grant.consumed_at:%Y-%m-%d %H:%M} UTC.",
                       error="already_consumed")
    if grant.status == "expired":
        error = Conflict(f"This code expired at {grant.expires_at:%Y-%m-%d %H:%M} UTC.", error="expired")
        error.keep_changes = True  # the grant stays marked expired although the request fails
        raise error
    grant.status = "consumed"
    grant.consumed_at = now
    db.session.flush()
    return partner_view(grant, right)


def expire_grants(now: datetime | None = None) -> int:
    """Mark issued grants whose code is past ``expires_at`` as expired; returns how many.

    The points are not refunded: the right was granted and its code could have been used for its
    whole validity (the partner kept its capacity for it, like a ticket not used). A refund would
    also let a resident hold stock for free by claiming and never using. Idempotent; flushes.
    """
    now = now or utcnow()
    result = db.session.execute(update(RightGrant).where(RightGrant.status == "issued", RightGrant.expires_at <= now)
                                .values(status="expired").execution_options(synchronize_session=False))
    db.session.flush()
    return int(result.rowcount or 0)


# --- views -----------------------------------------------------------------------------------------


def view(right: OpenedRight) -> dict[str, Any]:
    return {
        "id": right.id, "title": right.title, "description": right.description, "kind": right.kind,
        "region": right.region_code, "partner_id": right.partner_id, "points_price": right.points_price,
        "min_level": right.min_level, "stock_total": right.stock_total, "stock_left": right.stock_left,
        "per_user_limit": right.per_user_limit, "code_valid_days": right.code_valid_days,
        "valid_until": right.valid_until, "status": right.status, "created_at": right.created_at,
    }


def _status(grant: RightGrant) -> str:
    if grant.status == "issued" and grant.expires_at <= utcnow():
        return "expired"  # the scheduled job has not marked it yet
    return grant.status


def grant_view(grant: RightGrant, right: OpenedRight) -> dict[str, Any]:
    return {
        "id": grant.id, "code": grant.code, "right_id": right.id, "title": right.title, "kind": right.kind,
        "via": grant.via, "points": grant.points, "issued_at": grant.issued_at, "expires_at": grant.expires_at,
        "consumed_at": grant.consumed_at, "status": _status(grant),
    }


def partner_view(grant: RightGrant, right: OpenedRight) -> dict[str, Any]:
    resident = db.session.get(Resident, grant.resident_id)
    return {
        "code": grant.code, "status": grant.status, "title": right.title, "kind": right.kind,
        "right_id": right.id, "resident_display_name": resident.display_name if resident else None,
        "expires_at": grant.expires_at, "consumed_at": grant.consumed_at,
    }
