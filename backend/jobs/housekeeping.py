"""Housekeeping: forget replay guards past their window and long-dead refresh tokens."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_

from backend.config import current_settings
from backend.db import db, utcnow
from backend.models import RefreshToken
from backend.services import jobruns, partners


def run() -> dict[str, int]:
    """Prune replay nonces and refresh tokens that can no longer matter."""
    now = utcnow()
    # Twice the window: a signature older than that has a stale timestamp and is refused anyway.
    nonces = partners.prune_nonces(now - timedelta(seconds=2 * current_settings().partner_signature_window))
    tokens = db.session.execute(
        delete(RefreshToken).where(
            or_(RefreshToken.expires_at < now - timedelta(days=7),
                RefreshToken.revoked_at < now - timedelta(days=30))
        )
    ).rowcount or 0
    return {"nonces_pruned": nonces, "refresh_tokens_deleted": tokens}


def prune_job_runs() -> dict[str, int]:
    """Forget job runs past their retention (each job's latest run stays)."""
    return {"pruned": jobruns.prune()}
