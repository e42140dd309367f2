"""Login identities and their roles.

A user is either a resident or staff (``kind``). Staff hold one or more roles; the composite
foreign key on ``user_roles`` lets the database itself refuse a role for a resident.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.db import Base, BigId, UTCDateTime, utcnow


class Role(enum.StrEnum):
    RESIDENT = "resident"
    MERCHANT_STAFF = "merchant_staff"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    ADMIN = "admin"


STAFF_ROLES = (Role.MERCHANT_STAFF, Role.OPERATOR, Role.AUDITOR, Role.ADMIN)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("id", "kind"),
        CheckConstraint("kind IN ('resident', 'staff')", name="kind"),
        CheckConstraint("username = lower(username)", name="username_lowercase"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # NULL: the user cannot log in (anonymised, or staff without a password yet).
    password_hash: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # Bumped on password change, disable or anonymisation: every token issued before is void.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Staff only: the region this person administers (its children included); NULL = all.
    scope_region_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Loaded when asked for: a resident's every request would otherwise pay a query for none.
    staff_roles: Mapped[list[UserRole]] = relationship(
        lazy="select", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def roles(self) -> frozenset[str]:
        if self.kind == "resident":
            return frozenset({Role.RESIDENT.value})
        return frozenset(r.role for r in self.staff_roles)


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (
        ForeignKeyConstraint(
            ["user_id", "user_kind"], ["users.id", "users.kind"], ondelete="CASCADE"
        ),
        CheckConstraint("user_kind = 'staff'", name="staff_only"),
        CheckConstraint(
            "role IN ('merchant_staff', 'operator', 'auditor', 'admin')", name="role"
        ),
    )

    user_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_kind: Mapped[str] = mapped_column(String(16), default="staff", server_default="staff")
