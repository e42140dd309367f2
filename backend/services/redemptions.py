"""Merchant offers and redemptions (DESIGN §9): reserve → a code → the merchant confirms, or the
resident cancels, or the hold times out.

Reserving spends the points into the merchant's hold account (oldest-expiring lots first) and
takes one unit of stock; confirming moves the hold to the merchant's settlement account;
cancelling or timing out gives the points back into the very lots they came from, with their
original expiry, and puts the unit back. Locks are always taken in one order — redemption, then
wallet, then offer — so concurrent reservations, cancellations and the timeout job never deadlock;
the database itself refuses an oversold offer (``stock_left >= 0``) and an overdrawn wallet.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import contains_eager

from backend.db import db, utcnow
from backend.errors import Conflict, NotFound, field_error
from backend.models import Merchant, MerchantStaff, Offer, OfferRegion, Redemption, Region, Resident, User
from backend.services import audit, idempotency, ledger, merchants
from backend.services.pagination import keyset_page
from backend.services.regions import ancestors, get_region
from backend.validators import crockford_code, read_crockford

HOLD_TIMEOUT = timedelta(minutes=15)
CODE_LENGTH = 10  # Crockford base32, 50 bits: hopeless to guess among a shop's open codes
QR_PREFIX = "CPR1"
OPEN = ("reserved", "fulfilled")  # what counts against an offer's per-user limit


def display_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def qr_payload(redemption: Redemption) -> str:
    return f"{QR_PREFIX}:{redemption.id}:{redemption.code}"


def normalise_code(raw: str) -> str:
    """What a till types or scans: the QR payload, or the code in any case, with or without its dash."""
    text = raw.strip()
    if text.upper().startswith(f"{QR_PREFIX}:"):
        text = text.rsplit(":", 1)[-1]
    code = read_crockford(text, CODE_LENGTH)
    if code is None:
        raise field_error("code", f"must be the {CODE_LENGTH}-character code or the QR payload of a redemption")
    return code


# --- offers ----------------------------------------------------------------------------------------


def _regions(codes: list[str] | None, merchant: Merchant) -> list[str]:
    if not codes:
        return [merchant.region_code]
    return sorted({get_region(code, field="regions").code for code in codes})


def create_offer(actor: User, data: dict[str, Any]) -> Offer:
    merchant = merchants.merchant_of_staff(actor)
    if merchant.status != "active":
        raise Conflict("A disabled merchant cannot publish offers.", error="merchant_disabled")
    now = utcnow()
    valid_from = data.get("valid_from") or now
    if data["valid_until"] <= valid_from:
        raise field_error("valid_until", "must be after valid_from")
    if data["valid_until"] <= now:
        raise field_error("valid_until", "must be in the future")
    title = " ".join(data["title"].split())
    if not title:
        raise field_error("title", "must not be blank")
    offer = Offer(merchant_id=merchant.id, title=title, description=data.get("description", "").strip(),
                  points_price=data["points_price"], stock_total=data["stock"], stock_left=data["stock"],
                  per_user_limit=data.get("per_user_limit", 1), valid_from=valid_from,
                  valid_until=data["valid_until"], status="active", created_by_user_id=actor.id,
                  created_at=now, updated_at=now)
    db.session.add(offer)
    db.session.flush()
    db.session.add_all([OfferRegion(offer_id=offer.id, region_code=code)
                        for code in _regions(data.get("regions"), merchant)])
    db.session.flush()
    audit.record("offer.create", "offer", offer.id, actor=actor, region_code=merchant.region_code,
                 after={"title": offer.title, "points_price": offer.points_price, "stock": offer.stock_total})
    return offer


def _own_offer(actor: User, offer_id: int) -> tuple[Offer, Merchant]:
    """The offer, locked, if it is the actor's merchant's: another shop's offer does not exist for you."""
    merchant = merchants.merchant_of_staff(actor)
    offer = db.session.scalar(select(Offer).where(Offer.id == offer_id).with_for_update())
    if offer is None or offer.merchant_id != merchant.id:
        raise NotFound(f"No offer {offer_id} at your merchant.")
    return offer, merchant


