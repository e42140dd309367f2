"""The verification pipeline for reported activities (DESIGN §2, §9), set-based per batch.

schema → consent (binding) → claim window → evidence → dedupe → plausibility and quantification →
fraud patterns → registry → rules → points, all of one batch in the caller's transaction: a crash
credits all of it or none of it, and a retry answers ``duplicate`` with the original outcome.

One round trip per table per batch: items are plain objects, rows go in by Core ``INSERT``; the
residents (or households) a batch reports for are row-locked in id order first, so two batches
reporting the same person's overlapping trips cannot both credit them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import marshmallow as ma
from sqlalchemy import BigInteger, and_, func, insert, select

from backend.db import UTCDateTime, db, utcnow
from backend.methodology import ActivityInput
from backend.methodology.registry import Registered, registry
from backend.models import (
    Activity,
    FraudSignal,
    Household,
    HouseholdMember,
    Partner,
    PartnerBinding,
    Reduction,
    Resident,
)
from backend.observability import metrics
from backend.services import bulk, governance, ledger, rules
from backend.services.ledger import among
from backend.services.quantification import (
    EvidenceError,
    NotQuantifiable,
    Quantified,
    Quantifier,
    first_error,
    load_evidence,
    reduction_values,
    to_stored,
)
from backend.signals import reductions_changed
from backend.validators import YEARS_MESSAGE, in_platform_years

MAX_ITEMS = 1000
CLAIM_WINDOW_DAYS = 30  # unless the region's rules say otherwise ([claims] window_days)
CLOCK_SKEW = timedelta(minutes=5)  # a partner's clock may run a little ahead
LIVE = ("credited", "pending_review")  # what a later overlapping report duplicates
DAY_HOURS_LIMIT = timedelta(hours=20)  # more time travelling in one China day than a person can
CITY_HOP = timedelta(minutes=30)  # two trips in different cities closer than this: impossible
SPIKE_MIN_ITEMS = 50  # a batch this large can show a partner's rejection rate jumping


class ItemSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    external_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    user_ref = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=128))
    type = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=40))
    occurred_at = ma.fields.AwareDateTime(required=True, validate=in_platform_years)
    data = ma.fields.Dict(required=True)


class SelfItemSchema(ItemSchema):
    """What a resident reports themselves: no partner account, an optional id of their own."""

    external_id = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=100))
    user_ref = ma.fields.String(load_default=None)


_ITEM, _SELF_ITEM = ItemSchema(), SelfItemSchema()


@dataclass(eq=False)
class Item:
    """One reported activity on its way through the pipeline."""

    index: int
    external_id: str | None
    status: str | None = None  # set once decided: credited | pending_review | rejected | duplicate
    reason: str | None = None
    at_field: str | None = None  # the field at fault, dotted (data.distance_km)
    message: str | None = None
    user_ref: str | None = None
    type: str = ""
    occurred_at: datetime | None = None
    started_at: datetime | None = None  # the span overlap checks compare (a trip, a billing period)
    ended_at: datetime | None = None
    raw: Any = None
    resident_id: int | None = None
    household_id: int | None = None
    region: str | None = None
    entry: Registered | None = None
    evidence: dict[str, Any] | None = None
    quantified: Quantified | None = None
    duplicate_of: int | None = None
    original: dict[str, Any] | None = None
    activity_id: int | None = None
    reduction_id: int | None = None
    grams: int | None = None
    points: int | None = None
    signals: list[tuple[str, str]] = field(default_factory=list)

    def decide(self, status: str, reason: str | None = None, *, at: str | None = None,
               message: str | None = None) -> None:
        self.status, self.reason, self.at_field, self.message = status, reason, at, message

    @property
    def open(self) -> bool:
        return self.status is None

    def answer(self) -> dict[str, Any]:
        out: dict[str, Any] = {"external_id": self.external_id, "status": self.status}
        for key, value in (("reason", self.reason), ("field", self.at_field), ("message", self.message)):
            if value is not None:
                out[key] = value
        if self.activity_id is not None:
            out["activity_id"] = self.activity_id
        if self.status == "duplicate" and self.original is not None:
            out["original"] = self.original
        if self.grams is not None:
            out["reduction_g"] = self.grams
        if self.points is not None:
            out["points"] = self.points
        return out


@dataclass(frozen=True)
class Reporter:
    """Who reports: a partner (for its bound residents) or a resident (for themselves)."""

    source: str  # partner | import | self
    partner: Partner | None = None
    resident: Resident | None = None


def ingest(reporter: Reporter, raw_items: Sequence[Any], *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Verify, record and credit a batch; one answer per item, in order."""
    now = now or utcnow()
    items = [_parse(i, raw, reporter) for i, raw in enumerate(raw_items)]
    _repeats(items, reporter)
    _subjects(items, reporter)
    _evidence(items)
    _claim_window(items, now)
    quantifier = Quantifier()
    _lock_subjects(items)
    _overlaps(items)
    _quantify(items, reporter, quantifier)
    _fraud_patterns(items, reporter)
    _record(items, reporter, now)
    _credit(items)
    if reporter.partner is not None:
        _rejection_spike(items, reporter.partner, now)
    answers = [item.answer() for item in items]
    metrics.activities_reported(reporter.source, answers)  # counted when the batch commits
    return answers


