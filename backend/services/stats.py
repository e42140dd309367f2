"""Daily statistics: a roll-up per China day of what the platform recorded, per region and type.

A day's figures count what was *recorded* that day (activities received, reductions certified,
points posted), in Asia/Shanghai days. So a closed day never changes afterwards: re-running it
gives the same rows, and each figure reconciles with the registry and the ledger. An activity
reported three days late counts on the day it arrived; an activity approved in review counts as
credited on the day an auditor approved it.

Per region and activity type (``daily_activity_stats``): activities received, certified
reductions, distinct residents and households among them, their grams, and the points issued for
them (credits and released queued credits). Per region (``daily_region_stats``): distinct
residents and households across types, and points that left wallets for good: settled at the
region's merchants, donated to its welfare projects, paid for its opened rights, and expired from
wallets whose owner lives in it. Engagement-only scenarios (quiz) count with zero grams.

Rolling a day replaces that day's rows in one transaction; ``stats_rollups`` marks the days done,
and the catch-up rolls every day from the first recorded data through yesterday that is not marked.

Readers: ``daily`` (a region's series, by type), ``grams_by_region`` (the same grams split by the
regions below) and ``top_communities`` (which counts reductions directly, by the day the activity
happened, as the community leaderboards do).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from backend.db import db, utcnow
from backend.errors import field_error
from backend.methodology import CHINA_STANDARD_TIME, end_of_day, start_of_day
from backend.models import (
    Activity,
    Community,
    CommunityMember,
    DailyActivityStats,
    DailyRegionStats,
    Enterprise,
    Household,
    JournalEntry,
    LedgerAccount,
    Merchant,
    OpenedRight,
    Posting,
    Reduction,
    Region,
    Resident,
    RightGrant,
    StatsRollup,
    User,
    WelfareProject,
)
from backend.models.ledger import WALLET_KINDS
from backend.services.regions import ancestors
from backend.services.scope import descendants, require_in_scope
from backend.validators import YEARS_MESSAGE, platform_year

# A day is rolled up this long after it ended, so what was written in its last seconds is committed.
GRACE = timedelta(minutes=10)
# One run catches up at most this many days (each its own transaction); the next run goes on.
MAX_DAYS_PER_RUN = 400
MAX_SPAN_DAYS = 366
DEFAULT_SPAN_DAYS = 30

ACTIVITY_FIGURES = ("activities", "credited", "residents", "households", "grams", "points_issued")
REGION_FIGURES = ("residents", "households", "points_redeemed", "points_donated", "points_rights", "points_expired")
SPENT_FIGURES = ("points_redeemed", "points_donated", "points_rights")


def china_day(moment: datetime) -> date:
    return moment.astimezone(CHINA_STANDARD_TIME).date()


def last_complete_day(now: datetime | None = None) -> date:
    return china_day((now or utcnow()) - GRACE) - timedelta(days=1)


def first_data_day() -> date | None:
    """The China day the platform first recorded an activity or a journal entry."""
    firsts = [db.session.scalar(select(func.min(Activity.created_at))),
              db.session.scalar(select(func.min(JournalEntry.posted_at)))]
    found = [china_day(moment) for moment in firsts if moment is not None]
    return min(found) if found else None


def days_to_roll(now: datetime | None = None, *, limit: int = MAX_DAYS_PER_RUN) -> list[date]:
    """Days from the first recorded data through the last complete day not rolled up yet, oldest first."""
    first, last = first_data_day(), last_complete_day(now)
    if first is None or first > last:
        return []
    done = set(db.session.scalars(select(StatsRollup.day).where(StatsRollup.day >= first, StatsRollup.day <= last)))
    missing: list[date] = []
    day = first
    while day <= last and len(missing) < limit:
        if day not in done:
            missing.append(day)
        day += timedelta(days=1)
    return missing


# --- one day ---------------------------------------------------------------------------------------


def _in(column: Any, day: date) -> Any:
    return (column >= start_of_day(day)) & (column < end_of_day(day))


def _received(day: date) -> list[Any]:
    return list(db.session.execute(
        select(Activity.region_code, Activity.type, func.count())
        .where(_in(Activity.created_at, day)).group_by(Activity.region_code, Activity.type)))


def _certified(day: date) -> list[Any]:
    return list(db.session.execute(
        select(Reduction.region_code, Reduction.activity_type, func.count(),
               func.count(func.distinct(Reduction.resident_id)), func.count(func.distinct(Reduction.household_id)),
               func.coalesce(func.sum(Reduction.grams), 0))
        .where(_in(Reduction.created_at, day)).group_by(Reduction.region_code, Reduction.activity_type)))


def _issued(day: date) -> list[Any]:
    return list(db.session.execute(
        select(Reduction.region_code, Reduction.activity_type, func.sum(-Posting.amount))
        .select_from(JournalEntry)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, (LedgerAccount.id == Posting.account_id) & (LedgerAccount.kind == "issuance"))
        .join(Reduction, Reduction.id == JournalEntry.reduction_id)
        .where(JournalEntry.kind.in_(("credit", "release")), _in(JournalEntry.posted_at, day))
        .group_by(Reduction.region_code, Reduction.activity_type)))


def _participants(day: date) -> list[Any]:
    return list(db.session.execute(
        select(Reduction.region_code, func.count(func.distinct(Reduction.resident_id)),
               func.count(func.distinct(Reduction.household_id)))
        .where(_in(Reduction.created_at, day)).group_by(Reduction.region_code)))


def _into_accounts(day: date, kind: str, owner: Any, owner_key: Any) -> list[Any]:
    """Net points posted on ``day`` into accounts of ``kind``, by the region of the account's owner."""
    return list(db.session.execute(
        select(owner.region_code, func.sum(Posting.amount))
        .select_from(JournalEntry)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, (LedgerAccount.id == Posting.account_id) & (LedgerAccount.kind == kind))
        .join(owner, owner.id == owner_key)
        .where(_in(JournalEntry.posted_at, day)).group_by(owner.region_code)))


