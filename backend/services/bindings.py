"""Consent to report: a resident binds a partner account; revoking stops future credits.

A burst of residents binding the same partner account (one bus card "shared" by many sign-ups) is
a fraud signal for an auditor; the bindings themselves still stand until someone decides.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from backend.db import db, utcnow
from backend.errors import Conflict, NotFound, field_error
from backend.models import FraudSignal, Partner, PartnerBinding, Resident, User
from backend.services import audit

BURST_WINDOW = timedelta(hours=24)
BURST_RESIDENTS = 3  # this many residents binding one external reference within the window


def bind(resident: Resident, partner_id: int, external_user_ref: str, *,
         actor: User) -> tuple[PartnerBinding, Partner]:
    partner = db.session.get(Partner, partner_id)
    if partner is None or partner.status != "active":
        raise field_error("partner_id", "no active partner with this id", error="unknown_partner")
    ref = external_user_ref.strip()
    if not ref:
        raise field_error("external_user_ref", "must not be blank")
    live = db.session.scalar(select(PartnerBinding).where(
        PartnerBinding.partner_id == partner_id, PartnerBinding.external_user_ref == ref,
        PartnerBinding.revoked_at.is_(None)))
    if live is not None:
        if live.resident_id == resident.id:
            return live, partner  # binding again is harmless
        raise Conflict("This partner account is already bound to another resident.", error="already_bound")
    if db.session.scalar(select(PartnerBinding.id).where(
            PartnerBinding.resident_id == resident.id, PartnerBinding.partner_id == partner_id,
            PartnerBinding.revoked_at.is_(None))) is not None:
        raise Conflict("You already bound an account of this partner; revoke it first.", error="partner_already_bound")
    binding = PartnerBinding(resident_id=resident.id, partner_id=partner_id, external_user_ref=ref)
    try:
        with db.session.begin_nested():
            db.session.add(binding)
    except IntegrityError:
        raise Conflict("This partner account was bound a moment ago.", error="already_bound") from None
    audit.record("binding.create", "partner_binding", binding.id, actor=actor, region_code=resident.region_code,
                 after={"partner_id": partner_id, "resident_id": resident.id})
    _burst_signal(partner, ref, resident)
    return binding, partner


def _burst_signal(partner: Partner, ref: str, resident: Resident) -> None:
    since = utcnow() - BURST_WINDOW
    residents = db.session.scalar(select(func.count(func.distinct(PartnerBinding.resident_id))).where(
        PartnerBinding.partner_id == partner.id, PartnerBinding.external_user_ref == ref,
        PartnerBinding.created_at >= since))
    if residents >= BURST_RESIDENTS:
        db.session.add(FraudSignal(
            kind="binding_burst", partner_id=partner.id, resident_id=resident.id, region_code=resident.region_code,
            detail=f"{residents} residents bound {partner.name}'s account {ref!r} within 24 h"))
        db.session.flush()


def revoke(resident: Resident, binding_id: int, *, actor: User) -> tuple[PartnerBinding, Partner]:
    binding = db.session.scalar(select(PartnerBinding).where(PartnerBinding.id == binding_id).with_for_update())
    if binding is None or binding.resident_id != resident.id:
        raise NotFound(f"No binding {binding_id}.")
    if binding.revoked_at is None:
        binding.revoked_at = utcnow()
        audit.record("binding.revoke", "partner_binding", binding.id, actor=actor, region_code=resident.region_code,
                     before={"partner_id": binding.partner_id}, after={"revoked_at": binding.revoked_at.isoformat()})
        db.session.flush()
    return binding, db.session.get(Partner, binding.partner_id)  # type: ignore[return-value]


def of_resident(resident_id: int) -> list[tuple[PartnerBinding, Partner]]:
    return list(db.session.execute(
        select(PartnerBinding, Partner).join(Partner, Partner.id == PartnerBinding.partner_id)
        .where(PartnerBinding.resident_id == resident_id).order_by(PartnerBinding.id.desc())).all())  # type: ignore[arg-type]
