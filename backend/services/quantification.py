"""From activity to verified reduction, and back again (replay).

``Quantifier`` is the one entry point the ingestion pipeline uses: it validates evidence with the
methodology's schema, finds the governed version in force when the activity happened (nearest
region up the chain, then the national default), looks up the facts the methodology asks for,
runs ``check`` and ``quantify``, and records a reduction carrying methodology ``id@version``, the
factor-set sha256, the trace and the facts. ``replay`` recomputes any stored reduction from those
stored inputs and reports a mismatch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import marshmallow as ma
from sqlalchemy import select

from backend.db import db
from backend.methodology import (
    CHINA_STANDARD_TIME,
    REJECT,
    REVIEW,
    ActivityInput,
    FactRequest,
    Finding,
    Quantification,
    start_of_day,
)
from backend.methodology import parameters as params
from backend.methodology.contract import period_days
from backend.methodology.registry import Registered, registry
from backend.models import Activity, PolicyVersion, Reduction
from backend.services import governance, version_cache
from backend.services.methodologies import KIND
from backend.services.regions import ancestors
from backend.signals import reductions_changed


class EvidenceError(Exception):
    """Evidence that does not fit the methodology's schema; ``errors`` name the fields."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(str(errors))
        self.errors = errors

    def first(self) -> tuple[str, str]:
        return first_error(self.errors)


def first_error(messages: Mapping[str, Any]) -> tuple[str, str]:
    """(dotted field, message) of the first of marshmallow's nested messages, for a per-item answer."""
    key, value = next(iter(messages.items()))
    while isinstance(value, dict):
        inner, value = next(iter(value.items()))
        key = f"{key}.{inner}"
    message = value[0] if isinstance(value, list) and value else str(value)
    return str(key), str(message)


class NotQuantifiable(Exception):
    """No version can quantify this activity (none in force, or approved for another formula)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def load_evidence(activity_type: str, raw: Any) -> tuple[Registered, dict[str, Any]]:
    entry = registry().for_type(activity_type)
    if entry is None:
        raise EvidenceError({"type": [f"unknown activity type {activity_type!r}"]})
    if not isinstance(raw, Mapping):
        raise EvidenceError({"data": ["must be an object"]})
    try:
        return entry, registry().evidence_schema(activity_type).load(dict(raw))
    except ma.ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise EvidenceError({"data": messages}) from None


def to_stored(data: Mapping[str, Any]) -> dict[str, Any]:
    """Evidence as stored: decimals and dates as strings, so nothing is lost or turned to float."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Decimal):
            out[key] = params.canonical_decimal(value)
        elif isinstance(value, datetime | date):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Quantified:
    entry: Registered
    version: PolicyVersion
    findings: list[Finding]
    quantification: Quantification
    facts: dict[str, Any]

    @property
    def rejected(self) -> Finding | None:
        return next((f for f in self.findings if f.severity == REJECT), None)

    @property
    def review_finding(self) -> Finding | None:
        return next((f for f in self.findings if f.severity == REVIEW), None)

    @property
    def grams(self) -> int:
        return self.quantification.grams


@dataclass
class Quantifier:
    """Quantifies many activities with cached version indexes and region chains (bulk paths)."""

    _indexes: dict[str, governance.VersionIndex] = field(default_factory=dict)
    _chains: dict[str, list[str]] = field(default_factory=dict)
    _facts: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def prefetch(self, activities: list[tuple[Registered, str, datetime, Mapping[str, Any], int | None, int | None]]
                 ) -> None:
        """Look up the facts of many activities (entry, type, occurred_at, evidence, household,
        resident) at once, so that quantifying them costs no query each."""
        self._facts.update(prefetch_facts([
            (request, household_id, resident_id)
            for entry, activity_type, occurred_at, data, household_id, resident_id in activities
            for request in entry.methodology.required_facts(ActivityInput(activity_type, occurred_at, data))]))

    def chain(self, region: str) -> list[str]:
        if region not in self._chains:
            self._chains[region] = ancestors(region)
        return self._chains[region]

    def version_in_force(self, entry: Registered, region: str, at: datetime) -> PolicyVersion:
        if entry.id not in self._indexes:
            self._indexes[entry.id] = version_cache.index(KIND, entry.id)
        version = self._indexes[entry.id].resolve(self.chain(region), at)
        if version is None:
            raise NotQuantifiable("no_version_in_force",
                                  f"no approved {entry.id} version is in force in {region} at {at.isoformat()}")
        if version.formula_version != entry.methodology.version:
            raise NotQuantifiable("formula_changed",
                                  f"{version.ref} was approved for formula version {version.formula_version}; "
                                  f"the installed code is version {entry.methodology.version}")
        return version

    def quantify(
        self, entry: Registered, activity_type: str, occurred_at: datetime, data: Mapping[str, Any], region: str,
        *, household_id: int | None = None, resident_id: int | None = None,
    ) -> Quantified:
        version = self.version_in_force(entry, region, occurred_at)
        values = params.values(version.payload)
        bare = ActivityInput(activity_type, occurred_at, data)
        facts = resolve_facts(entry.methodology.required_facts(bare), household_id=household_id,
                              resident_id=resident_id, known=self._facts)
        activity = ActivityInput(activity_type, occurred_at, data, facts)
        findings = entry.methodology.check(activity, values)
        quantification = entry.methodology.quantify(activity, values)
        _check_result(entry, quantification)
        return Quantified(entry, version, findings, quantification, facts)