# --- steps -------------------------------------------------------------------------------------------


def _parse(index: int, raw: Any, reporter: Reporter) -> Item:
    external_id = raw.get("external_id") if isinstance(raw, dict) else None
    item = Item(index, external_id if isinstance(external_id, str) else None, raw=raw)
    if not isinstance(raw, dict):
        item.decide("rejected", "invalid", at=f"activities.{index}", message="must be an object")
        return item
    try:
        loaded = (_SELF_ITEM if reporter.source == "self" else _ITEM).load(raw)
    except ma.ValidationError as exc:
        name, message = first_error(exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages})
        item.decide("rejected", "invalid", at=name, message=message)
        return item
    item.user_ref, item.type, item.occurred_at = loaded["user_ref"], loaded["type"], loaded["occurred_at"]
    item.raw = loaded["data"]
    item.entry = registry().for_type(item.type)
    if item.entry is None:
        item.decide("rejected", "unknown_type", at="type", message=f"unknown activity type {item.type!r}")
    elif reporter.partner is not None and item.type not in reporter.partner.activity_types:
        item.decide("rejected", "type_not_allowed", at="type",
                    message=f"this partner may not report {item.type!r}")
    elif reporter.source == "self" and item.type not in item.entry.methodology.self_reportable:
        item.decide("rejected", "not_self_reportable", at="type",
                    message=f"{item.type!r} comes from partners only")
    elif reporter.source == "self" and item.type == "recycling" and not item.raw.get("receipt_id"):
        item.decide("rejected", "receipt_required", at="data.receipt_id",
                    message="a self-reported drop-off needs the kiosk's receipt number")
    return item


def _repeats(items: list[Item], reporter: Reporter) -> None:
    """The same report again (the partner's external id, or a resident's own id or kiosk receipt)."""
    if reporter.source == "self":
        for item in items:
            if item.open and item.external_id is None and isinstance(item.raw, dict) and item.raw.get("receipt_id"):
                item.external_id = f"receipt:{item.raw['receipt_id']}"
    seen: dict[str, Item] = {}
    for item in items:
        if item.external_id is None or (item.status == "rejected" and item.reason == "invalid"):
            continue
        if item.external_id in seen:
            item.decide("duplicate", "repeated_in_batch", at="external_id",
                        message=f"the same external_id as item {seen[item.external_id].index}")
        else:
            seen[item.external_id] = item
    ids = [i.external_id for i in items if i.open and i.external_id is not None]
    if not ids:
        return
    query = (select(Activity.id, Activity.external_id, Activity.status, Activity.reason, Reduction.grams)
             .outerjoin(Reduction, Reduction.activity_id == Activity.id).where(among(Activity.external_id, ids)))
    if reporter.partner is not None:
        query = query.where(Activity.partner_id == reporter.partner.id)
    else:
        query = query.where(Activity.partner_id.is_(None), Activity.source == "self",
                            Activity.resident_id == reporter.resident.id)  # type: ignore[union-attr]
    earlier = {row.external_id: row for row in db.session.execute(query).all()}
    for item in items:
        row = earlier.get(item.external_id) if item.open else None
        if row is not None:
            item.decide("duplicate", "already_reported", at="external_id",
                        message="reported before; the original outcome is attached")
            item.duplicate_of = row.id
            item.original = {"activity_id": row.id, "status": row.status, "reason": row.reason,
                             "reduction_g": row.grams}


