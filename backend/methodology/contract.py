"""The methodology contract (DESIGN §5): what a methodology module declares and must do.

A methodology is a class with a string ``id`` (CTFd-style plugin type), found through the
``carbon_points.methodologies`` entry-point group. It is *pure*: ``check`` and ``quantify`` see only
their arguments, compute in ``Decimal`` and round grams down. Parameter values never live in code:
defaults come from the package's factors file, then from governed, auditor-approved versions.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, ClassVar

import marshmallow as ma

from backend.validators import in_platform_years

REJECT = "reject"
REVIEW = "review"


@dataclass(frozen=True)
class Param:
    """One parameter a methodology needs: its unit and bounds are part of the contract."""

    unit: str
    description: str
    minimum: Decimal = Decimal(0)
    maximum: Decimal | None = None
    integer: bool = False


@dataclass(frozen=True)
class ActivityInput:
    """What a methodology sees of an activity: its type, time, validated evidence and facts.

    ``facts`` are inputs the platform looked up for the methodology (``required_facts``), e.g. the
    same billing period a year earlier; they are stored with the reduction so replay is exact.
    """

    type: str
    occurred_at: datetime
    data: Mapping[str, Any]
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """A plausibility finding. ``reject`` stops the activity; ``review`` sends it to an auditor."""

    code: str
    severity: str
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "field": self.field, "message": self.message}


@dataclass(frozen=True)
class Quantification:
    """Whole grams CO2e (rounded down) and the trace of how they were reached."""

    grams: int
    trace: dict[str, str]


@dataclass(frozen=True)
class FactRequest:
    """A fact the platform must look up before quantifying, by a resolver registered for ``kind``."""

    name: str
    kind: str
    params: Mapping[str, Any]


class Methodology(ABC):
    """Base class of every methodology. Subclasses set the class attributes and two functions."""

    id: ClassVar[str]
    version: ClassVar[int]  # the formula's version: parameters are approved for one formula version
    title: ClassVar[str]
    title_zh: ClassVar[str] = ""
    types: ClassVar[frozenset[str]]
    formula: ClassVar[str]  # readable, for residents and journalists (GET /public/methodologies)
    references: ClassVar[tuple[str, ...]] = ()
    parameters: ClassVar[Mapping[str, Param]]
    # Engagement-only methodologies (quizzes, volunteering) quantify zero grams, always.
    engagement_only: ClassVar[bool] = False
    # Activity types a resident may report themselves (the rest come only from partners).
    self_reportable: ClassVar[frozenset[str]] = frozenset()
    # Whose reduction it is: the resident's, or their household's (a household's electricity bill).
    credits: ClassVar[str] = "resident"
    # Activities of one subject (resident or household, as ``credits``) in the same group cannot
    # overlap in time: a later report overlapping an earlier one is the same real activity
    # (DESIGN invariant 2). None: no such check (a kiosk receipt is told apart by its external id).
    overlap_group: ClassVar[str | None] = None
    # The package's factors file (TOML), relative to the module defining the class.
    factors_file: ClassVar[str] = "factors.toml"

    @abstractmethod
    def evidence_schema(self, activity_type: str) -> ma.Schema:
        """The schema of ``data`` for one activity type; it loads numbers as ``Decimal``. The platform
        asks once per type and reuses the schema for every activity, so it must keep no state."""

    @abstractmethod
    def check(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> list[Finding]:
        """Plausibility (speed, bounds, windows) against the parameters in force. Pure."""

    @abstractmethod
    def quantify(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        """Grams CO2e of the verified reduction. Pure, Decimal, rounds down, never negative."""

    def required_facts(self, activity: ActivityInput) -> list[FactRequest]:
        """Facts to look up before ``quantify`` (none by default)."""
        return []

    def starts_at(self, activity: ActivityInput) -> datetime:
        """When the activity began, for overlap checks: by default when it was reported to happen."""
        return activity.occurred_at

    def ends_at(self, activity: ActivityInput) -> datetime | None:
        """When the activity ended, for overlap checks; None when it has no duration."""
        return None

    @classmethod
    def package_dir(cls) -> Path:
        import sys

        module = sys.modules[cls.__module__]
        return Path(module.__file__ or ".").parent


def floor_grams(value: Decimal) -> int:
    """Round down to whole grams, never below zero (conservative, DESIGN §3.1)."""
    if not value.is_finite():
        raise ValueError(f"non-finite quantity {value}")
    return max(0, int(value.to_integral_value(rounding=ROUND_FLOOR)))


def dec(value: Decimal) -> str:
    """Decimal for a trace, canonical: plain notation, no exponent, no trailing zeros.

    Canonical so that a trace computed from evidence as received ("2.50") equals the trace
    replayed from evidence as stored ("2.5").
    """
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


MAX_DIGITS, MAX_EXPONENT = 30, 15


class FiniteDecimal(ma.fields.Decimal):
    """A finite decimal given as a JSON number or string, within bounds; NaN and Infinity refused."""

    def __init__(
        self, *, minimum: Decimal | int | None = None, exclusive_minimum: bool = False,
        maximum: Decimal | int | None = None, **kwargs: Any,
    ) -> None:
        kwargs.setdefault("required", True)
        kwargs.setdefault("as_string", False)
        super().__init__(allow_nan=False, **kwargs)
        self.minimum = None if minimum is None else Decimal(minimum)
        self.exclusive_minimum = exclusive_minimum
        self.maximum = None if maximum is None else Decimal(maximum)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool) or value is None:
            raise self.make_error("invalid")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ma.ValidationError("must be a finite number")
            value = repr(value)  # the shortest decimal that round-trips, not the binary expansion
        result = super()._deserialize(value, attr, data, **kwargs)
        if result is None or not result.is_finite():
            raise ma.ValidationError("must be a finite number")
        if result.is_zero():
            result = Decimal(0)  # 0E-999999999 is zero, written in a billion digits
        # Stored and signed in full (``dec``): an exponent such as 1E+999999999 would be a gigabyte.
        if len(result.as_tuple().digits) > MAX_DIGITS or (not result.is_zero() \
                and not -MAX_EXPONENT <= result.adjusted() <= MAX_EXPONENT):
            raise ma.ValidationError(f"must have at most {MAX_DIGITS} significant digits and lie between "
                                     f"1E-{MAX_EXPONENT} and 1E+{MAX_EXPONENT} in size")
        if self.minimum is not None:
            if self.exclusive_minimum and result <= self.minimum:
                raise ma.ValidationError(f"must be greater than {self.minimum}")
            if result < self.minimum:
                raise ma.ValidationError(f"must be at least {self.minimum}")
        if self.maximum is not None and result > self.maximum:
            raise ma.ValidationError(f"must be at most {self.maximum}")
        return result


def positive(**kwargs: Any) -> FiniteDecimal:
    return FiniteDecimal(minimum=0, exclusive_minimum=True, **kwargs)


def non_negative(**kwargs: Any) -> FiniteDecimal:
    return FiniteDecimal(minimum=0, **kwargs)


class EvidenceSchema(ma.Schema):
    """Base for evidence schemas: unknown fields are refused."""

    class Meta:
        unknown = ma.RAISE


class PeriodEvidence(EvidenceSchema):
    """A metered period (billing or generation): first and last day, both included, and kWh."""

    period_start = ma.fields.Date(required=True, validate=in_platform_years)
    period_end = ma.fields.Date(required=True, validate=in_platform_years)
    kwh = non_negative(maximum=1_000_000)

    @ma.validates_schema
    def _period(self, data: dict[str, Any], **_: Any) -> None:
        if "period_start" in data and "period_end" in data and data["period_end"] < data["period_start"]:
            raise ma.ValidationError("must not be before period_start", "period_end")


class MeteredPeriod:
    """Mix in before ``Methodology`` when the evidence is a ``PeriodEvidence``: the activity spans
    its period's days, whenever the bill or reading was reported."""

    def starts_at(self, activity: ActivityInput) -> datetime:
        return start_of_day(activity.data["period_start"])

    def ends_at(self, activity: ActivityInput) -> datetime | None:
        return end_of_day(activity.data["period_end"])


def metered_period_findings(data: Mapping[str, Any], parameters: Mapping[str, Decimal], *, high_code: str,
                            high_message: str) -> list[Finding]:
    """Checks every metered period gets: at most ``max_period_days`` long (else rejected), and no
    more than ``review_above_kwh_per_day`` on average (else an auditor looks at it)."""
    days = period_days(data["period_start"], data["period_end"])
    if days > parameters["max_period_days"]:
        return [Finding("period_too_long", REJECT, "period_end",
                        f"a period of {days} days is longer than {parameters['max_period_days']}")]
    per_day = data["kwh"] / days
    if per_day > parameters["review_above_kwh_per_day"]:
        return [Finding(high_code, REVIEW, "kwh", f"{per_day:.1f} kWh a day {high_message}")]
    return []


def period_days(start: date, end: date) -> int:
    """Days in a billing period, both ends included."""
    return (end - start).days + 1


CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")


def start_of_day(day: date) -> datetime:
    """The instant a calendar day starts in China."""
    return datetime.combine(day, time(0), tzinfo=CHINA_STANDARD_TIME)


def end_of_day(day: date) -> datetime:
    """The instant a calendar day ends in China (periods are Chinese calendar days)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=CHINA_STANDARD_TIME)
