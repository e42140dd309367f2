"""Scheduled ledger work: expiring points, releasing credits that waited for the budget."""

from __future__ import annotations

from datetime import date

from backend.db import db, utcnow
from backend.services import ledger, redemptions, rights


def expire_points(as_of: date | None = None) -> dict[str, int]:
    """Expire what is left of every lot past its last day (China time); idempotent."""
    return ledger.expire(as_of or ledger.china_day(utcnow()))


def release_queued() -> dict[str, int]:
    """Issue queued credits, oldest first, as far as the new period's budget allows."""
    counts = ledger.release_queued()
    db.session.commit()
    return counts


def expire_holds() -> dict[str, int]:
    """Give back the points of every redemption hold past its time, and its unit of stock."""
    count = redemptions.expire_holds()
    db.session.commit()
    return {"expired": count}


def expire_grants() -> dict[str, int]:
    """Mark opened-right codes past their validity as expired (no refund: they were usable)."""
    count = rights.expire_grants(utcnow())
    db.session.commit()
    return {"expired": count}
