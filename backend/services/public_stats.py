"""Public statistics (``GET /api/v1/public/stats``): aggregates of a region and period that anyone may
read, with small cells suppressed so that no published figure describes fewer than 10 people.

The figures are the admin report's (``reports.py``, the same definitions and time basis): participants
(residents, households), activities received (total and per scenario), net certified grams (total
and per scenario) and points issued to and redeemed by the region's people. Each is published as
``{"value": n, "suppressed": false}``, or ``{"value": null, "suppressed": true}`` when fewer than
``MIN_PEOPLE`` distinct people stand behind it:

- participants: the residents themselves; for households, the households (at least one person each);
- activities and grams: the distinct residents they belong to (a household's activity reported
  without a resident counts as one person);
- points issued: the distinct wallets credited; points redeemed: the distinct residents redeeming.

Complementary suppression: where a group publishes a total and exactly one of its scenario cells is
suppressed, the total minus the others would give it away, so the next smallest cell (fewest
people) is suppressed too, or the total when there is no other cell. Known limits, as with any
cell suppression applied per table: differencing across tables is not prevented (a city's total
minus its districts' published totals, a year minus its published quarters), nor the sum of two
suppressed cells of one group read from its total. Publish regions and periods coarse enough that
this matters little.

Answers are cached in Redis (``store``) for a minute while the period is under way and ten minutes
once it is over; the database stays the only source, and a Redis failure just means no cache.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import case, func, select

from backend.db import db, utcnow
from backend.extensions import store
from backend.models import Activity, JournalEntry, LedgerAccount, Posting, Redemption, Reduction, Resident
from backend.models.ledger import WALLET_KINDS
from backend.services import periods, reports, stats

log = logging.getLogger(__name__)

MIN_PEOPLE = 10
CACHE_PREFIX = "carbon:public-stats:v1:"
TTL_OPEN, TTL_CLOSED = 60, 600
# What a cached value must hold to be served (with its region and period).
FIELDS = frozenset({"region", "period", "complete", "participants", "activities", "certified_grams", "points"})


@dataclass
class Cell:
    key: str
    value: int
    people: int
    suppressed: bool = False

    def view(self) -> dict[str, Any]:
        return {"value": None if self.suppressed else self.value, "suppressed": self.suppressed}


def suppress(cells: list[Cell], total: Cell | None = None) -> None:
    """Primary suppression (fewer than ``MIN_PEOPLE``), then the complementary rule above."""
    for cell in [*cells, *([total] if total is not None else [])]:
        cell.suppressed = cell.people < MIN_PEOPLE
    if total is None or total.suppressed or sum(c.suppressed for c in cells) != 1:
        return
    shown = sorted((c for c in cells if not c.suppressed), key=lambda c: (c.people, c.value, c.key))
    if shown:
        shown[0].suppressed = True
    else:
        total.suppressed = True


def _people(resident: Any, household: Any) -> Any:
    """Distinct people: residents, plus households reported without a resident."""
    return (func.count(func.distinct(resident))
            + func.count(func.distinct(case((resident.is_(None), household)))))


def _grouped(key: Any, value: Any, people: Any, *where: Any) -> tuple[list[Cell], Cell]:
    """Cells per ``key`` and their total, each with the distinct people behind it."""
    cells = [Cell(kind, int(amount or 0), int(count)) for kind, amount, count in db.session.execute(
        select(key, value, people).where(*where).group_by(key).order_by(key)).all()]
    amount, count = db.session.execute(select(value, people).where(*where)).one()
    return cells, Cell("total", int(amount or 0), int(count))


def _activities(w: reports.Window) -> tuple[list[Cell], Cell]:
    return _grouped(Activity.type, func.count(Activity.id), _people(Activity.resident_id, Activity.household_id),
                    Activity.region_code.in_(w.codes), reports.during(Activity.created_at, w))


def _grams(w: reports.Window) -> tuple[list[Cell], Cell]:
    return _grouped(Reduction.activity_type, func.sum(reports.gram_expression()),
                    _people(Reduction.resident_id, Reduction.household_id),
                    Reduction.region_code.in_(w.codes), reports.during(Reduction.created_at, w),
                    Reduction.status == "certified")


def _points_people(w: reports.Window) -> tuple[int, int]:
    credited = stats.join_wallet_owners(
        select(func.count(func.distinct(LedgerAccount.id))).select_from(Posting)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
    ).where(JournalEntry.kind.in_(("credit", "release")), LedgerAccount.kind.in_(WALLET_KINDS),
            stats.wallet_owner_region().in_(w.codes), reports.during(JournalEntry.posted_at, w))
    redeeming = (select(func.count(func.distinct(Redemption.resident_id)))
                 .join(Resident, Resident.id == Redemption.resident_id)
                 .join(JournalEntry, JournalEntry.id == Redemption.close_entry_id)
                 .where(Redemption.status == "fulfilled", Resident.region_code.in_(w.codes),
                        reports.during(JournalEntry.posted_at, w)))
    return int(db.session.scalar(credited) or 0), int(db.session.scalar(redeeming) or 0)


def compute(region: Any, span: periods.Period, now: datetime) -> dict[str, Any]:
    w = reports.window_for(region, span, now)
    joined = reports.participants(w)
    residents = Cell("residents", joined["residents"], joined["residents"])
    households = Cell("households", joined["households"], joined["households"])
    suppress([residents, households])
    activity_cells, activity_total = _activities(w)
    suppress(activity_cells, activity_total)
    gram_cells, gram_total = _grams(w)
    suppress(gram_cells, gram_total)
    flows = reports.points(w)
    credited, redeeming = _points_people(w)
    issued, redeemed = Cell("issued", flows["issued"], credited), Cell("redeemed", flows["redeemed"], redeeming)
    suppress([issued, redeemed])
    return {
        "region": region.code, "region_name": region.name, "region_name_en": region.name_en,
        "period": span.label, "from": span.first.isoformat(), "to": span.last.isoformat(),
        "timezone": "Asia/Shanghai", "complete": span.end <= now, "as_of": w.until.isoformat(),
        "min_people": MIN_PEOPLE,
        "participants": {"residents": residents.view(), "households": households.view()},
        "activities": {"total": activity_total.view(),
                       "by_scenario": [{"scenario": c.key, **c.view()} for c in activity_cells]},
        "certified_grams": {"total": gram_total.view(),
                            "by_scenario": [{"scenario": c.key, **c.view()} for c in gram_cells]},
        "points": {"issued": issued.view(), "redeemed": redeemed.view()},
    }


def public_stats(region: Any, *, period: str | None = None, first: str | None = None, last: str | None = None,
                 now: datetime | None = None) -> dict[str, Any]:
    """Validated like a report (404 unknown region, 422 bad period), then from the cache or computed."""
    now = now or utcnow()
    found = reports.region_of(region, None)
    span = periods.parse(period, first, last, today=stats.china_day(now))
    key = f"{CACHE_PREFIX}{found.code}:{span.label}"
    cached = _cached(key, found.code, span.label)
    if cached is not None:
        return cached
    body = compute(found, span, now)
    try:
        store.set(key, json.dumps(body, ensure_ascii=False), ex=TTL_CLOSED if body["complete"] else TTL_OPEN)
    except RedisError as exc:
        log.info("public stats not cached: %s", exc)
    return body


def _cached(key: str, region: str, label: str) -> dict[str, Any] | None:
    """The figures cached under ``key``, or None: Redis unreachable, nothing cached, or a value that
    is not these figures (not text, not JSON, another region or period, a field missing), which
    is discarded and computed again, never served."""
    try:
        hit = store.get(key)
    except RedisError as exc:
        log.info("public stats cache unavailable: %s", exc)
        return None
    if hit is None:
        return None
    try:
        body = json.loads(hit)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("region") == region and body.get("period") == label \
            and body.keys() >= FIELDS:
        return body
    log.warning("public stats cache: a malformed value under %s was discarded", key)
    with contextlib.suppress(RedisError):
        store.delete(key)
    return None

