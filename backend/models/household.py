"""Households: a shared wallet for the people who live together (one household per resident)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, utcnow


class Household(Base):
    __tablename__ = "households"
    __table_args__ = (CheckConstraint("status IN ('active', 'closed')", name="status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    owner_resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    invite_code: Mapped[str | None] = mapped_column(String(8), unique=True)
    status: Mapped[str] = mapped_column(String(8), default="active", server_default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HouseholdMember(Base):
    __tablename__ = "household_members"

    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), primary_key=True)
    # Unique: a resident belongs to at most one household, enforced by the database.
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), primary_key=True, unique=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
