"""Keyset pagination: newest first by id, stable under concurrent inserts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from backend.db import db


def keyset_page(
    query: Select[Any], key: InstrumentedAttribute[int], *, before: int | None, limit: int
) -> tuple[list[Any], int | None]:
    """Rows with ``key < before`` (all when None), newest first; the key to continue from, or None."""
    if before is not None:
        query = query.where(key < before)
    rows = list(db.session.execute(query.order_by(key.desc()).limit(limit + 1)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    items = [row[0] if len(row) == 1 else row for row in rows]
    next_key = None
    if more and rows:
        # By convention the key belongs to the first entity selected (e.g. Posting in a join), or
        # is the first column selected.
        first = rows[-1][0]
        next_key = first if isinstance(first, int) else getattr(first, key.key)
    return items, next_key
