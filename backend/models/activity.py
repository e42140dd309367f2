"""Activities reported by partners or residents, and the registry of certified reductions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, statement_checked, utcnow

ACTIVITY_STATUSES = ("credited", "pending_review", "rejected", "duplicate")


class Activity(Base):
    __tablename__ = "activities"
    __table_args__ = (
        UniqueConstraint("partner_id", "external_id"),
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in ACTIVITY_STATUSES)})", name="status"),
        CheckConstraint("source IN ('partner', 'self', 'import', 'demo')", name="source"),
        Index("ix_activities_resident_time", "resident_id", "occurred_at"),
        Index("ix_activities_type_time", "type", "occurred_at"),
        Index("ix_activities_household_time", "household_id", "occurred_at"),
        Index("ix_activities_review", "id", postgresql_where=text("status = 'pending_review'"),
              sqlite_where=text("status = 'pending_review'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    resident_id: Mapped[int | None] = mapped_column(statement_checked("residents.id"))
    household_id: Mapped[int | None] = mapped_column(statement_checked("households.id"))
    partner_id: Mapped[int | None] = mapped_column(statement_checked("partners.id"))
    source: Mapped[str] = mapped_column(String(8))
    external_id: Mapped[str | None] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The span the activity covered, for "one real activity, one credit": a trip's start and end, a
    # billing period's first and last day (None: the methodology checks no overlap).
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    region_code: Mapped[str] = mapped_column(statement_checked("regions.code"), index=True)
    # The evidence as validated, numbers as decimal strings (never floats).
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(200))
    findings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A duplicate names the activity it repeats (the same external_id, or an overlapping one).
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("activities.id"))
    # The auditor's decision on an activity that went to review.
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Reduction(Base):
    """A certified reduction: what was computed, with which methodology version and factor set.

    Everything needed to replay it is here or referenced: the activity's stored evidence, the
    governed version's parameters (``version_id``), and the facts the platform looked up.
    """

    __tablename__ = "reductions"
    __table_args__ = (
        CheckConstraint("grams >= 0", name="grams_non_negative"),
        CheckConstraint("status IN ('certified', 'reversed')", name="status"),
        Index("ix_reductions_region_time", "region_code", "occurred_at"),
        # Cap usage reads an account's reductions of a day or month: range scans on these.
        Index("ix_reductions_resident_time", "resident_id", "occurred_at"),
        Index("ix_reductions_household_time", "household_id", "occurred_at"),
        Index("ix_reductions_methodology_time", "methodology_id", "occurred_at"),
        # A resident's lifetime certified grams (every balance read) from the index alone.
        Index("ix_reductions_resident_certified", "resident_id", postgresql_include=["grams"],
              postgresql_where=text("status = 'certified'"), sqlite_where=text("status = 'certified'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    activity_id: Mapped[int] = mapped_column(statement_checked("activities.id"), unique=True)
    resident_id: Mapped[int | None] = mapped_column(statement_checked("residents.id"))
    household_id: Mapped[int | None] = mapped_column(statement_checked("households.id"))
    region_code: Mapped[str] = mapped_column(statement_checked("regions.code"))
    activity_type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    methodology_id: Mapped[str] = mapped_column(String(64))
    methodology_version: Mapped[int] = mapped_column(Integer)
    version_id: Mapped[int] = mapped_column(statement_checked("policy_versions.id"))
    formula_version: Mapped[int] = mapped_column(Integer)
    factors_sha256: Mapped[str] = mapped_column(String(64))
    grams: Mapped[int] = mapped_column(BigInteger)
    trace: Mapped[dict[str, Any]] = mapped_column(JSON)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="certified")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def methodology_ref(self) -> str:
        return f"{self.methodology_id}@{self.methodology_version}"


class ReductionEvaluation(Base):
    """How the exchange rules valued a certified reduction: written once, never changed.

    Part of the registry: the grams above a cap stay certified in ``reductions`` and are recorded
    here as capped (``grams - creditable_grams``). Cap usage reads this narrow table by wallet.
    """

    __tablename__ = "reduction_evaluations"
    __table_args__ = (
        CheckConstraint("creditable_grams >= 0 AND creditable_grams <= grams", name="creditable_within"),
        CheckConstraint("points >= 0 AND bonus_points >= 0 AND bonus_points <= points", name="points"),
        Index("ix_reduction_evaluations_account_time", "account_id", "occurred_at"),
    )

    reduction_id: Mapped[int] = mapped_column(statement_checked("reductions.id"), primary_key=True,
                                              autoincrement=False)
    account_id: Mapped[int] = mapped_column(statement_checked("ledger_accounts.id"))
    rules_version_id: Mapped[int] = mapped_column(statement_checked("policy_versions.id"))
    activity_type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    grams: Mapped[int] = mapped_column(BigInteger)
    creditable_grams: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    bonus_points: Mapped[int] = mapped_column(BigInteger, default=0)
    campaign: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def capped_grams(self) -> int:
        return self.grams - self.creditable_grams
