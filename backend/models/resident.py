"""Residents: the people who earn and spend points."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, ForeignKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.db import Base, BigId, UTCDateTime, utcnow
from backend.models.user import User


class Resident(Base):
    __tablename__ = "residents"
    __table_args__ = (
        ForeignKeyConstraint(["user_id", "user_kind"], ["users.id", "users.kind"]),
        CheckConstraint("user_kind = 'resident'", name="resident_user"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, unique=True)
    user_kind: Mapped[str] = mapped_column(String(16), default="resident", server_default="resident")
    display_name: Mapped[str] = mapped_column(String(64))
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the person deleted their account (PIPL): the row stays so ledgers stay whole.
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")
