"""The daily statistics roll-up: every complete China day not rolled up yet, oldest first.

Each day is its own transaction (committed here, the job being the unit-of-work boundary), so a
long catch-up after downtime makes progress day by day and a failure keeps the days before it.
"""

from __future__ import annotations

from typing import Any

from backend.db import db
from backend.services import stats


def rollup() -> dict[str, Any]:
    """Roll up the days that are over and not rolled up yet (yesterday, and any missed before it)."""
    days = stats.days_to_roll()
    rows = 0
    for day in days:
        counts = stats.rollup_day(day)
        db.session.commit()
        rows += counts["activity_rows"] + counts["region_rows"]
    return {"days": len(days), "rows": rows, "first_day": days[0].isoformat() if days else None,
            "last_day": days[-1].isoformat() if days else None}
