"""Enterprise accounts for small and micro businesses (小微企业), keyed by their USCC."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, utcnow

ENTERPRISE_STATUSES = ("pending", "active", "rejected", "suspended")


class Enterprise(Base):
    __tablename__ = "enterprises"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'active', 'rejected', 'suspended')", name="status"),
        CheckConstraint("length(uscc) = 18", name="uscc_length"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    # 统一社会信用代码 (GB 32100-2015), upper case, check character verified on the way in.
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    # The resident who applied and manages the account on the business's behalf.
    manager_resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"), index=True)
    reviewed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    review_note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
