"""Governed versions: methodology parameter sets now, exchange rules later, one machinery.

A version moves draft → submitted → approved | rejected, and an approved one may later be retired.
It is in force for activities from ``effective_from`` until a later approved version of the same
subject and region takes effect, or until it is retired. The partial unique indexes below make
two approved versions with the same start impossible, so at any instant at most one is in force.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, utcnow

VERSION_STATUSES = ("draft", "submitted", "approved", "rejected", "retired")
POLICY_KINDS = ("methodology", "rules")
_DECIDED = "status IN ('approved', 'retired')"


class PolicyVersion(Base):
    __tablename__ = "policy_versions"
    __table_args__ = (
        UniqueConstraint("kind", "subject", "version"),
        CheckConstraint("kind IN ('methodology', 'rules')", name="kind"),
        CheckConstraint("status IN ('draft', 'submitted', 'approved', 'rejected', 'retired')", name="status"),
        CheckConstraint("version >= 1", name="version_positive"),
        Index("uq_policy_versions_in_force_region", "kind", "subject", "region_code", "effective_from",
              unique=True, postgresql_where=text(f"{_DECIDED} AND region_code IS NOT NULL"),
              sqlite_where=text(f"{_DECIDED} AND region_code IS NOT NULL")),
        Index("uq_policy_versions_in_force_national", "kind", "subject", "effective_from",
              unique=True, postgresql_where=text(f"{_DECIDED} AND region_code IS NULL"),
              sqlite_where=text(f"{_DECIDED} AND region_code IS NULL")),
        Index("ix_policy_versions_lookup", "kind", "subject", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    # NULL: the national default, in force wherever no region on the way up has its own.
    region_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    # Methodologies: the formula (code) version these parameters were approved for.
    formula_version: Mapped[int | None] = mapped_column(Integer)
    # NULL until approval for a draft that takes effect when approved.
    effective_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    note: Mapped[str] = mapped_column(Text, default="")
    author_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # NULL: the system
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retired_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    @property
    def ref(self) -> str:
        return f"{self.subject}@{self.version}"
