"""Bank linkage (issue #8.4; Quzhou-style carbon-account credit): a resident shares a signed
statement of their green level and lifetime certified grams with a bank partner, by consent.

- The operator enables a partner as a bank for a region (it answers for where residents' data goes).
- A resident creates a share (which bank, for how many days); the platform signs a statement: the
  resident's pseudonym for that bank, green level, lifetime certified grams, issued/expiry times and
  the share id, as a compact JWS (EdDSA, ``backend/security/statements.py``). The bank verifies it
  offline with the published key, or through its signed partner API (verify a statement, or fetch a
  fresh one), which refuses revoked and expired shares.
- The resident lists and revokes shares; deleting the account revokes them all.
- Every share, fetch, verification, refusal and revocation is a row in ``bank_share_events`` (what
  was disclosed, when) and an audit-log entry.

Services flush; the request boundary commits.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from backend.db import db, utcnow
from backend.errors import Conflict, Forbidden, NotFound, field_error
from backend.models import BankPartner, BankShare, BankShareEvent, Partner, Resident, User
from backend.security.statements import InvalidStatement, signer
from backend.services import audit, levels
from backend.services.pagination import keyset_page
from backend.services.regions import ancestors, get_region
from backend.services.scope import require_in_scope, scope_filter

DEFAULT_VALID_DAYS = 90
MAX_VALID_DAYS = 365
STATEMENT_TYPE = "green-statement+jwt"


def audience(partner_id: int) -> str:
    return f"partner:{partner_id}"


# --- operators: which partners are banks -------------------------------------------------------------


def enable_bank(partner_id: int, region: Any, *, actor: User) -> BankPartner:
    """Let residents of ``region`` (and below) share statements with this partner."""
    code = get_region(region).code
    require_in_scope(actor, code)
    partner = db.session.get(Partner, partner_id)
    if partner is None:
        raise field_error("partner_id", f"no partner {partner_id}", error="unknown_partner")
    if partner.status != "active":
        raise field_error("partner_id", "this partner is disabled", error="partner_disabled")
    bank = db.session.get(BankPartner, partner_id, with_for_update=True)
    if bank is not None and bank.status == "active":
        raise Conflict(f"Partner {partner_id} is already a bank for {bank.region_code}.", error="already_enabled")
    now = utcnow()
    if bank is None:
        bank = BankPartner(partner_id=partner_id, region_code=code, status="active", created_by_user_id=actor.id,
                           created_at=now)
        db.session.add(bank)
    else:
        bank.region_code, bank.status, bank.disabled_at, bank.disabled_by_user_id = code, "active", None, None
    db.session.flush()
    audit.record("bank_partner.enable", "bank_partner", partner_id, actor=actor, region_code=code,
                 after={"partner": partner.name, "region": code})
    return bank


def disable_bank(partner_id: int, *, actor: User, reason: str | None) -> BankPartner:
    """No new shares, and the bank's API calls are refused; residents' shares stay listed."""
    bank = db.session.get(BankPartner, partner_id, with_for_update=True)
    if bank is None:
        raise NotFound(f"Partner {partner_id} is not a bank partner.")
    require_in_scope(actor, bank.region_code)
    if bank.status != "disabled":
        bank.status, bank.disabled_at, bank.disabled_by_user_id = "disabled", utcnow(), actor.id
        db.session.flush()
        audit.record("bank_partner.disable", "bank_partner", partner_id, actor=actor, region_code=bank.region_code,
                     before={"status": "active"}, after={"status": "disabled"}, reason=reason)
    return bank


def browse_banks(actor: User) -> list[dict[str, Any]]:
    query = scope_filter(select(BankPartner, Partner).join(Partner, Partner.id == BankPartner.partner_id),
                         BankPartner.region_code, actor)
    return [bank_view(bank, partner) for bank, partner in db.session.execute(query.order_by(BankPartner.partner_id))]


def bank_view(bank: BankPartner, partner: Partner) -> dict[str, Any]:
    return {"partner_id": bank.partner_id, "name": partner.name, "region": bank.region_code,
            "status": bank.status if partner.status == "active" else "disabled", "created_at": bank.created_at,
            "disabled_at": bank.disabled_at}


def banks_for(resident: Resident) -> list[dict[str, Any]]:
    """The banks this resident may share with: enabled for their region or one above it."""
    rows = db.session.execute(
        select(BankPartner, Partner).join(Partner, Partner.id == BankPartner.partner_id)
        .where(BankPartner.region_code.in_(ancestors(resident.region_code)), BankPartner.status == "active",
               Partner.status == "active").order_by(BankPartner.partner_id))
    return [bank_view(bank, partner) for bank, partner in rows]


def _usable_bank(partner_id: int) -> Partner | None:
    row = db.session.execute(select(BankPartner, Partner).join(Partner, Partner.id == BankPartner.partner_id)
                             .where(BankPartner.partner_id == partner_id)).first()
    if row is None or row[0].status != "active" or row[1].status != "active":
        return None
    return row[1]


# --- residents -----------------------------------------------------------------------------------------


def _event(share: BankShare, event: str, *, disclosed: dict[str, Any] | None = None,
           detail: str | None = None) -> BankShareEvent:
    row = BankShareEvent(share_id=share.id, event=event, occurred_at=utcnow(), disclosed=disclosed, detail=detail)
    db.session.add(row)
    db.session.flush()
    return row


def _subject(resident_id: int, partner_id: int) -> str:
    """The resident's pseudonym for this bank: the one of an earlier share with it, else a new random
    one (so nothing links it to the resident's ids or to another bank's pseudonym)."""
    earlier = db.session.scalar(select(BankShare.subject).where(
        BankShare.resident_id == resident_id, BankShare.partner_id == partner_id).order_by(BankShare.id).limit(1))
    return earlier or secrets.token_hex(16)


def create_share(resident: Resident, partner_id: int, valid_days: int | None, *, actor: User) -> tuple[BankShare,
                                                                                                      dict[str, Any]]:
    """Consent to one bank reading the resident's green statement for ``valid_days`` (1-365)."""
    days = DEFAULT_VALID_DAYS if valid_days is None else valid_days
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_VALID_DAYS:
        raise field_error("valid_days", f"must be 1 to {MAX_VALID_DAYS} days")
    allowed = {bank["partner_id"] for bank in banks_for(resident)}
    if partner_id not in allowed:
        raise field_error("partner_id", "is not a bank you can share with (see GET /api/v1/bank-partners)",
                          error="unknown_bank")
    now = utcnow()
    share = BankShare(resident_id=resident.id, partner_id=partner_id, subject=_subject(resident.id, partner_id),
                      created_at=now, expires_at=now + timedelta(days=days))
    db.session.add(share)
    db.session.flush()
    statement = sign_statement(share, resident, now)
    _event(share, "created", disclosed=statement["disclosed"])
    audit.record("bank_share.create", "bank_share", share.id, actor=actor, region_code=resident.region_code,
                 after={"partner_id": partner_id, "expires_at": share.expires_at, **statement["disclosed"]})
    return share, statement