def update_offer(actor: User, offer_id: int, changes: dict[str, Any]) -> Offer:
    """Edit text, extend the window, add stock or withdraw; the price of an offer never changes
    (a reservation already made would not match it): withdraw it and publish another."""
    offer, merchant = _own_offer(actor, offer_id)
    if offer.status == "withdrawn":
        raise Conflict(f"Offer {offer_id} is withdrawn.", error="offer_withdrawn")
    before = {"title": offer.title, "stock_total": offer.stock_total, "valid_until": offer.valid_until.isoformat(),
              "per_user_limit": offer.per_user_limit, "status": offer.status}
    if "title" in changes:
        title = " ".join(changes["title"].split())
        if not title:
            raise field_error("title", "must not be blank")
        offer.title = title
    if "description" in changes:
        offer.description = changes["description"].strip()
    if "valid_until" in changes:
        if changes["valid_until"] <= max(offer.valid_from, utcnow()):
            raise field_error("valid_until", "must be in the future and after valid_from")
        offer.valid_until = changes["valid_until"]
    if "per_user_limit" in changes:
        offer.per_user_limit = changes["per_user_limit"]
    if "add_stock" in changes:
        offer.stock_total += changes["add_stock"]
        offer.stock_left += changes["add_stock"]
    if changes.get("status") == "withdrawn":
        offer.status = "withdrawn"
    offer.updated_at = utcnow()
    db.session.flush()
    audit.record("offer.update", "offer", offer.id, actor=actor, region_code=merchant.region_code, before=before,
                 after={k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in changes.items()})
    return offer


def merchant_offers(actor: User, *, before: int | None, limit: int) -> tuple[list[Offer], int | None]:
    merchant = merchants.merchant_of_staff(actor)
    return keyset_page(select(Offer).where(Offer.merchant_id == merchant.id), Offer.id, before=before, limit=limit)


def _visible(now: datetime) -> Any:
    return (Offer.status == "active") & (Offer.valid_from <= now) & (Offer.valid_until > now)


def offers_page(region: str | None, *, before: int | None, limit: int) -> tuple[list[Offer], int | None]:
    """Offers open now, for residents of ``region`` (shown there or anywhere above it)."""
    now = utcnow()
    query = select(Offer).join(Merchant, Merchant.id == Offer.merchant_id).where(_visible(now),
                                                                                Merchant.status == "active")
    if region is not None:
        if db.session.get(Region, region) is None:
            raise field_error("region", f"unknown region code {region!r}", error="unknown_region", location="query")
        chain = ancestors(region)
        query = query.where(Offer.id.in_(select(OfferRegion.offer_id).where(OfferRegion.region_code.in_(chain))))
    return keyset_page(query, Offer.id, before=before, limit=limit)


def get_offer(offer_id: int) -> Offer:
    offer = db.session.get(Offer, offer_id)
    if offer is None:
        raise NotFound(f"No offer {offer_id}.")
    return offer


def offer_regions(offer_ids: list[int]) -> dict[int, list[str]]:
    regions: dict[int, list[str]] = {i: [] for i in offer_ids}
    for offer_id, code in db.session.execute(select(OfferRegion.offer_id, OfferRegion.region_code)
                                             .where(OfferRegion.offer_id.in_(offer_ids))
                                             .order_by(OfferRegion.region_code)):
        regions[offer_id].append(code)
    return regions


# --- redemptions -----------------------------------------------------------------------------------


def _earlier(resident_id: int, key: str, offer_id: int) -> Redemption | None:
    return idempotency.earlier(Redemption, resident_id, key, same=lambda r: r.offer_id == offer_id,
                               what="another offer")


