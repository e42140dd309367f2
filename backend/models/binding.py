"""Consent: a resident lets a partner report their activities (DESIGN §9, ``/me/bindings``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, utcnow


class PartnerBinding(Base):
    """A partner reports for a resident only while a binding is active, and only activities that
    happened after it was made. Revoking keeps the row (the record of consent) and stops credits."""

    __tablename__ = "partner_bindings"
    __table_args__ = (
        # One live binding per partner account, and per resident and partner.
        Index("uq_partner_bindings_live_ref", "partner_id", "external_user_ref", unique=True,
              postgresql_where=text("revoked_at IS NULL"), sqlite_where=text("revoked_at IS NULL")),
        Index("uq_partner_bindings_live_resident", "resident_id", "partner_id", unique=True,
              postgresql_where=text("revoked_at IS NULL"), sqlite_where=text("revoked_at IS NULL")),
        Index("ix_partner_bindings_ref_time", "external_user_ref", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    # The resident's id in the partner's system (a card number, an app account).
    external_user_ref: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FraudSignal(Base):
    """A pattern no single activity shows: flagged for an auditor, never acted on silently."""

    __tablename__ = "fraud_signals"
    __table_args__ = (Index("ix_fraud_signals_open", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # impossible_travel | too_many_hours | rejection_spike | ...
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | dismissed | confirmed
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"), index=True)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    activity_id: Mapped[int | None] = mapped_column(ForeignKey("activities.id"), index=True)
    region_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"))
    detail: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(String(500))