def _check_result(entry: Registered, quantification: Quantification) -> None:
    grams = quantification.grams
    if not isinstance(grams, int) or isinstance(grams, bool) or grams < 0:
        raise ValueError(f"{entry.id} returned {grams!r}: grams must be a whole number ≥ 0")
    if entry.methodology.engagement_only and grams != 0:
        raise ValueError(f"{entry.id} is engagement only but returned {grams} g")


def reduction_values(quantified: Quantified, *, activity_id: int, resident_id: int | None,
                     household_id: int | None, region_code: str, activity_type: str,
                     occurred_at: datetime) -> dict[str, Any]:
    """The registry row of a certified reduction (the bulk path inserts these directly)."""
    version = quantified.version
    return {"activity_id": activity_id, "resident_id": resident_id, "household_id": household_id,
            "region_code": region_code, "activity_type": activity_type, "occurred_at": occurred_at,
            "methodology_id": quantified.entry.id, "methodology_version": version.version, "version_id": version.id,
            "formula_version": quantified.entry.methodology.version, "factors_sha256": version.payload_sha256,
            "grams": quantified.grams, "trace": quantified.quantification.trace, "facts": quantified.facts,
            "status": "certified"}


def record(activity: Activity, quantified: Quantified) -> Reduction:
    """Put a certified reduction in the registry for a stored activity."""
    reduction = Reduction(**reduction_values(
        quantified, activity_id=activity.id, resident_id=activity.resident_id, household_id=activity.household_id,
        region_code=activity.region_code, activity_type=activity.type, occurred_at=activity.occurred_at))
    db.session.add(reduction)
    reductions_changed.send("registry",
                            subjects=[(reduction.resident_id, reduction.region_code, reduction.occurred_at)])
    return reduction


# --- facts ---------------------------------------------------------------------------------------

# A resolver answers many requests at once (one query for a whole batch): each ask is
# (request, household_id, resident_id); it returns one value (or None) per ask, in order.
FactAsk = tuple[FactRequest, int | None, int | None]
FactResolver = Callable[[list[FactAsk]], list[Any]]


def _fact_key(ask: FactAsk) -> tuple[Any, ...]:
    request, household_id, resident_id = ask
    return request.kind, request.name, tuple(sorted(request.params.items())), household_id, resident_id


def resolve_facts(requests: list[FactRequest], *, household_id: int | None, resident_id: int | None,
                  known: Mapping[tuple[Any, ...], Any] | None = None) -> dict[str, Any]:
    """The facts ``requests`` ask for; ``known`` holds answers looked up beforehand for a batch."""
    facts: dict[str, Any] = {}
    for request in requests:
        ask = (request, household_id, resident_id)
        key = _fact_key(ask)
        value = known[key] if known is not None and key in known else _resolver(request.kind)([ask])[0]
        if value is not None:
            facts[request.name] = value
    return facts


def prefetch_facts(asks: list[FactAsk]) -> dict[tuple[Any, ...], Any]:
    """Answers for many activities' fact requests, one resolver call per kind."""
    by_kind: dict[str, list[FactAsk]] = defaultdict(list)
    for ask in asks:
        by_kind[ask[0].kind].append(ask)
    known: dict[tuple[Any, ...], Any] = {}
    for kind, group in by_kind.items():
        known.update(zip(map(_fact_key, group), _resolver(kind)(group), strict=True))
    return known


def _resolver(kind: str) -> FactResolver:
    resolver = _RESOLVERS.get(kind)
    if resolver is None:
        raise NotQuantifiable("unknown_fact", f"no resolver for the fact kind {kind!r}")
    return resolver


def _same_period_last_year(asks: list[FactAsk]) -> list[str | None]:
    """Each household's use in the same period a year earlier, scaled to this period's length.

    Billing dates drift, so the credited record of the household whose period overlaps the shifted
    period most (at least half of it) is used, per day. One query for all the asks.
    """
    windows = []
    for request, household_id, _ in asks:
        start = date.fromisoformat(request.params["period_start"])
        end = date.fromisoformat(request.params["period_end"])
        shifted = (_year_earlier(start), _year_earlier(end))
        windows.append((household_id, shifted, period_days(start, end),
                        start_of_day(shifted[0] - timedelta(days=120)), start_of_day(shifted[1] + timedelta(days=31))))
    households = {w[0] for w in windows if w[0] is not None}
    if not households:
        return [None] * len(asks)
    earlier: dict[int, list[tuple[datetime, dict[str, Any]]]] = defaultdict(list)
    for household_id, occurred_at, data in db.session.execute(
            select(Activity.household_id, Activity.occurred_at, Activity.data).where(
                Activity.household_id.in_(households), Activity.type == "household_electricity",
                Activity.status == "credited",
                Activity.occurred_at >= min(w[3] for w in windows if w[0] is not None),
                Activity.occurred_at <= max(w[4] for w in windows if w[0] is not None))):
        earlier[household_id].append((occurred_at, data))
    return [None if household_id is None else
            _best_match([data for at, data in earlier[household_id] if low <= at <= high], shifted, days_now)
            for household_id, shifted, days_now, low, high in windows]


