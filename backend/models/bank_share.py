"""Bank linkage (issue #8.4): a resident's consented, revocable share of a signed green statement
with a bank partner, and the log of every share, fetch and revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, utcnow

SHARE_EVENTS = ("created", "fetched", "verified", "refused", "revoked")


class BankPartner(Base):
    """A partner the operator lets residents of a region (and below) share statements with: the
    operator answers for where residents' data goes, so a bank is enabled explicitly."""

    __tablename__ = "bank_partners"
    __table_args__ = (CheckConstraint("status IN ('active', 'disabled')", name="status"),)

    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), primary_key=True, autoincrement=False)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class BankShare(Base):
    """One consent: this bank may read this resident's green statement until ``expires_at`` or
    revocation. ``subject`` is the resident's pseudonym for this bank (the same for every share
    with it, unrelated to any other id), so the bank never learns the platform's ids."""

    __tablename__ = "bank_shares"
    __table_args__ = (
        CheckConstraint("expires_at > created_at", name="window"),
        CheckConstraint("revoked_reason IS NULL OR revoked_reason IN ('resident', 'account_deleted')",
                        name="revoked_reason"),
        Index("ix_bank_shares_resident", "resident_id", "id"),
        Index("ix_bank_shares_partner", "partner_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    subject: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(16))

    def status_at(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if now < self.expires_at else "expired"


class BankShareEvent(Base):
    """Append-only (the database refuses UPDATE and DELETE): what was disclosed to whom, when."""

    __tablename__ = "bank_share_events"
    __table_args__ = (
        CheckConstraint(f"event IN ({', '.join(repr(e) for e in SHARE_EVENTS)})", name="event"),
        Index("ix_bank_share_events_share", "share_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    share_id: Mapped[int] = mapped_column(ForeignKey("bank_shares.id"))
    event: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the statement said (green level, grams) when one was handed out; why, when refused.
    disclosed: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(String(200))
