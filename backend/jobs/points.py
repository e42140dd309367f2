"""Scheduled ledger work: expiring points, releasing credits that waited for the budget, timeouts.

Each function is one job: it returns its counts and leaves committing to the runner (which commits
when it returns and rolls back when it raises). ``ledger.expire`` commits per chunk of accounts by
itself, so a large expiry never holds one long transaction.
"""

from __future__ import annotations

from datetime import date

from backend.db import utcnow
from backend.services import ledger, redemptions, rights


def expire_points(as_of: date | None = None) -> dict[str, int]:
    """Expire what is left of every lot past its last day (China time); idempotent."""
    return ledger.expire(as_of or ledger.china_day(utcnow()))


def release_queued() -> dict[str, int]:
    """Issue queued credits, oldest first, as far as the new period's budget allows."""
    return ledger.release_queued()


def expire_holds() -> dict[str, int]:
    """Give back the points of every redemption hold past its time, and its unit of stock."""
    return {"expired": redemptions.expire_holds()}


def expire_grants() -> dict[str, int]:
    """Mark opened-right codes past their validity as expired (no refund: they were usable)."""
    return {"expired": rights.expire_grants(utcnow())}