def _best_match(bills: list[dict[str, Any]], shifted: tuple[date, date], days_now: int) -> str | None:
    best: tuple[int, dict[str, Any]] | None = None
    for data in bills:
        ly_start = date.fromisoformat(data["period_start"])
        ly_end = date.fromisoformat(data["period_end"])
        overlap = (min(ly_end, shifted[1]) - max(ly_start, shifted[0])).days + 1
        if overlap * 2 >= days_now and (best is None or overlap > best[0]):
            best = (overlap, data)
    if best is None:
        return None
    bill = best[1]
    per_day = Decimal(bill["kwh"]) / period_days(date.fromisoformat(bill["period_start"]),
                                                 date.fromisoformat(bill["period_end"]))
    return params.canonical_decimal((per_day * days_now).quantize(Decimal("0.001")))


def _year_earlier(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


# The facts a methodology may ask for (FactRequest.kind), and who looks each one up.
_RESOLVERS: dict[str, FactResolver] = {
    "household_electricity.same_period_last_year_kwh": _same_period_last_year,
}


# --- re-running stored activities ----------------------------------------------------------------


@dataclass(frozen=True)
class Rerun:
    grams: int
    rejected: bool
    review: bool


def requantify(entry: Registered, activity: Activity, facts: Mapping[str, Any],
               values: Mapping[str, Decimal]) -> Rerun:
    """Quantify a stored activity with other parameter values (simulation); writes nothing."""
    data = entry.methodology.evidence_schema(activity.type).load(dict(activity.data))
    subject = ActivityInput(activity.type, activity.occurred_at, data, dict(facts))
    findings = entry.methodology.check(subject, values)
    grams = entry.methodology.quantify(subject, values).grams
    return Rerun(grams, any(f.severity == REJECT for f in findings), any(f.severity == REVIEW for f in findings))


@dataclass(frozen=True)
class ReplayReport:
    reduction_id: int
    ok: bool
    stored_g: int
    replayed_g: int | None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"reduction_id": self.reduction_id, "ok": self.ok, "stored_g": self.stored_g,
                "replayed_g": self.replayed_g, "problem": self.problem}


def replay(reduction: Reduction) -> ReplayReport:
    """Recompute a stored reduction from its stored inputs; say whether it gives the same grams."""
    # Always what the database holds now, never a copy remembered by this session.
    activity = db.session.get(Activity, reduction.activity_id, populate_existing=True)
    version = db.session.get(PolicyVersion, reduction.version_id, populate_existing=True)
    if reduction.methodology_id not in registry():
        return ReplayReport(reduction.id, False, reduction.grams, None,
                            f"methodology {reduction.methodology_id!r} is not installed")
    entry = registry().get(reduction.methodology_id)
    if entry.methodology.version != reduction.formula_version:
        return ReplayReport(reduction.id, False, reduction.grams, None,
                            f"formula version {reduction.formula_version} is not installed "
                            f"(the code is version {entry.methodology.version})")
    if activity is None or version is None:
        return ReplayReport(reduction.id, False, reduction.grams, None, "activity or version row is missing")
    if params.digest(version.payload) != reduction.factors_sha256:
        return ReplayReport(reduction.id, False, reduction.grams, None,
                            "the version's parameters no longer match the recorded factor-set sha256")
    try:
        data = entry.methodology.evidence_schema(activity.type).load(dict(activity.data))
    except ma.ValidationError as exc:
        return ReplayReport(reduction.id, False, reduction.grams, None, f"stored evidence no longer loads: {exc}")
    subject = ActivityInput(activity.type, activity.occurred_at, data, dict(reduction.facts or {}))
    result = entry.methodology.quantify(subject, params.values(version.payload))
    if result.grams != reduction.grams:
        return ReplayReport(reduction.id, False, reduction.grams, result.grams, "replay gives different grams")
    if result.trace != reduction.trace:
        return ReplayReport(reduction.id, False, reduction.grams, result.grams, "replay gives a different trace")
    return ReplayReport(reduction.id, True, reduction.grams, result.grams)


def replay_many(*, reduction_id: int | None = None, since: datetime | None = None) -> dict[str, Any]:
    query = select(Reduction).order_by(Reduction.id).execution_options(yield_per=1000, populate_existing=True)
    if reduction_id is not None:
        query = query.where(Reduction.id == reduction_id)
    if since is not None:
        query = query.where(Reduction.occurred_at >= since.replace(tzinfo=since.tzinfo or CHINA_STANDARD_TIME))
    checked, problems = 0, []
    for reduction in db.session.scalars(query):
        report = replay(reduction)
        checked += 1
        if not report.ok:
            problems.append(report.as_dict())
    return {"checked": checked, "matching": checked - len(problems), "problems": problems}