def reserve(resident: Resident, offer_id: int, idempotency_key: str, *,
            hold: timedelta = HOLD_TIMEOUT) -> tuple[Redemption, bool]:
    """Hold the offer's price and one unit of stock; (redemption, created). A retry with the
    same key returns the first redemption, whatever happened to it since."""
    wallet = ledger.wallet_of_resident(resident.id)
    hold_key = f"redeem:hold:{resident.id}:{idempotency_key}"
    # Serialises this resident's reservations: the retry and per-person limit checks below hold.
    locked = ledger.lock_wallet(wallet, hold_key)
    # A redemption and its hold are written together: no hold under this key, no redemption either.
    existing = _earlier(resident.id, idempotency_key, offer_id) if locked.posted is not None else None
    if existing is not None:
        return existing, False
    shown_here = (select(OfferRegion.offer_id).where(OfferRegion.offer_id == Offer.id,
                                                     OfferRegion.region_code.in_(ancestors(resident.region_code)))
                  .exists())
    taken = (select(func.count()).select_from(Redemption)
             .where(Redemption.offer_id == Offer.id, Redemption.resident_id == resident.id,
                    Redemption.status.in_(OPEN)).scalar_subquery())
    row = db.session.execute(select(Offer, Merchant.status, Merchant.region_code, shown_here, taken)
                             .join(Merchant, Merchant.id == Offer.merchant_id).where(Offer.id == offer_id)
                             .with_for_update(of=Offer)).first()
    if row is None:
        raise NotFound(f"No offer {offer_id}.")
    offer, merchant_status, merchant_region, shown, taken_count = row
    now = utcnow()
    if offer.status != "active" or merchant_status != "active":
        raise Conflict(f"Offer {offer_id} is no longer offered.", error="offer_withdrawn")
    if not offer.valid_from <= now < offer.valid_until:
        raise Conflict(f"Offer {offer_id} is not valid now.", error="offer_expired")
    if not shown:
        raise Conflict(f"Offer {offer_id} is not offered in your region.", error="not_offered_here")
    if offer.stock_left <= 0:
        raise Conflict(f"Offer {offer_id} is out of stock.", error="out_of_stock")
    if taken_count >= offer.per_user_limit:
        raise Conflict(f"You have already redeemed offer {offer_id} {taken_count} time(s), its limit per person.",
                       error="per_user_limit")
    version = ledger.rules_in_force(merchant_region, now)
    holds = ledger.accounts_for("redemption_holds", [offer.merchant_id])[offer.merchant_id]
    entry = ledger.spend(wallet, offer.points_price, holds, kind="spend", key=hold_key, rule_version=version,
                         memo=f"redemption hold: {offer.title}"[:200], locked=locked)
    offer.stock_left -= 1
    # A clash with an open code (one in 10^15 per open code) fails the unique constraint: a 409 to retry.
    redemption = Redemption(offer=offer, merchant_id=offer.merchant_id, resident_id=resident.id,
                            account_id=wallet,
                            points=offer.points_price, code=crockford_code(CODE_LENGTH),
                            idempotency_key=idempotency_key, status="reserved", hold_entry_id=entry,
                            reserved_at=now, expires_at=now + hold)
    db.session.add(redemption)
    db.session.flush()
    return redemption, True


def _locked(query: Any) -> Redemption | None:
    return db.session.scalar(query.with_for_update())


def _give_back(redemption: Redemption, status: str, actor: User | None) -> None:
    entry = ledger.give_back(redemption.hold_entry_id, key=f"redeem:return:{redemption.id}", actor=actor,
                             memo=f"redemption {redemption.id} {status}: points returned")
    db.session.execute(update(Offer).where(Offer.id == redemption.offer_id, Offer.stock_left < Offer.stock_total)
                       .values(stock_left=Offer.stock_left + 1).execution_options(synchronize_session=False))
    redemption.status = status
    redemption.close_entry_id = entry
    redemption.closed_at = utcnow()
    db.session.flush()


def cancel(resident: Resident, redemption_id: int) -> Redemption:
    redemption = _locked(select(Redemption).where(Redemption.id == redemption_id))
    if redemption is None or redemption.resident_id != resident.id:
        raise NotFound(f"No redemption {redemption_id}.")
    if redemption.status != "reserved":
        raise Conflict(f"Redemption {redemption_id} is {redemption.status}; only a reserved one can be cancelled.",
                       error=f"already_{redemption.status}")
    _give_back(redemption, "cancelled", None)
    return redemption