def _subjects(items: list[Item], reporter: Reporter) -> None:
    """Whose activity it is: the resident bound to ``user_ref`` when it happened, and their household."""
    if reporter.source == "self":
        for item in items:
            item.resident_id, item.region = reporter.resident.id, reporter.resident.region_code  # type: ignore[union-attr]
    else:
        refs = {i.user_ref for i in items if i.open}
        bindings: dict[str, list[Any]] = defaultdict(list)
        if refs:
            for row in db.session.execute(
                    select(PartnerBinding.external_user_ref, PartnerBinding.resident_id, PartnerBinding.created_at,
                           PartnerBinding.revoked_at, Resident.region_code)
                    .join(Resident, Resident.id == PartnerBinding.resident_id)
                    .where(PartnerBinding.partner_id == reporter.partner.id,  # type: ignore[union-attr]
                           among(PartnerBinding.external_user_ref, refs))).all():
                bindings[row.external_user_ref].append(row)
        for item in items:
            if not item.open:
                continue
            live = next((b for b in bindings.get(item.user_ref or "", []) if b.revoked_at is None), None)
            if live is None:
                item.decide("rejected", "unbound", at="user_ref",
                            message="no resident has bound this account to the partner (or the binding was revoked)")
            elif item.occurred_at < live.created_at:  # type: ignore[operator]
                item.decide("rejected", "before_binding", at="occurred_at",
                            message="happened before the resident bound this partner")
            else:
                item.resident_id, item.region = live.resident_id, live.region_code
    residents = {i.resident_id for i in items if i.open and i.entry and i.entry.methodology.credits == "household"}
    if residents:
        homes = dict(db.session.execute(select(HouseholdMember.resident_id, HouseholdMember.household_id)
                                        .where(among(HouseholdMember.resident_id, residents))).all())
        for item in items:
            if item.open and item.entry and item.entry.methodology.credits == "household":
                item.household_id = homes.get(item.resident_id)
                if item.household_id is None:
                    item.decide("rejected", "no_household", at="user_ref",
                                message=f"{item.type} credits a household; this resident belongs to none")


def _evidence(items: list[Item]) -> None:
    for item in items:
        if not item.open:
            continue
        try:
            item.entry, item.evidence = load_evidence(item.type, item.raw)
        except EvidenceError as exc:
            name, message = exc.first()
            item.decide("rejected", "invalid_evidence", at=name, message=message)
            continue
        subject = ActivityInput(item.type, item.occurred_at, item.evidence)
        try:  # a plug-in's evidence schema may let a date at the calendar's end through
            item.ended_at = item.entry.methodology.ends_at(subject)
            item.started_at = item.entry.methodology.starts_at(subject) if item.ended_at is not None else None
        except OverflowError:
            item.ended_at = None
            item.decide("rejected", "invalid_evidence", at="data", message=f"its dates {YEARS_MESSAGE}")


def _claim_window(items: list[Item], now: datetime) -> None:
    windows: dict[str, int] = {}
    for item in items:
        if not item.open:
            continue
        if item.occurred_at > now + CLOCK_SKEW:  # type: ignore[operator]
            item.decide("rejected", "in_the_future", at="occurred_at", message="is in the future")
            continue
        if item.region not in windows:
            windows[item.region] = claim_window_days(item.region, now)  # type: ignore[index, arg-type]
        if item.occurred_at < now - timedelta(days=windows[item.region]):  # type: ignore[index, operator]
            item.decide("rejected", "too_old", at="occurred_at",
                        message=f"older than the region's claim window of {windows[item.region]} days")


def claim_window_days(region: str, now: datetime) -> int:
    """How old a reported activity may be: the rules in force say ([claims] window_days), else 30 days."""
    version = governance.in_force(rules.KIND, rules.SUBJECT, region, now)
    claims = (version.payload.get("claims") or {}) if version is not None else {}
    return int(claims.get("window_days", CLAIM_WINDOW_DAYS))


def _subject(item: Item) -> tuple[str, int | None]:
    return ("household", item.household_id) if item.entry.methodology.credits == "household" \
        else ("resident", item.resident_id)  # type: ignore[union-attr]


