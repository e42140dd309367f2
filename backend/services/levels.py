"""Green levels (绿色等级): where a resident stands by lifetime certified grams.

A region's rules may publish a ladder of levels, ``[{name, min_grams}]``, lowest first and starting
at 0 g (``backend/rules/schema.py``); a child region inherits its parent's ladder with the rest of
the rules. Lifetime grams are the resident's certified reductions, the ``reduction_g`` of their
balance: grams above a points cap still count, a reversed reduction no longer does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backend.db import utcnow
from backend.errors import Conflict
from backend.models import Resident
from backend.services import ledger, wallets


def ladder(region: str, at: datetime | None = None) -> list[dict[str, Any]]:
    """The levels of the rules in force in ``region`` (empty: none configured, or no rules)."""
    try:
        version = ledger.rules_in_force(region, at or utcnow())
    except Conflict:
        return []
    return list(version.payload.get("levels") or [])


def lifetime_grams(resident_id: int) -> int:
    return wallets.certified_grams("resident_wallet", resident_id)


def place(grams: int, levels: list[dict[str, Any]]) -> dict[str, Any]:
    """The level ``grams`` reach on a ladder, the next one and how far it is."""
    level = next_level = None
    for step in levels:
        if step["min_grams"] <= grams:
            level = step["name"]
        elif next_level is None:
            next_level = step
    return {
        "level": level,
        "lifetime_grams": grams,
        "next_level": next_level["name"] if next_level else None,
        "grams_to_next": next_level["min_grams"] - grams if next_level else None,
        "levels": levels,
    }


def level_of(resident: Resident, at: datetime | None = None) -> dict[str, Any]:
    """``{level, lifetime_grams, next_level, grams_to_next, levels}`` under the rules in force in the
    resident's region; ``level`` is None when the region has no levels."""
    return place(lifetime_grams(resident.id), ladder(resident.region_code, at))
