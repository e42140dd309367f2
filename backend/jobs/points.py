"""Scheduled ledger work: expiring points, releasing credits that waited for the budget, timeouts.

Each function is one job: it returns its counts and leaves committing to the runner (which commits
when it returns and rolls back when it raises). ``ledger.expire`` commits per chunk of accounts by
itself, so a large expiry never holds one long transaction.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from backend.db import db, utcnow
from backend.models import QueuedCredit
from backend.observability import metrics
from backend.services import ledger, redemptions, rights


def expire_points(as_of: date | None = None) -> dict[str, int]:
    """Expire what is left of every lot past its last day (China time); idempotent."""
    return ledger.expire(as_of or ledger.china_day(utcnow()))


def release_queued() -> dict[str, int]:
    """Issue queued credits, oldest first, as far as the new period's budget allows."""
    released: list[int] = []

    def note(session: Session, _context: Any) -> None:
        # The queued credits this call marked released, as they are flushed (history is still there).
        released.extend(row.points for row in session.dirty if isinstance(row, QueuedCredit)
                        and row.released_entry_id is not None and inspect(row).attrs.released_entry_id.history.added)

    event.listen(db.session, "after_flush", note)
    try:
        counts = ledger.release_queued()
    finally:
        event.remove(db.session, "after_flush", note)
    metrics.points_issued(sum(released), "release")  # counted when the run commits
    return counts


def expire_holds() -> dict[str, int]:
    """Give back the points of every redemption hold past its time, and its unit of stock."""
    return {"expired": redemptions.expire_holds()}


def expire_grants() -> dict[str, int]:
    """Mark opened-right codes past their validity as expired (no refund: they were usable)."""
    return {"expired": rights.expire_grants(utcnow())}