def _lock_subjects(items: list[Item]) -> None:
    """Row locks on the residents and households reported for, in id order (SQLite's BEGIN IMMEDIATE
    already serialises writers)."""
    if db.session.get_bind().dialect.name != "postgresql":
        return
    residents = sorted({i.resident_id for i in items if i.open and i.resident_id is not None})
    households = sorted({i.household_id for i in items if i.open and i.household_id is not None})
    if residents:
        db.session.execute(select(Resident.id).where(among(Resident.id, residents)).order_by(Resident.id)
                           .with_for_update())
    if households:
        db.session.execute(select(Household.id).where(among(Household.id, households)).order_by(Household.id)
                           .with_for_update())


def _overlaps(items: list[Item]) -> None:
    """One real activity, one credit: a report overlapping an earlier one of the same subject and
    group (any partner's) is a duplicate of it."""
    candidates = [i for i in items if i.open and i.entry.methodology.overlap_group and i.ended_at is not None]  # type: ignore[union-attr]
    if not candidates:
        return
    groups: dict[str, set[str]] = defaultdict(set)
    for entry in registry():
        if entry.methodology.overlap_group:
            groups[entry.methodology.overlap_group] |= set(entry.methodology.types)
    by_subject: dict[tuple[str, int | None, str], list[tuple[datetime, datetime, int | None]]] = defaultdict(list)
    for kind, column in (("resident", Activity.resident_id), ("household", Activity.household_id)):
        mine = [i for i in candidates if _subject(i)[0] == kind]
        if not mine:
            continue
        types = {t for i in mine for t in groups[i.entry.methodology.overlap_group]}  # type: ignore[union-attr]
        # Only what overlaps some candidate's own span: one window per candidate, not the batch's
        # whole span, which late in a busy day returned every earlier trip of a thousand people.
        spans = bulk.rows_table("w", (("subject", BigInteger()), ("lo", UTCDateTime()), ("hi", UTCDateTime())),
                                [(_subject(i)[1], i.started_at, i.ended_at) for i in mine])
        rows = db.session.execute(
            select(Activity.id, column.label("subject"), Activity.type, Activity.started_at, Activity.ended_at)
            .distinct()
            .select_from(spans)
            .join(Activity, and_(column == spans.c.subject, Activity.started_at < spans.c.hi,
                                 Activity.ended_at > spans.c.lo))
            .where(among(column, {_subject(i)[1] for i in mine}), among(Activity.type, types),
                   among(Activity.status, LIVE),
                   Activity.started_at < max(i.ended_at for i in mine),  # type: ignore[type-var]
                   Activity.ended_at > min(i.started_at for i in mine))).all()  # type: ignore[type-var]
        for row in rows:
            group = registry().for_type(row.type).methodology.overlap_group  # type: ignore[union-attr]
            by_subject[(kind, row.subject, group)].append((row.started_at, row.ended_at, row.id))
    for item in sorted(candidates, key=lambda i: i.index):
        kind, subject = _subject(item)
        spans = by_subject[(kind, subject, item.entry.methodology.overlap_group)]  # type: ignore[union-attr]
        clash = next((s for s in spans if s[0] < item.ended_at and item.started_at < s[1]), None)  # type: ignore[operator]
        if clash is not None:
            item.decide("duplicate", "overlaps", at="occurred_at",
                        message="overlaps an activity already reported for this person or household (by any partner)")
            item.duplicate_of = clash[2]
            continue
        spans.append((item.started_at, item.ended_at, None))  # type: ignore[arg-type]


def _quantify(items: list[Item], reporter: Reporter, quantifier: Quantifier) -> None:
    probation = reporter.partner is not None and reporter.partner.trust_level == "probation"
    quantifier.prefetch([(i.entry, i.type, i.occurred_at, i.evidence, i.household_id, i.resident_id)  # type: ignore[misc]
                         for i in items if i.open])
    for item in items:
        if not item.open:
            continue
        try:
            item.quantified = quantified = quantifier.quantify(
                item.entry, item.type, item.occurred_at, item.evidence, item.region,  # type: ignore[arg-type]
                household_id=item.household_id, resident_id=item.resident_id)
        except NotQuantifiable as exc:
            item.decide("pending_review", exc.reason, message=exc.message)
            continue
        rejected = quantified.rejected
        if rejected is not None:
            item.decide("rejected", rejected.code, at=rejected.field and f"data.{rejected.field}",
                        message=rejected.message)
        elif (finding := quantified.review_finding) is not None:
            item.decide("pending_review", finding.code, at=finding.field and f"data.{finding.field}",
                        message=finding.message)
        elif reporter.source == "self":
            item.decide("pending_review", "self_reported", message="an auditor checks self-reported activities")
        elif probation:
            item.decide("pending_review", "partner_on_probation",
                        message="an auditor checks every activity from this partner for now")