def _rights(day: date) -> list[Any]:
    return list(db.session.execute(
        select(OpenedRight.region_code, func.sum(RightGrant.points))
        .select_from(RightGrant)
        .join(JournalEntry, JournalEntry.id == RightGrant.entry_id)
        .join(OpenedRight, OpenedRight.id == RightGrant.right_id)
        .where(_in(JournalEntry.posted_at, day)).group_by(OpenedRight.region_code)))


def wallet_owner_region() -> Any:
    """The region a wallet's owner lives in now; the query needs ``join_wallet_owners``."""
    return func.coalesce(Resident.region_code, Household.region_code, Enterprise.region_code)


def join_wallet_owners(query: Select[Any]) -> Select[Any]:
    """Outer-join a query on ``ledger_accounts`` to the owners of wallet accounts."""
    return (query.outerjoin(Resident, Resident.id == LedgerAccount.resident_id)
            .outerjoin(Household, Household.id == LedgerAccount.household_id)
            .outerjoin(Enterprise, Enterprise.id == LedgerAccount.enterprise_id))


def _expired(day: date) -> list[Any]:
    region = wallet_owner_region()
    return list(db.session.execute(join_wallet_owners(
        select(region, func.sum(-Posting.amount))
        .select_from(JournalEntry)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, (LedgerAccount.id == Posting.account_id) & LedgerAccount.kind.in_(WALLET_KINDS)))
        .where(JournalEntry.kind == "expire", _in(JournalEntry.posted_at, day)).group_by(region)))


def _lock_day(day: date) -> StatsRollup:
    """The day's marker row, locked: two roll-ups of one day (the job, an admin) take turns."""
    dialect = db.session.get_bind().dialect.name
    insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(StatsRollup.__table__)
    db.session.execute(insert_.values(day=day, computed_at=utcnow(), activity_rows=0, region_rows=0)
                       .on_conflict_do_nothing(index_elements=["day"]))
    return db.session.scalars(select(StatsRollup).where(StatsRollup.day == day)
                              .with_for_update().execution_options(populate_existing=True)).one()


