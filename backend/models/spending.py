"""Where points go: merchant offers and redemptions, settlement statements, public-welfare projects
and donations, opened rights (DESIGN §1's three incentive legs)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.db import Base, BigId, UTCDateTime, utcnow

REDEMPTION_STATUSES = ("reserved", "fulfilled", "cancelled", "expired")
GRANT_STATUSES = ("issued", "consumed", "expired")
RIGHT_KINDS = ("parking", "transit", "service", "other")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Offer(Base):
    """What a merchant gives for points. ``stock_left`` is decremented under the row's lock and
    can never go below zero: the database refuses an oversell."""

    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("points_price > 0", name="price_positive"),
        CheckConstraint("stock_left >= 0 AND stock_left <= stock_total", name="stock_within"),
        CheckConstraint("per_user_limit >= 1", name="per_user_limit_positive"),
        CheckConstraint("valid_until > valid_from", name="window"),
        CheckConstraint("status IN ('active', 'withdrawn')", name="status"),
        Index("ix_offers_merchant", "merchant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    points_price: Mapped[int] = mapped_column(BigInteger)
    stock_total: Mapped[int] = mapped_column(Integer)
    stock_left: Mapped[int] = mapped_column(Integer)
    per_user_limit: Mapped[int] = mapped_column(Integer, default=1)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OfferRegion(Base):
    """Where an offer is shown: residents of the region and of every region below it see it."""

    __tablename__ = "offer_regions"
    __table_args__ = (Index("ix_offer_regions_region", "region_code", "offer_id"),)

    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"), primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), primary_key=True)


class Redemption(Base):
    """Reserve → fulfilled (the merchant confirmed the code) | cancelled | expired (the hold timed
    out). The points sit in the merchant's hold account while reserved."""

    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint(_one_of("status", REDEMPTION_STATUSES), name="status"),
        CheckConstraint("points > 0", name="points_positive"),
        # A retry with the same Idempotency-Key finds this redemption instead of making another.
        UniqueConstraint("resident_id", "idempotency_key"),
        Index("ix_redemptions_offer_resident", "offer_id", "resident_id"),
        Index("ix_redemptions_resident", "resident_id", "id"),
        Index("ix_redemptions_open", "expires_at", postgresql_where=text("status = 'reserved'"),
              sqlite_where=text("status = 'reserved'")),
        Index("ix_redemptions_merchant_closed", "merchant_id", "status", "closed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"))
    # Set when the offer is at hand (reserving, confirming), so a response needs no query for its title.
    offer: Mapped[Offer] = relationship(lazy="raise")
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    # Single use, unguessable, short enough to read aloud (Crockford base32, 50 bits).
    code: Mapped[str] = mapped_column(String(16), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default="reserved")
    hold_entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    close_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    reserved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    statement_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_statements.id"), index=True)


class SettlementStatement(Base):
    """What a merchant is owed for one period's fulfilled redemptions, at the rate in force.
    Immutable once issued, except that an operator marks it paid."""

    __tablename__ = "settlement_statements"
    __table_args__ = (
        UniqueConstraint("merchant_id", "period"),
        CheckConstraint("status IN ('issued', 'paid')", name="status"),
        CheckConstraint("points >= 0 AND amount_fen >= 0 AND redemptions >= 0", name="amounts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM, China time
    redemptions: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger)
    yuan_per_point: Mapped[str] = mapped_column(String(24))  # the rules' decimal, as published
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # money in fen (0.01 yuan), rounded down
    rules_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default="issued")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    issued_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    payment_reference: Mapped[str | None] = mapped_column(String(120))


class WelfareProject(Base):
    """A public-welfare project (公益) residents donate points to; its ledger account holds them."""

    __tablename__ = "welfare_projects"
    __table_args__ = (
        CheckConstraint("target_points > 0", name="target_positive"),
        CheckConstraint("status IN ('open', 'closed')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    target_points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class Donation(Base):
    """One donation; its receipt number is made from its id and date (``projects.receipt_no``)."""

    __tablename__ = "donations"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        UniqueConstraint("resident_id", "idempotency_key"),
        Index("ix_donations_project", "project_id", "id"),
        Index("ix_donations_resident", "resident_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("welfare_projects.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OpenedRight(Base):
    """An entitlement with no cash value (free parking hours, a bus-ride voucher, priority at a
    service hall), claimed with points or unlocked by a green level, honoured by a partner."""

    __tablename__ = "opened_rights"
    __table_args__ = (
        CheckConstraint(_one_of("kind", RIGHT_KINDS), name="kind"),
        CheckConstraint("points_price IS NULL OR points_price > 0", name="price_positive"),
        CheckConstraint("points_price IS NOT NULL OR min_level IS NOT NULL", name="claimable"),
        CheckConstraint("stock_left IS NULL OR (stock_left >= 0 AND stock_left <= stock_total)", name="stock_within"),
        CheckConstraint("per_user_limit >= 1", name="per_user_limit_positive"),
        CheckConstraint("code_valid_days >= 1", name="code_valid_days_positive"),
        CheckConstraint("status IN ('active', 'withdrawn')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"), index=True)  # who honours it
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    points_price: Mapped[int | None] = mapped_column(BigInteger)
    min_level: Mapped[str | None] = mapped_column(String(32))  # a level name from the region's rules
    stock_total: Mapped[int | None] = mapped_column(Integer)  # NULL: unlimited
    stock_left: Mapped[int | None] = mapped_column(Integer)
    per_user_limit: Mapped[int] = mapped_column(Integer, default=1)
    code_valid_days: Mapped[int] = mapped_column(Integer, default=30)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RightGrant(Base):
    """A resident's claimed entitlement: a code the granting partner checks and consumes once."""

    __tablename__ = "right_grants"
    __table_args__ = (
        CheckConstraint(_one_of("status", GRANT_STATUSES), name="status"),
        CheckConstraint("via IN ('points', 'level')", name="via"),
        UniqueConstraint("resident_id", "idempotency_key"),
        Index("ix_right_grants_right_resident", "right_id", "resident_id"),
        Index("ix_right_grants_resident", "resident_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    right_id: Mapped[int] = mapped_column(ForeignKey("opened_rights.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    code: Mapped[str] = mapped_column(String(16), unique=True)
    via: Mapped[str] = mapped_column(String(8))
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))
    idempotency_key: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default="issued")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