def _fraud_patterns(items: list[Item], reporter: Reporter) -> None:
    """A person's day that cannot have happened: more hours on the move than a day allows, or trips
    in two cities minutes apart (a trip's city: its reporting partner's). Checked against the batch
    and what is already recorded around it."""
    trips = [i for i in items if i.status in (None, "pending_review") and i.quantified is not None
             and i.entry.methodology.overlap_group == "trip" and i.ended_at is not None]  # type: ignore[union-attr]
    if not trips:
        return
    # What a trip is checked against starts within a day of it (its China day, trips minutes
    # before or after): one window per trip, not the batch's whole span, which late in a busy day
    # returned every earlier trip of a thousand people.
    windows = bulk.rows_table("w", (("resident", BigInteger()), ("lo", UTCDateTime()), ("hi", UTCDateTime())),
                              [(i.resident_id, i.occurred_at - timedelta(days=1),  # type: ignore[operator]
                                i.ended_at + timedelta(days=1)) for i in trips])  # type: ignore[operator]
    # Kept as running totals, so each trip costs the same however busy its person's day: the time
    # on the move per (person, China day), and each person's spans with their cities (read only
    # when the person has been somewhere else).
    moving: dict[tuple[int, date], timedelta] = defaultdict(timedelta)
    spans: dict[int, list[tuple[datetime, datetime, str]]] = defaultdict(list)  # start, end, city
    cities: dict[int, set[str]] = defaultdict(set)
    for row in db.session.execute(
            select(Activity.id, Activity.resident_id, Activity.occurred_at, Activity.ended_at, Partner.region_code)
            .distinct()
            .select_from(windows)
            .join(Activity, and_(Activity.resident_id == windows.c.resident, Activity.occurred_at >= windows.c.lo,
                                 Activity.occurred_at < windows.c.hi))
            .outerjoin(Partner, Partner.id == Activity.partner_id)
            .where(among(Activity.resident_id, {i.resident_id for i in trips}), among(Activity.status, LIVE),
                   Activity.ended_at.is_not(None),
                   Activity.occurred_at >= min(i.occurred_at for i in trips) - timedelta(days=1),  # type: ignore[operator]
                   Activity.occurred_at < max(i.ended_at for i in trips) + timedelta(days=1))).all():  # type: ignore[operator, type-var]
        city = (row.region_code or "")[:4]
        moving[(row.resident_id, ledger.china_day(row.occurred_at))] += row.ended_at - row.occurred_at
        spans[row.resident_id].append((row.occurred_at, row.ended_at, city))
        cities[row.resident_id].add(city)
    for item in sorted(trips, key=lambda i: i.occurred_at):  # type: ignore[arg-type, return-value]
        city = ((reporter.partner.region_code if reporter.partner is not None else item.region) or "")[:4]
        person, day = item.resident_id, ledger.china_day(item.occurred_at)  # type: ignore[arg-type]
        moving[(person, day)] += item.ended_at - item.occurred_at  # type: ignore[index, operator]
        that_day = moving[(person, day)]  # type: ignore[index]
        if that_day > DAY_HOURS_LIMIT:
            item.signals.append(("too_many_hours", f"{that_day} on the move on {day.isoformat()}"))
        if city and cities[person] - {city, ""}:  # type: ignore[index]
            hop = next((c for s, e, c in spans[person] if c and c != city  # type: ignore[index]
                        and (abs(item.occurred_at - e) < CITY_HOP or abs(s - item.ended_at) < CITY_HOP)), None)  # type: ignore[operator]
            if hop is not None:
                item.signals.append(("impossible_travel", f"trips in city {hop} and city {city} within "
                                                          f"{CITY_HOP.seconds // 60} minutes of each other"))
        if item.signals:
            item.decide("pending_review", item.signals[0][0], message=item.signals[0][1])
        spans[person].append((item.occurred_at, item.ended_at, city))  # type: ignore[index, arg-type]
        cities[person].add(city)  # type: ignore[index]


_ACTIVITY_COLUMNS = ("resident_id", "household_id", "partner_id", "source", "external_id", "type", "occurred_at",
                     "started_at", "ended_at", "region_code", "data", "status", "reason", "duplicate_of", "findings",
                     "created_at")


