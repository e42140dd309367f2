"""Refresh tokens and the partner signature replay guard."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, utcnow


class RefreshToken(Base):
    """One row per issued refresh token; only its sha256 is stored.

    Tokens rotate on use. Presenting a token that was already rotated means it was stolen, so
    the whole family (every descendant of one login) is revoked. A console (browser) login is a row
    too, whose token was never handed out: its family is the session's handle (``services.auth``).
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family: Mapped[str] = mapped_column(String(32), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PartnerNonce(Base):
    """Signatures already accepted, kept past the timestamp window so a replay is refused.

    Kept in the database, not Redis: losing Redis must not reopen the replay window.
    """

    __tablename__ = "partner_nonces"

    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id"))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
