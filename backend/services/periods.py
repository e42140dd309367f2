"""Reporting periods: a month ``2026-11``, a quarter ``2026-Q4``, a year ``2026``, or an explicit range
of months ``from``/``to`` (the plans' mid-term reporting), always as calendar periods in China time
(Asia/Shanghai): 23:30 on 31 December in Shanghai belongs to that year, though it is 15:30 UTC.

A period is the half-open span of instants [``start``, ``end``). One that has not begun (its first
day, or for a range its last month, lies after today in China) is refused: there is nothing to
report yet. One under way is reported up to now and says so (``complete``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from backend.errors import field_error
from backend.methodology import end_of_day, start_of_day

NAMED = re.compile(r"([0-9]{4})(?:-(0[1-9]|1[0-2])|-Q([1-4]))?")
MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
FIRST_YEAR = 2000
MAX_MONTHS = 120  # a range spans at most ten years (the plans run to 2030)
NAMED_FORMS = "a month YYYY-MM, a quarter YYYY-Qn or a year YYYY"


@dataclass(frozen=True)
class Period:
    label: str  # 2026 | 2026-Q4 | 2026-11 | 2026-01..2026-06
    kind: str  # year | quarter | month | range
    first: date  # its first day
    last: date  # its last day

    @property
    def start(self) -> datetime:
        return start_of_day(self.first)

    @property
    def end(self) -> datetime:
        return end_of_day(self.last)

    def months(self) -> list[str]:
        """Its months as ``YYYY-MM`` (settlement statements are per month)."""
        found, year, month = [], self.first.year, self.first.month
        while (year, month) <= (self.last.year, self.last.month):
            found.append(f"{year}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return found


def _month_end(year: int, month: int) -> date:
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return following - timedelta(days=1)


def _named(text: str, location: str) -> Period:
    match = NAMED.fullmatch(text)
    if match is None or int(match.group(1)) < FIRST_YEAR:
        raise field_error("period", f"must be {NAMED_FORMS} (from {FIRST_YEAR})", location=location)
    year, month, quarter = int(match.group(1)), match.group(2), match.group(3)
    if month is not None:
        return Period(text, "month", date(year, int(month), 1), _month_end(year, int(month)))
    if quarter is not None:
        first = 3 * int(quarter) - 2
        return Period(text, "quarter", date(year, first, 1), _month_end(year, first + 2))
    return Period(text, "year", date(year, 1, 1), date(year, 12, 31))


def _month(text: Any, field: str, location: str) -> date:
    match = MONTH.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) < FIRST_YEAR:
        raise field_error(field, f"must be a month YYYY-MM (from {FIRST_YEAR}-01)", location=location)
    return date(int(match.group(1)), int(match.group(2)), 1)


def parse(period: str | None, first: str | None = None, last: str | None = None, *, today: date,
          location: str = "query") -> Period:
    """The period asked for, or a 422 naming the field at fault (``period``, ``from`` or ``to``)."""
    if period is not None and (first is not None or last is not None):
        raise field_error("period", "give either period, or from and to, not both", location=location)
    if period is None and first is None and last is None:
        raise field_error("period", f"required: {NAMED_FORMS}, or from and to (months YYYY-MM)",
                          location=location)
    if period is not None:
        found = _named(period.strip(), location)
        if found.first > today:
            raise field_error("period", f"{found.label} has not begun (it starts on {found.first.isoformat()}, "
                                        "China time)", error="future_period", location=location)
        return found
    if first is None or last is None:
        missing = "from" if first is None else "to"
        raise field_error(missing, "required with " + ("'to'" if missing == "from" else "'from'"), location=location)
    start, final = _month(first, "from", location), _month(last, "to", location)
    if start > final:
        raise field_error("from", "must be on or before 'to'", location=location)
    if final > today:
        raise field_error("to", f"{last} has not begun (China time)", error="future_period", location=location)
    if (final.year - start.year) * 12 + final.month - start.month + 1 > MAX_MONTHS:
        raise field_error("to", f"at most {MAX_MONTHS} months from 'from'", location=location)
    return Period(f"{first}..{last}", "range", start, _month_end(final.year, final.month))