def confirm(actor: User, raw_code: str) -> Redemption:
    """The till confirms a code: the held points become the merchant's (for settlement)."""
    code = normalise_code(raw_code)
    # One query: the code at this till's merchant (another shop's code does not exist here), with the
    # offer (unlocked) for the receipt's title and the merchant's region for its rules.
    row = db.session.execute(
        select(Redemption, Merchant.region_code).join(Redemption.offer).options(contains_eager(Redemption.offer))
        .join(Merchant, Merchant.id == Redemption.merchant_id)
        .join(MerchantStaff, and_(MerchantStaff.merchant_id == Redemption.merchant_id,
                                  MerchantStaff.user_id == actor.id))
        .where(Redemption.code == code).with_for_update(of=Redemption)).first()
    if row is None:
        merchants.merchant_of_staff(actor)  # a login attached to no merchant is told so
        raise NotFound("No redemption with this code at your merchant.", error="unknown_code")
    redemption, region_code = row
    if redemption.status != "reserved":
        raise Conflict(f"This code is already {redemption.status}.", error=f"already_{redemption.status}")
    now = utcnow()
    if now >= redemption.expires_at:
        raise Conflict("This code's hold has timed out; the points are going back to the resident.",
                       error="expired")
    version = ledger.rules_in_force(region_code, now)
    merchant_id = redemption.merchant_id
    holds = ledger.accounts_for("redemption_holds", [merchant_id])[merchant_id]
    settlement = ledger.accounts_for("merchant_settlement", [merchant_id])[merchant_id]
    # The row lock and the status make the key new: it is posted only with the change to fulfilled.
    entry = ledger.transfer(holds, settlement, redemption.points, kind="settle",
                            key=f"redeem:confirm:{redemption.id}", rule_version=version, actor=actor,
                            memo=f"redemption {redemption.id} fulfilled", new=True)
    redemption.status = "fulfilled"
    redemption.close_entry_id = entry
    redemption.closed_at = now
    redemption.confirmed_by_user_id = actor.id
    db.session.flush()
    return redemption


def expire_holds(*, now: datetime | None = None, limit: int = 500) -> int:
    """Give back every hold past its time (the scheduler runs this each minute). Rows another
    worker holds are skipped, so overlapping runs never return a hold twice."""
    query = (select(Redemption).where(Redemption.status == "reserved", Redemption.expires_at <= (now or utcnow()))
             .order_by(Redemption.id).limit(limit).with_for_update(skip_locked=True))
    expired = list(db.session.scalars(query))
    for redemption in expired:
        _give_back(redemption, "expired", None)
    return len(expired)


def get_own(resident: Resident, redemption_id: int) -> Redemption:
    redemption = db.session.get(Redemption, redemption_id)
    if redemption is None or redemption.resident_id != resident.id:
        raise NotFound(f"No redemption {redemption_id}.")
    return redemption


def resident_page(resident: Resident, *, before: int | None,
                  limit: int) -> tuple[list[Redemption], int | None]:
    return keyset_page(select(Redemption).where(Redemption.resident_id == resident.id), Redemption.id,
                       before=before, limit=limit)


def merchant_page(actor: User, *, status: str | None, before: int | None,
                  limit: int) -> tuple[list[Redemption], int | None]:
    merchant = merchants.merchant_of_staff(actor)
    query = select(Redemption).where(Redemption.merchant_id == merchant.id)
    if status is not None:
        query = query.where(Redemption.status == status)
    return keyset_page(query, Redemption.id, before=before, limit=limit)


def titles(rows: list[Redemption]) -> dict[int, str]:
    """The offer titles of redemptions, from offers already loaded with them where they were."""
    loaded = {r.offer_id: r.offer.title for r in rows if "offer" in r.__dict__}
    missing = {r.offer_id for r in rows} - loaded.keys()
    if missing:
        loaded.update(db.session.execute(select(Offer.id, Offer.title).where(Offer.id.in_(missing))).all())
    return loaded
