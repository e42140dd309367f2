"""Badges: milestones a resident reaches, derived from the registry of certified reductions.

Nothing about a badge is stored: each is recomputed from the resident's certified reductions, so it
is never lost with a cache and always agrees with the registry. The same registry rules apply as for
``reduction_g`` and the leaderboards: a reversed reduction no longer counts, so a reversal can
withdraw a badge earned only through it, or move the day it was earned. A badge's day is the China
day of the activity that completed it (not the day it was reported or certified), so a late report
can move a badge earlier, never later.

Not cached in Redis: the one query reads one resident's reductions by the (resident, time) index,
and an exact answer matters more than the milliseconds a cache would save.

* ``first_green_trip`` — the first certified green trip with grams above 0: every activity type
  whose methodology is in the ``trip`` overlap group (bus, metro, cycling, walking, carpooling,
  and any trip methodology added later).
* ``kg_10``, ``kg_100`` — lifetime certified reductions reach 10 kg / 100 kg CO₂e, counted in the
  order the activities happened.
* ``green_commute_month`` — green trips on at least 20 distinct China days of one calendar month.
  Twenty because a month has 20.83 working days on average (China's 5-day week, 《关于职工全年月平均
  工作时间和工资折算问题的通知》): it means commuting green on practically every working day, while a
  day or two of leave or bad weather does not cost the badge. Earned on the twentieth day of the
  first such month; ``times`` counts the months that qualified.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from backend.db import db, utcnow
from backend.methodology.registry import registry
from backend.models import Reduction
from backend.services.ledger import china_day

COMMUTE_DAYS = 20
MILESTONES = (("kg_10", 10_000), ("kg_100", 100_000))
TRIP_GROUP = "trip"


@dataclass(frozen=True)
class Badge:
    code: str
    name: str
    description: str
    unit: str  # what progress counts: trips, grams, days
    target: int


BADGES = (
    Badge("first_green_trip", "绿色出行第一步 First green trip",
          "Your first certified green trip: bus, metro, cycling, walking or carpooling.", "trips", 1),
    Badge("kg_10", "减碳10公斤 10 kg CO₂e", "Your certified reductions reach 10 kg CO₂e.", "grams", 10_000),
    Badge("kg_100", "减碳100公斤 100 kg CO₂e", "Your certified reductions reach 100 kg CO₂e.", "grams", 100_000),
    Badge("green_commute_month", "绿色通勤月 A month of green commuting",
          f"Green trips on at least {COMMUTE_DAYS} different days of one calendar month (China time).",
          "days", COMMUTE_DAYS),
)


def trip_types() -> frozenset[str]:
    return frozenset(t for entry in registry() if entry.methodology.overlap_group == TRIP_GROUP
                     for t in entry.methodology.types)


@dataclass
class _Earned:
    at: datetime | None = None
    times: int = 0
    current: int = 0


def badges_of(resident_id: int, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every badge, earned or not, with the day it was earned and the progress towards it."""
    today = china_day(now or utcnow())
    trips = trip_types()
    earned = {badge.code: _Earned() for badge in BADGES}
    total = 0
    days_by_month: dict[tuple[int, int], set[date]] = {}
    rows = db.session.execute(
        select(Reduction.occurred_at, Reduction.grams, Reduction.activity_type)
        .where(Reduction.resident_id == resident_id, Reduction.status == "certified")
        .order_by(Reduction.occurred_at, Reduction.id))
    for occurred_at, grams, activity_type in rows:
        total += grams
        for code, threshold in MILESTONES:
            if earned[code].at is None and total >= threshold:
                earned[code].at, earned[code].times = occurred_at, 1
        if activity_type not in trips or grams <= 0:
            continue
        first = earned["first_green_trip"]
        first.current += 1
        if first.at is None:
            first.at, first.times = occurred_at, 1
        day = china_day(occurred_at)
        days = days_by_month.setdefault((day.year, day.month), set())
        if day not in days:
            days.add(day)
            if len(days) == COMMUTE_DAYS:  # the day this month qualified
                month = earned["green_commute_month"]
                month.times += 1
                month.at = month.at or occurred_at
    for code, _ in MILESTONES:
        earned[code].current = total
    earned["green_commute_month"].current = len(days_by_month.get((today.year, today.month), ()))
    return [_view(badge, earned[badge.code]) for badge in BADGES]


def _view(badge: Badge, state: _Earned) -> dict[str, Any]:
    return {
        "code": badge.code, "name": badge.name, "description": badge.description,
        "earned": state.at is not None, "earned_at": state.at,
        "earned_on": china_day(state.at) if state.at is not None else None,
        "times": state.times,
        # For the month badge: days with a green trip in the current China month.
        "progress": {"current": state.current, "target": badge.target, "unit": badge.unit},
    }
