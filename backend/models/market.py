"""Carbon-market batches (issue #8.3): certified reductions pooled into whole tonnes, each tonne a
serial that is sold or retired once (DESIGN invariant 10).

What the database itself guarantees (migration 0008):
- a reduction is in at most one batch, ever (``market_batch_members`` is keyed by the reduction);
- a batch's active members cover its serials (``pooled_grams >= tonnes × 10^6``);
- a serial exists once per ``REGION-METHOD-YEAR`` key (``market_serials`` is keyed by it) and is
  given to one sale or retirement, once (its ``transaction_id`` goes from NULL to a value, never back);
- sales and retirements are append-only; an issued batch's serials and scope never change;
- a reduction an issued batch relies on cannot be reversed (it must be replaced first).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, utcnow

GRAMS_PER_TONNE = 1_000_000
BATCH_STATUSES = ("draft", "discarded", "issued", "sold", "retired", "closed")
# Batches whose serials exist: what they hold is relied upon by buyers and beneficiaries.
ISSUED_STATUSES = ("issued", "sold", "retired", "closed")
TRANSACTION_KINDS = ("sale", "retirement")
EXCLUSION_CATEGORIES = ("green_certificate", "ccer", "enterprise_inventory", "other")


def _within(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class MarketBatch(Base):
    """A pool of whole reductions of one methodology, region and vintage (China-time year).

    ``tonnes`` serials back onto ``pooled_grams`` of active members; the sub-tonne rest
    (``pooled_grams - tonnes × 10^6``) belongs to the batch unserialised: never sold, never pooled
    again, and the first cover when a member has to be replaced.
    """

    __tablename__ = "market_batches"
    __table_args__ = (
        CheckConstraint(_within("status", BATCH_STATUSES), name="status"),
        CheckConstraint("tonnes > 0", name="tonnes_positive"),
        CheckConstraint(f"pooled_grams >= tonnes * {GRAMS_PER_TONNE}", name="backed"),
        CheckConstraint("member_count > 0", name="members"),
        CheckConstraint("vintage BETWEEN 2000 AND 2999", name="vintage"),
        CheckConstraint("(serial_start IS NULL AND serial_end IS NULL) OR "
                        "(serial_start >= 1 AND serial_end = serial_start + tonnes - 1)", name="serial_range"),
        CheckConstraint(f"{_within('status', ('draft', 'discarded'))} OR serial_start IS NOT NULL",
                        name="issued_has_serials"),
        UniqueConstraint("serial_key", "serial_start"),
        Index("ix_market_batches_scope", "methodology_id", "vintage", "region_code"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"))
    # True: the region's districts were pooled with it; False: reductions of the region itself only.
    include_subregions: Mapped[bool] = mapped_column(Boolean)
    methodology_id: Mapped[str] = mapped_column(String(64))
    vintage: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    tonnes: Mapped[int] = mapped_column(BigInteger)
    pooled_grams: Mapped[int] = mapped_column(BigInteger)
    member_count: Mapped[int] = mapped_column(Integer)
    # sha256 over the active members, one "reduction_id:grams\n" line each in id order.
    members_sha256: Mapped[str] = mapped_column(String(64))
    methodology_versions: Mapped[list[int]] = mapped_column(JSON)
    serial_key: Mapped[str] = mapped_column(String(96))  # REGION-METHOD-YEAR
    serial_start: Mapped[int | None] = mapped_column(BigInteger)
    serial_end: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(String(500), default="")
    drafted_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    drafted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    issued_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    discarded_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    discarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    discard_reason: Mapped[str | None] = mapped_column(String(500))

    @property
    def unserialised_grams(self) -> int:
        return self.pooled_grams - self.tonnes * GRAMS_PER_TONNE

    @property
    def serial_range(self) -> str | None:
        if self.serial_start is None or self.serial_end is None:
            return None
        return serial_range(self.serial_key, self.serial_start, self.serial_end)


def serial_range(key: str, first: int, last: int) -> str:
    """``REGION-METHOD-YEAR-START-END``, numbers zero-padded to six digits (wider when they grow)."""
    return f"{key}-{first:06d}-{last:06d}"


class MarketBatchMember(Base):
    """A reduction pooled into a batch. Keyed by the reduction: it is in one batch at most, ever.
    A draft's members are deleted when it is discarded; an issued batch's member is only ever
    withdrawn (kept, marked), when an auditor replaces it."""

    __tablename__ = "market_batch_members"
    __table_args__ = (
        CheckConstraint("grams > 0", name="grams_positive"),
        CheckConstraint("status IN ('active', 'withdrawn')", name="status"),
        CheckConstraint("(status = 'active' AND withdrawn_at IS NULL) OR "
                        "(status = 'withdrawn' AND withdrawn_at IS NOT NULL)", name="withdrawal"),
        Index("ix_market_batch_members_batch", "batch_id", "reduction_id"),
    )

    reduction_id: Mapped[int] = mapped_column(ForeignKey("reductions.id"), primary_key=True, autoincrement=False)
    batch_id: Mapped[int] = mapped_column(ForeignKey("market_batches.id"))
    grams: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="active")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    withdrawn_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    withdraw_reason: Mapped[str | None] = mapped_column(String(500))


class MarketSerialCounter(Base):
    """The last serial handed out per ``REGION-METHOD-YEAR``: locked while a batch is issued."""

    __tablename__ = "market_serial_counters"

    serial_key: Mapped[str] = mapped_column(String(96), primary_key=True)
    last_serial: Mapped[int] = mapped_column(BigInteger)


class MarketSerial(Base):
    """One tonne. ``transaction_id`` is the sale or retirement that used it (NULL: available)."""

    __tablename__ = "market_serials"
    __table_args__ = (
        CheckConstraint("serial >= 1", name="serial_positive"),
        Index("ix_market_serials_batch", "batch_id", "serial"),
    )

    serial_key: Mapped[str] = mapped_column(String(96), primary_key=True)
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    batch_id: Mapped[int] = mapped_column(ForeignKey("market_batches.id"))
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("market_transactions.id"), index=True)


class MarketTransaction(Base):
    """A sale (buyer, price) or a retirement (beneficiary, purpose) of a contiguous serial range."""

    __tablename__ = "market_transactions"
    __table_args__ = (
        CheckConstraint(_within("kind", TRANSACTION_KINDS), name="kind"),
        CheckConstraint("first_serial >= 1 AND last_serial >= first_serial", name="range"),
        CheckConstraint("tonnes = last_serial - first_serial + 1", name="tonnes"),
        CheckConstraint(
            "(kind = 'sale' AND buyer IS NOT NULL AND unit_price_fen IS NOT NULL AND unit_price_fen >= 0 "
            "AND amount_fen = unit_price_fen * tonnes AND beneficiary IS NULL AND purpose IS NULL) OR "
            "(kind = 'retirement' AND beneficiary IS NOT NULL AND purpose IS NOT NULL AND buyer IS NULL "
            "AND unit_price_fen IS NULL AND amount_fen IS NULL)", name="details"),
        Index("ix_market_transactions_batch", "batch_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("market_batches.id"))
    kind: Mapped[str] = mapped_column(String(16))
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    tonnes: Mapped[int] = mapped_column(BigInteger)
    buyer: Mapped[str | None] = mapped_column(String(200))
    unit_price_fen: Mapped[int | None] = mapped_column(BigInteger)
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    beneficiary: Mapped[str | None] = mapped_column(String(200))
    purpose: Mapped[str | None] = mapped_column(String(500))
    # The exchange's trade number of a sale, or the operator's own reference.
    reference: Mapped[str | None] = mapped_column(String(120))
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MarketExclusion(Base):
    """A reduction an operator keeps out of every batch: its tonnes are claimed elsewhere (green
    certificates, CCER, an enterprise's own inventory). Lifting keeps the row."""

    __tablename__ = "market_exclusions"
    __table_args__ = (
        CheckConstraint(_within("category", EXCLUSION_CATEGORIES), name="category"),
        Index("uq_market_exclusions_live", "reduction_id", unique=True,
              postgresql_where=text("lifted_at IS NULL"), sqlite_where=text("lifted_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reduction_id: Mapped[int] = mapped_column(ForeignKey("reductions.id"))
    category: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(String(500))
    created_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    lift_reason: Mapped[str | None] = mapped_column(String(500))