def rollup_day(day: date) -> dict[str, int]:
    """Replace the day's statistics with a fresh count; flushes (the caller commits, one day at a time)."""
    marker = _lock_day(day)
    by_type: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(ACTIVITY_FIGURES, 0))
    for region, kind, count in _received(day):
        by_type[(region, kind)]["activities"] = int(count)
    for region, kind, count, residents, households, grams in _certified(day):
        by_type[(region, kind)].update(credited=int(count), residents=int(residents), households=int(households),
                                       grams=int(grams))
    for region, kind, points in _issued(day):
        by_type[(region, kind)]["points_issued"] = int(points or 0)

    by_region: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(REGION_FIGURES, 0))
    for region, residents, households in _participants(day):
        by_region[region].update(residents=int(residents), households=int(households))
    sources = (("points_redeemed", _into_accounts(day, "merchant_settlement", Merchant, LedgerAccount.merchant_id)),
               ("points_donated", _into_accounts(day, "welfare_project", WelfareProject, LedgerAccount.project_id)),
               ("points_rights", _rights(day)), ("points_expired", _expired(day)))
    for figure, rows in sources:
        for region, points in rows:
            if region is not None and points:
                by_region[region][figure] = int(points)
    region_rows = {region: figures for region, figures in by_region.items() if any(figures.values())}

    db.session.execute(delete(DailyActivityStats).where(DailyActivityStats.day == day))
    db.session.execute(delete(DailyRegionStats).where(DailyRegionStats.day == day))
    if by_type:
        db.session.execute(insert(DailyActivityStats), [
            {"day": day, "region_code": region, "activity_type": kind, **figures}
            for (region, kind), figures in sorted(by_type.items())])
    if region_rows:
        db.session.execute(insert(DailyRegionStats), [
            {"day": day, "region_code": region, **figures} for region, figures in sorted(region_rows.items())])
    marker.computed_at, marker.activity_rows, marker.region_rows = utcnow(), len(by_type), len(region_rows)
    db.session.flush()
    return {"activity_rows": len(by_type), "region_rows": len(region_rows)}


# --- reading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    first: date
    last: date


def window(first: date | None, last: date | None, now: datetime | None = None) -> Window:
    """The days asked for: by default the last 30 complete days; ``from`` after ``to``, a span over
    a year or a day outside the platform's years is refused naming the field."""
    for name, day in (("from", first), ("to", last)):
        if day is not None and not platform_year(day.year):
            raise field_error(name, YEARS_MESSAGE, location="query")
    last = last or (last_complete_day(now) if first is None else first + timedelta(days=DEFAULT_SPAN_DAYS - 1))
    first = first or last - timedelta(days=DEFAULT_SPAN_DAYS - 1)
    if first > last:
        raise field_error("from", "must be on or before 'to'", location="query")
    if (last - first).days + 1 > MAX_SPAN_DAYS:
        raise field_error("to", f"at most {MAX_SPAN_DAYS} days from 'from'", location="query")
    return Window(first, last)


def _regions_for(actor: User, region: str | None) -> set[str] | None:
    """The region codes to sum over: the region asked for and below it, else the actor's scope."""
    if region is not None:
        if db.session.get(Region, region) is None:
            raise field_error("region", f"unknown region code {region!r}", error="unknown_region", location="query")
        require_in_scope(actor, region)
        return descendants(region)
    if actor.scope_region_code is not None:
        return descendants(actor.scope_region_code)
    return None


def daily(actor: User, *, region: str | None, first: date | None, last: date | None) -> dict[str, Any]:
    """A day-by-day series over a region (and the regions below it), with a breakdown by type.

    Only rolled-up days are in the series; ``complete_through`` says how far the roll-up has got.
    """
    span = window(first, last)
    codes = _regions_for(actor, region)

    def scoped(query: Any, column: Any) -> Any:
        return query if codes is None else query.where(column.in_(sorted(codes)))

    days = list(db.session.scalars(select(StatsRollup.day).where(StatsRollup.day >= span.first,
                                                                 StatsRollup.day <= span.last)
                                   .order_by(StatsRollup.day)))
    typed = db.session.execute(scoped(
        select(DailyActivityStats.day, DailyActivityStats.activity_type,
               *[func.sum(getattr(DailyActivityStats, f)) for f in ACTIVITY_FIGURES])
        .where(DailyActivityStats.day >= span.first, DailyActivityStats.day <= span.last),
        DailyActivityStats.region_code).group_by(DailyActivityStats.day, DailyActivityStats.activity_type)
        .order_by(DailyActivityStats.day, DailyActivityStats.activity_type))
    regional = db.session.execute(scoped(
        select(DailyRegionStats.day, *[func.sum(getattr(DailyRegionStats, f)) for f in REGION_FIGURES])
        .where(DailyRegionStats.day >= span.first, DailyRegionStats.day <= span.last),
        DailyRegionStats.region_code).group_by(DailyRegionStats.day))

    series = {day: {"day": day, **dict.fromkeys(ACTIVITY_FIGURES, 0), **dict.fromkeys(REGION_FIGURES, 0),
                    "points_spent": 0, "by_type": []} for day in days}
    for day, kind, *values in typed:
        if day not in series:
            continue
        figures = dict(zip(ACTIVITY_FIGURES, (int(v or 0) for v in values), strict=True))
        series[day]["by_type"].append({"activity_type": kind, **figures})
        for name in ("activities", "credited", "grams", "points_issued"):
            series[day][name] += figures[name]
    for day, *values in regional:
        if day not in series:
            continue
        # Participants across types come from the region table (a person counts once a day per region).
        series[day].update(zip(REGION_FIGURES, (int(v or 0) for v in values), strict=True))
        series[day]["points_spent"] = sum(series[day][name] for name in SPENT_FIGURES)
    rows = [series[day] for day in days]
    summed = ("activities", "credited", "grams", "points_issued", *SPENT_FIGURES, "points_spent", "points_expired")
    totals = {name: sum(row[name] for row in rows) for name in summed}
    return {"region": region, "from": span.first, "to": span.last,
            "complete_through": db.session.scalar(select(func.max(StatsRollup.day))),
            "days": rows, "totals": totals}


