"""How the console writes times, numbers and grams: China time, thousands separators, g / kg / t.

Display only: the stored quantities stay integers; these functions never feed a calculation.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from backend.methodology import CHINA_STANDARD_TIME

DASH = "—"


def when(moment: datetime | None) -> str:
    """A stored instant as China time, to the minute."""
    if moment is None:
        return DASH
    return moment.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M")


def day(value: date | datetime | None) -> str:
    if value is None:
        return DASH
    if isinstance(value, datetime):
        value = value.astimezone(CHINA_STANDARD_TIME).date()
    return value.isoformat()


def num(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def grams(value: int | None) -> str:
    """Whole grams of CO2e in the unit that reads best, truncated (never rounded up)."""
    if value is None:
        return DASH
    sign, amount = ("-" if value < 0 else ""), abs(int(value))
    if amount < 1_000:
        return f"{sign}{amount:,} g"
    if amount < 1_000_000:
        tenths = amount % 1_000 // 100
        return f"{sign}{amount // 1_000:,}{f'.{tenths}' if tenths else ''} kg"
    hundredths = amount % 1_000_000 // 10_000
    return f"{sign}{amount // 1_000_000:,}{f'.{hundredths:02d}'.rstrip('0') if hundredths else ''} t"


def signed(value: int) -> str:
    return f"+{grams(value)}" if value > 0 else grams(value)


def signed_num(value: int) -> str:
    """A change in points: +1,234 or -56."""
    return f"+{value:,}" if value > 0 else f"{value:,}"


def yuan_of_fen(fen: int | None) -> str:
    if fen is None:
        return DASH
    sign, amount = ("-" if fen < 0 else ""), abs(int(fen))
    return f"{sign}{amount // 100:,}.{amount % 100:02d}"


def plain(value: Any) -> str:
    """Any stored value in a sentence: instants in China time, nothing as a dash."""
    if isinstance(value, datetime):
        return when(value)
    return DASH if value is None else str(value)


FILTERS = {"when": when, "day": day, "num": num, "grams": grams, "signed_grams": signed, "signed_num": signed_num,
           "yuan": yuan_of_fen, "plain": plain}