def sign_statement(share: BankShare, resident: Resident, now: datetime) -> dict[str, Any]:
    """A fresh statement of the resident's standing now, valid until the share expires."""
    standing = levels.level_of(resident, now)
    disclosed = {"green_level": standing["level"], "lifetime_certified_grams": standing["lifetime_grams"]}
    claims = {"sub": share.subject, "aud": audience(share.partner_id), "iat": int(now.timestamp()),
              "exp": int(share.expires_at.timestamp()), "jti": uuid.uuid4().hex, "share_id": share.id, **disclosed}
    return {"token": signer().sign_jws(claims, typ=STATEMENT_TYPE), "key_id": signer().key_id,
            "issued_at": datetime.fromtimestamp(claims["iat"], tz=now.tzinfo), "expires_at": share.expires_at,
            "subject": share.subject, "share_id": share.id, "disclosed": disclosed, **disclosed}


def my_shares(resident: Resident, *, before: int | None, limit: int) -> tuple[list[BankShare], int | None]:
    return keyset_page(select(BankShare).where(BankShare.resident_id == resident.id), BankShare.id,
                       before=before, limit=limit)


def get_mine(resident: Resident, share_id: int, *, lock: bool = False) -> BankShare:
    """A resident's own share; another resident's does not exist for them."""
    query = select(BankShare).where(BankShare.id == share_id)
    share = db.session.scalar(query.with_for_update() if lock else query)
    if share is None or share.resident_id != resident.id:
        raise NotFound(f"No bank share {share_id}.")
    return share


def revoke(resident: Resident, share_id: int, *, actor: User) -> BankShare:
    """End a share now. Revoking a revoked share changes nothing (and logs nothing)."""
    share = get_mine(resident, share_id, lock=True)
    if share.revoked_at is None:
        _revoke(share, "resident")
        audit.record("bank_share.revoke", "bank_share", share.id, actor=actor, region_code=resident.region_code,
                     after={"partner_id": share.partner_id})
    return share


def _revoke(share: BankShare, reason: str) -> None:
    share.revoked_at = utcnow()
    share.revoked_reason = reason
    db.session.flush()
    _event(share, "revoked", detail=reason)


def events_of(share: BankShare) -> list[BankShareEvent]:
    return list(db.session.scalars(select(BankShareEvent).where(BankShareEvent.share_id == share.id)
                                   .order_by(BankShareEvent.id)))


def names_of(partner_ids: set[int]) -> dict[int, str]:
    if not partner_ids:
        return {}
    return dict(db.session.execute(select(Partner.id, Partner.name).where(Partner.id.in_(partner_ids))).all())


def share_view(share: BankShare, partner_name: str | None, *, now: datetime | None = None) -> dict[str, Any]:
    return {"id": share.id, "partner_id": share.partner_id, "partner_name": partner_name, "subject": share.subject,
            "status": share.status_at(now or utcnow()), "created_at": share.created_at,
            "expires_at": share.expires_at, "revoked_at": share.revoked_at, "revoked_reason": share.revoked_reason}


