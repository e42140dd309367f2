"""Partners: the data sources that report activities (transit, bike share, kiosks, the grid)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, utcnow

TRUST_LEVELS = ("standard", "probation")
PARTNER_KINDS = ("transit", "bike_share", "maas", "recycling", "grid", "solar", "education", "other")


class Partner(Base):
    __tablename__ = "partners"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'disabled')", name="status"),
        CheckConstraint("trust_level IN ('standard', 'probation')", name="trust_level"),
        CheckConstraint(
            "kind IN ('transit', 'bike_share', 'maas', 'recycling', 'grid', 'solar', 'education', 'other')",
            name="kind",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    activity_types: Mapped[list[str]] = mapped_column(JSON)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    # The HMAC secret must be recoverable to verify signatures, so it is encrypted, not hashed.
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    # After a rotation the old secret keeps working until this instant, so a partner can roll over.
    previous_secret_ciphertext: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    # standard: plausible activities are credited, outliers reviewed; probation: an auditor reviews
    # every activity (a new partner, or one whose rejection rate jumped).
    trust_level: Mapped[str] = mapped_column(String(16), default="standard", server_default="standard")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
