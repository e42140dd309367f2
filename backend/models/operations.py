"""Operations: scheduler job runs, daily statistics, alerts for people to look at.

A job run is keyed by ``(job_id, scheduled_for)``: however many scheduler replicas fire the same
scheduled run, the unique constraint lets exactly one of them claim it, even one that arrives after
another has finished and released the Redis lock. Statistics are a roll-up of the ledger and the
registry, rebuilt per China day; alerts are flags raised by the nightly checks.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, utcnow
from backend.models.activity import Activity, Reduction
from backend.models.ledger import JournalEntry

RUN_OUTCOMES = ("running", "ok", "failed", "skipped")
RUN_TRIGGERS = ("schedule", "catch_up", "retry", "manual")
ALERT_SEVERITIES = ("info", "warning", "critical")


def _one_of(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class JobRun(Base):
    """One run of a scheduled job, written when a runner claims it and completed when it ends."""

    __tablename__ = "job_runs"
    __table_args__ = (
        UniqueConstraint("job_id", "scheduled_for"),
        CheckConstraint(f"outcome IN ({_one_of(RUN_OUTCOMES)})", name="outcome"),
        CheckConstraint(f"trigger IN ({_one_of(RUN_TRIGGERS)})", name="trigger"),
        CheckConstraint("attempt >= 1", name="attempt_positive"),
        Index("ix_job_runs_job", "job_id", "id"),
        Index("ix_job_runs_outcome", "outcome", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    # The fire time the run belongs to (UTC), or the moment a person asked for a manual run.
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    outcome: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: skipped, never started
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Why it failed or was skipped; on a run that succeeded, a warning (e.g. its lock was lost).
    error: Mapped[str | None] = mapped_column(Text)
    runner: Mapped[str] = mapped_column(String(255))  # host:pid of the process that wrote the row
    requested_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Alert(Base):
    """A flag for the admins: a breach found by a nightly check, a backlog, a failing job.

    At most one unresolved alert per ``(kind, subject)``: a check that finds the same problem again
    refreshes it (``last_seen_at``, ``occurrences``) instead of piling up copies.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(f"severity IN ({_one_of(ALERT_SEVERITIES)})", name="severity"),
        CheckConstraint("occurrences >= 1", name="occurrences_positive"),
        Index("uq_alerts_unresolved", "kind", "subject", unique=True,
              postgresql_where=text("resolved_at IS NULL"), sqlite_where=text("resolved_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(64), default="", server_default="")
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(String(500))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    # sha256 of what must change for an acknowledged alert to be raised afresh.
    fingerprint: Mapped[str] = mapped_column(String(64))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledgement_note: Mapped[str | None] = mapped_column(String(500))
    # Set by the check itself when the condition is gone.
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DailyActivityStats(Base):
    """What the platform recorded on one China day, per region and activity type."""

    __tablename__ = "daily_activity_stats"
    __table_args__ = (
        CheckConstraint("activities >= 0 AND credited >= 0 AND residents >= 0 AND households >= 0 "
                        "AND grams >= 0 AND points_issued >= 0", name="non_negative"),
    )

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), primary_key=True)
    activity_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    activities: Mapped[int] = mapped_column(BigInteger)  # received, whatever became of them
    credited: Mapped[int] = mapped_column(BigInteger)  # certified reductions recorded
    residents: Mapped[int] = mapped_column(BigInteger)  # distinct residents among those reductions
    households: Mapped[int] = mapped_column(BigInteger)  # distinct households among them
    grams: Mapped[int] = mapped_column(BigInteger)  # certified CO2e of those reductions
    points_issued: Mapped[int] = mapped_column(BigInteger)  # credits and released credits posted


class DailyRegionStats(Base):
    """Per China day and region: participants across activity types, and points leaving wallets."""

    __tablename__ = "daily_region_stats"
    __table_args__ = (CheckConstraint("residents >= 0 AND households >= 0", name="non_negative"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), primary_key=True)
    residents: Mapped[int] = mapped_column(BigInteger)
    households: Mapped[int] = mapped_column(BigInteger)
    points_redeemed: Mapped[int] = mapped_column(BigInteger)  # settled at merchants of the region
    points_donated: Mapped[int] = mapped_column(BigInteger)  # to welfare projects of the region
    points_rights: Mapped[int] = mapped_column(BigInteger)  # paid for opened rights of the region
    points_expired: Mapped[int] = mapped_column(BigInteger)  # from wallets whose owner is in the region


class StatsRollup(Base):
    """A China day whose statistics are rolled up (days with nothing recorded have no stats rows)."""

    __tablename__ = "stats_rollups"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    activity_rows: Mapped[int] = mapped_column(Integer)
    region_rows: Mapped[int] = mapped_column(Integer)


# The roll-up reads a day's rows by when they were recorded. These tables belong to other modules;
# the indexes are declared here, beside their only reader, and created by migration 0007.
Index("ix_activities_created_at", Activity.created_at)
Index("ix_reductions_created_at", Reduction.created_at)
Index("ix_journal_entries_posted_at", JournalEntry.posted_at)