def share_detail(resident: Resident, share_id: int) -> dict[str, Any]:
    """The share, what was disclosed under it and to whom, and (while active) a fresh statement."""
    share = get_mine(resident, share_id)
    now = utcnow()
    view = share_view(share, names_of({share.partner_id}).get(share.partner_id), now=now)
    view["events"] = [{"event": e.event, "occurred_at": e.occurred_at, "disclosed": e.disclosed, "detail": e.detail}
                      for e in events_of(share)]
    view["statement"] = sign_statement(share, resident, now) if view["status"] == "active" else None
    return view


# --- banks (signed partner API) --------------------------------------------------------------------------


def _refuse(share: BankShare, error: str, message: str) -> Conflict:
    """A refusal the bank gets and the resident sees in the share's log (kept despite the error)."""
    _event(share, "refused", detail=error)
    refusal = Conflict(message, error=error)
    refusal.keep_changes = True
    return refusal


def _share_for_bank(partner: Partner, share_id: Any) -> BankShare:
    if _usable_bank(partner.id) is None:
        raise Forbidden("You are not enabled as a bank partner.", error="not_a_bank")
    # Read under a share lock: a revocation in flight (it locks the row) is waited for and seen.
    share = db.session.scalar(select(BankShare).where(BankShare.id == share_id).with_for_update(read=True)) \
        if isinstance(share_id, int) else None
    if share is None or share.partner_id != partner.id:
        raise NotFound(f"No bank share {share_id} for you.")
    now = utcnow()
    if share.revoked_at is not None:
        raise _refuse(share, "share_revoked", "The resident revoked this share.")
    if now >= share.expires_at:
        raise _refuse(share, "share_expired", "This share has expired.")
    return share


def fetch(partner: Partner, share_id: int) -> dict[str, Any]:
    """A fresh statement under a live share, for the bank that holds it."""
    share = _share_for_bank(partner, share_id)
    resident = db.session.get(Resident, share.resident_id)
    assert resident is not None
    statement = sign_statement(share, resident, utcnow())
    _event(share, "fetched", disclosed=statement["disclosed"])
    audit.record("bank_share.fetch", "bank_share", share.id, actor=None, region_code=resident.region_code,
                 after={"partner_id": partner.id, **statement["disclosed"]})
    return statement


def verify(partner: Partner, token: Any) -> dict[str, Any]:
    """Check a statement a resident handed this bank: signed by the platform, issued to this bank,
    its share neither revoked nor expired. Answers what it states."""
    if not isinstance(token, str) or not token.strip():
        raise field_error("statement", "give the statement (the compact JWS) to verify")
    try:
        claims = signer().verify_jws(token.strip(), audience=audience(partner.id))
    except InvalidStatement as problem:
        if problem.reason == "expired":  # a statement expires with its share
            raise Conflict("This statement has expired, and with it the share it was issued under.",
                           error="share_expired") from None
        message = "was issued to another partner" if problem.reason == "wrong_audience" else str(problem)
        raise field_error("statement", message, error=problem.reason) from None
    share = _share_for_bank(partner, claims.get("share_id"))
    if claims.get("sub") != share.subject:  # cannot happen for a statement we signed; never trust it anyway
        raise field_error("statement", "does not match its share", error="bad_signature")
    disclosed = {"green_level": claims.get("green_level"),
                 "lifetime_certified_grams": claims.get("lifetime_certified_grams")}
    _event(share, "verified", disclosed=disclosed)
    resident = db.session.get(Resident, share.resident_id)
    audit.record("bank_share.verify", "bank_share", share.id, actor=None,
                 region_code=resident.region_code if resident else None, after={"partner_id": partner.id, **disclosed})
    return {"valid": True, "share_id": share.id, "subject": share.subject, **disclosed,
            "issued_at": datetime.fromtimestamp(claims["iat"], tz=share.created_at.tzinfo),
            "expires_at": share.expires_at, "key_id": signer().key_id}


# --- the resident's personal data (signals, see backend/signals.py) ---------------------------------------


def export_section(resident: Resident) -> tuple[str, list[dict[str, Any]]]:
    """Receiver of ``resident_export``: every share and what was disclosed under it."""
    shares = list(db.session.scalars(select(BankShare).where(BankShare.resident_id == resident.id)
                                     .order_by(BankShare.id)))
    names = names_of({s.partner_id for s in shares})
    return "bank_shares", [
        {**share_view(s, names.get(s.partner_id)),
         "events": [{"event": e.event, "occurred_at": e.occurred_at, "disclosed": e.disclosed} for e in events_of(s)]}
        for s in shares]


def on_anonymise(resident: Resident) -> None:
    """Receiver of ``resident_anonymise``: a deleted account shares nothing any more. The shares and
    their log stay (the record of what was disclosed); the pseudonyms were never linkable anyway."""
    for share in db.session.scalars(select(BankShare).where(BankShare.resident_id == resident.id,
                                                             BankShare.revoked_at.is_(None))):
        _revoke(share, "account_deleted")


def partner_of(bank: BankPartner) -> Partner:
    partner = db.session.get(Partner, bank.partner_id)
    assert partner is not None  # a foreign key
    return partner