def _parts_below(root: str | None) -> list[Region]:
    """The regions a chart splits ``root`` into: its children (nationally, the top level), going down
    while there is only one; a region without children is its own only part."""
    while True:
        parent = Region.parent_code.is_(None) if root is None else Region.parent_code == root
        children = list(db.session.scalars(select(Region).where(parent).order_by(Region.code)))
        if len(children) == 1:
            root = children[0].code
            continue
        if children:
            return children
        return [db.session.get(Region, root)] if root is not None else []


def grams_by_region(actor: User, *, region: str | None, first: date | None, last: date | None) -> dict[str, Any]:
    """Certified grams per rolled-up day, split by the regions one level below ``region`` (default:
    the actor's scope). Grams recorded at ``region`` itself count as a part of their own."""
    span = window(first, last)
    codes = _regions_for(actor, region)
    root = region if region is not None else actor.scope_region_code
    parts = _parts_below(root)
    names = {part.code: part for part in parts}
    query = (select(DailyActivityStats.day, DailyActivityStats.region_code, func.sum(DailyActivityStats.grams))
             .where(DailyActivityStats.day >= span.first, DailyActivityStats.day <= span.last)
             .group_by(DailyActivityStats.day, DailyActivityStats.region_code))
    if codes is not None:
        query = query.where(DailyActivityStats.region_code.in_(sorted(codes)))
    days = list(db.session.scalars(select(StatsRollup.day).where(StatsRollup.day >= span.first,
                                                                 StatsRollup.day <= span.last)
                                   .order_by(StatsRollup.day)))
    series: dict[date, dict[str, int]] = {day: {} for day in days}
    part_of: dict[str, str] = {}
    for day, code, grams in db.session.execute(query):
        if day not in series or not grams:
            continue
        if code not in part_of:
            chain = ancestors(code)
            part_of[code] = next((c for c in chain if c in names), code)
            if part_of[code] not in names:
                names[part_of[code]] = db.session.get(Region, part_of[code])  # type: ignore[assignment]
        part = part_of[code]
        series[day][part] = series[day].get(part, 0) + int(grams)
    used = {part for figures in series.values() for part in figures}
    regions = [{"code": code, "name": row.name if row else code, "name_en": row.name_en if row else code}
               for code, row in sorted(names.items()) if code in used]
    return {"region": region, "from": span.first, "to": span.last, "regions": regions,
            "days": [{"day": day, "grams": series[day]} for day in days]}


def top_communities(actor: User, *, region: str | None, first: date | None, last: date | None,
                    limit: int = 10) -> dict[str, Any]:
    """Communities in the region (default: the actor's scope) ranked by their current members'
    certified grams from activities of the window's China days, with how many members contributed."""
    span = window(first, last)
    codes = _regions_for(actor, region)
    grams = func.sum(Reduction.grams)
    query = (select(Community.id, Community.name, Community.region_code, grams,
                    func.count(func.distinct(Reduction.resident_id)))
             .join(CommunityMember, CommunityMember.community_id == Community.id)
             .join(Reduction, Reduction.resident_id == CommunityMember.resident_id)
             .where(Reduction.status == "certified", Reduction.occurred_at >= start_of_day(span.first),
                    Reduction.occurred_at < end_of_day(span.last))
             .group_by(Community.id, Community.name, Community.region_code)
             .having(grams > 0).order_by(grams.desc(), Community.id).limit(limit))
    if codes is not None:
        query = query.where(Community.region_code.in_(sorted(codes)))
    return {"region": region, "from": span.first, "to": span.last, "communities": [
        {"id": cid, "name": name, "region": code, "grams": int(total), "contributors": int(people)}
        for cid, name, code, total, people in db.session.execute(query)]}