def _record(items: list[Item], reporter: Reporter, now: datetime) -> None:
    """Activities, then certified reductions: one INSERT each for the batch."""
    for item in items:
        if item.open:
            item.decide("credited")
    # Every judged report of a known person is kept, except a repeat of a report already kept.
    rows = [i for i in items if i.resident_id is not None and i.occurred_at is not None
            and not (i.status == "duplicate" and i.reason != "overlaps")]
    if not rows:
        return
    partner_id = reporter.partner.id if reporter.partner is not None else None
    ids = bulk.insert_returning_ids(Activity.__table__, _ACTIVITY_COLUMNS, [(
        i.resident_id, i.household_id, partner_id, reporter.source, i.external_id, i.type, i.occurred_at,
        i.started_at, i.ended_at, i.region, to_stored(i.evidence) if i.evidence is not None else _jsonable(i.raw),
        i.status, (i.reason or None) and i.reason[:200], i.duplicate_of,
        [f.as_dict() for f in i.quantified.findings] if i.quantified is not None else None, now,
    ) for i in rows])
    for item, activity_id in zip(rows, ids, strict=True):
        item.activity_id = activity_id
    signals = [{"kind": kind, "status": "open", "resident_id": i.resident_id, "partner_id": partner_id,
                "activity_id": i.activity_id, "region_code": i.region, "detail": detail[:500], "created_at": now}
               for i in rows for kind, detail in i.signals]
    if signals:
        db.session.execute(insert(FraudSignal.__table__), signals)
    certified = [i for i in rows if i.status == "credited"]
    if certified:
        values = [reduction_values(i.quantified, activity_id=i.activity_id, resident_id=i.resident_id,  # type: ignore[arg-type]
                                   household_id=i.household_id, region_code=i.region,  # type: ignore[arg-type]
                                   activity_type=i.type, occurred_at=i.occurred_at)  # type: ignore[arg-type]
                  | {"created_at": now} for i in certified]
        columns = tuple(values[0])
        ids = bulk.insert_returning_ids(Reduction.__table__, columns, [tuple(v.values()) for v in values])
        for item, reduction_id in zip(certified, ids, strict=True):
            item.reduction_id, item.grams = reduction_id, item.quantified.grams  # type: ignore[union-attr]
        reductions_changed.send("ingest", subjects=[(i.resident_id, i.region, i.occurred_at) for i in certified])


def _jsonable(raw: Any) -> dict[str, Any]:
    return {k: v if isinstance(v, str | int | bool) or v is None else str(v) for k, v in raw.items()} \
        if isinstance(raw, dict) else {}


def _credit(items: list[Item]) -> None:
    certified = [i for i in items if i.reduction_id is not None]
    if not certified:
        return
    results = {r.reduction_id: r for r in ledger.credit([i.reduction_id for i in certified])}  # type: ignore[misc]
    for item in certified:
        result = results.get(item.reduction_id)  # type: ignore[arg-type]
        item.points = result.points if result is not None and result.status == "credited" else 0
        if result is not None and result.status == "queued":
            item.reason = "points_queued"
            item.message = "the region's issuance budget for this period is used up: points follow next period"


def _rejection_spike(items: list[Item], partner: Partner, now: datetime) -> None:
    """A partner whose rejections jump well above its own last week is flagged (not blocked)."""
    judged = [i for i in items if i.status in ("credited", "rejected", "pending_review")]
    if len(judged) < SPIKE_MIN_ITEMS:
        return
    rate = sum(i.status == "rejected" for i in judged) / len(judged)
    week = db.session.execute(
        select(func.count(), func.count().filter(Activity.status == "rejected"))
        .where(Activity.partner_id == partner.id, Activity.created_at >= now - timedelta(days=7),
               Activity.created_at < now, Activity.status != "duplicate")).one()
    baseline = week[1] / week[0] if week[0] >= SPIKE_MIN_ITEMS else 0.05
    if rate >= max(3 * baseline, baseline + 0.2):
        db.session.add(FraudSignal(kind="rejection_spike", partner_id=partner.id, region_code=partner.region_code,
                                   detail=f"{rate:.0%} of a batch of {len(judged)} rejected; "
                                          f"{baseline:.0%} over the last 7 days"))
        db.session.flush()
