"""The exchange-rule set a region publishes (DESIGN §6), its schema, and its TOML form.

A rule set says how certified grams become points: points per kg CO2e per scenario (activity
type), caps per account per scenario and day or month (in grams; several types may share one cap),
engagement points (quizzes), campaign multipliers with date windows and their own budget, the
expiry policy, the issuance budget per period, the settlement rate merchants are paid at, and
(optionally) the green levels residents reach by lifetime certified grams.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import marshmallow as ma

from backend.methodology.contract import FiniteDecimal, dec

CAP_PERIODS = ("day", "month")
BUDGET_PERIODS = ("month", "quarter", "year")
EXPIRY_POLICIES = ("end_of_next_year", "days_after", "never")
WHEN_EXHAUSTED = ("queue",)
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class _Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


MAX_QUANTITY = 10**15  # far above any real budget or cap, well inside BIGINT


def _unit_hint(unit: str) -> ma.validate.Validator:
    return ma.validate.Range(min=0, max=MAX_QUANTITY, error=f"must be a whole number of {unit}, 0 to 10^15")


class PointsSchema(_Strict):
    default_per_kg = FiniteDecimal(minimum=0, maximum=100000, as_string=True,
                                   metadata={"description": "points per kg CO2e for every scenario"})
    per_kg = ma.fields.Dict(keys=ma.fields.String(), values=FiniteDecimal(minimum=0, maximum=100000, as_string=True),
                            load_default=dict, metadata={"description": "per-scenario rate, overriding the default"})


class CapSchema(_Strict):
    types = ma.fields.List(ma.fields.String(), required=True, validate=ma.validate.Length(min=1))
    period = ma.fields.String(required=True, validate=ma.validate.OneOf(CAP_PERIODS))
    grams = ma.fields.Integer(required=True, strict=True, validate=_unit_hint("grams"),
                              metadata={"description": "credited grams per account and period that earn points"})


class QuizSchema(_Strict):
    points = ma.fields.Integer(required=True, strict=True, validate=_unit_hint("points"))
    min_score = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=0, max=100))
    per_day = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=0, max=100))


class EngagementSchema(_Strict):
    quiz = ma.fields.Nested(QuizSchema)


class CampaignSchema(_Strict):
    id = ma.fields.String(required=True, validate=ma.validate.Regexp(_ID, error="lower case letters, digits, - and _"))
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    types = ma.fields.List(ma.fields.String(), required=True, validate=ma.validate.Length(min=1))
    starts_on = ma.fields.Date(required=True)
    ends_on = ma.fields.Date(required=True)
    multiplier = FiniteDecimal(minimum=1, maximum=10, as_string=True)
    budget_points = ma.fields.Integer(required=True, strict=True, validate=_unit_hint("points"))

    @ma.validates_schema
    def _window(self, data: dict[str, Any], **_: Any) -> None:
        if "starts_on" in data and "ends_on" in data and data["ends_on"] < data["starts_on"]:
            raise ma.ValidationError("must not be before starts_on", "ends_on")


class ExpirySchema(_Strict):
    policy = ma.fields.String(required=True, validate=ma.validate.OneOf(EXPIRY_POLICIES))
    days = ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1, max=3650))

    @ma.validates_schema
    def _days(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("policy") == "days_after" and "days" not in data:
            raise ma.ValidationError("required when policy is days_after", "days")
        if data.get("policy") != "days_after" and "days" in data:
            raise ma.ValidationError("only with policy days_after", "days")


class BudgetSchema(_Strict):
    period = ma.fields.String(required=True, validate=ma.validate.OneOf(BUDGET_PERIODS))
    points = ma.fields.Integer(required=True, strict=True, validate=_unit_hint("points"),
                               metadata={"description": "points this region may issue per period"})
    when_exhausted = ma.fields.String(load_default="queue", validate=ma.validate.OneOf(WHEN_EXHAUSTED))


class SettlementSchema(_Strict):
    yuan_per_point = FiniteDecimal(minimum=0, maximum=100, as_string=True)


class ClaimsSchema(_Strict):
    window_days = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1, max=366),
                                    metadata={"description": "how many days after an activity it may be reported"})


class LevelSchema(_Strict):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=32))
    min_grams = ma.fields.Integer(required=True, strict=True, validate=_unit_hint("grams"),
                                  metadata={"description": "lifetime certified grams from which the level holds"})


class RuleSetSchema(_Strict):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    points = ma.fields.Nested(PointsSchema, required=True)
    caps = ma.fields.List(ma.fields.Nested(CapSchema), load_default=list)
    engagement = ma.fields.Nested(EngagementSchema, load_default=dict)
    campaigns = ma.fields.List(ma.fields.Nested(CampaignSchema), load_default=list)
    expiry = ma.fields.Nested(ExpirySchema, required=True)
    budget = ma.fields.Nested(BudgetSchema, required=True)
    settlement = ma.fields.Nested(SettlementSchema, required=True)
    claims = ma.fields.Nested(ClaimsSchema)  # absent: 30 days
    # Green levels by lifetime certified grams, lowest first (absent: the region has no levels).
    levels = ma.fields.List(ma.fields.Nested(LevelSchema), validate=ma.validate.Length(
        min=1, max=50, error="give 1 to 50 levels, lowest first, the first at 0 grams"))


def _level_errors(levels: list[dict[str, Any]]) -> dict[int, dict[str, list[str]]]:
    """Levels start at 0 g, climb strictly and have distinct, non-blank names."""
    errors: dict[int, dict[str, list[str]]] = {}
    seen: dict[str, int] = {}
    for i, level in enumerate(levels):
        name = level["name"]
        if not name.strip():
            errors.setdefault(i, {})["name"] = ["must not be blank"]
        elif name in seen:
            errors.setdefault(i, {})["name"] = [f"{name!r} is used twice (levels[{seen[name]}])"]
        seen.setdefault(name, i)
        if i == 0 and level["min_grams"] != 0:
            errors.setdefault(i, {})["min_grams"] = ["the first level must start at 0 grams"]
        elif i > 0 and level["min_grams"] <= levels[i - 1]["min_grams"]:
            errors.setdefault(i, {})["min_grams"] = [
                f"must be more than the level before ({levels[i - 1]['min_grams']} g): levels climb strictly"]
    return errors


def _scenario_errors(data: dict[str, Any], scenarios: frozenset[str]) -> dict[str, Any]:
    """Cross-field checks: known scenarios, a type in at most one cap, campaigns that do not clash."""
    errors: dict[str, Any] = {}
    known = ", ".join(sorted(scenarios))
    for name in data["points"].get("per_kg", {}):
        if name not in scenarios:
            errors.setdefault("points", {}).setdefault("per_kg", {})[name] = [
                f"unknown scenario {name!r}; known: {known}"]
    capped: dict[tuple[str, str], int] = {}  # (type, period) → the cap that covers it
    for i, cap in enumerate(data["caps"]):
        for t in cap["types"]:
            if t not in scenarios:
                errors.setdefault("caps", {}).setdefault(i, {})["types"] = [f"unknown scenario {t!r}; known: {known}"]
            elif (t, cap["period"]) in capped:
                errors.setdefault("caps", {}).setdefault(i, {})["types"] = [
                    f"{t!r} already has a {cap['period']} cap (caps[{capped[(t, cap['period'])]}])"]
            capped.setdefault((t, cap["period"]), i)
    for i, campaign in enumerate(data["campaigns"]):
        for t in campaign["types"]:
            if t not in scenarios:
                errors.setdefault("campaigns", {}).setdefault(i, {})["types"] = [
                    f"unknown scenario {t!r}; known: {known}"]
        for j in range(i):
            other = data["campaigns"][j]
            shared = set(campaign["types"]) & set(other["types"])
            overlap = campaign["starts_on"] <= other["ends_on"] and other["starts_on"] <= campaign["ends_on"]
            if shared and overlap:
                errors.setdefault("campaigns", {}).setdefault(i, {})["starts_on"] = [
                    f"overlaps campaign {other['id']!r} for {', '.join(sorted(shared))}: "
                    "one activity can be boosted by one campaign only"]
            if campaign["id"] == other["id"]:
                errors.setdefault("campaigns", {}).setdefault(i, {})["id"] = [f"{campaign['id']!r} is used twice"]
    level_errors = _level_errors(data.get("levels", []))
    if level_errors:
        errors["levels"] = level_errors
    return errors


def validate_rules(payload: Any, scenarios: frozenset[str]) -> dict[str, Any]:
    """A clean, canonical rule set (JSON-safe), or ``ma.ValidationError`` naming each bad field."""
    if not isinstance(payload, dict):
        raise ma.ValidationError({"_schema": ["must be an object"]})
    data = RuleSetSchema().load(payload)
    errors = _scenario_errors(data, scenarios)
    if errors:
        raise ma.ValidationError(errors)
    return canonical(data)


def canonical(data: dict[str, Any]) -> dict[str, Any]:
    """Decimals and dates as strings, in a stable order: what is stored and hashed."""
    out = {
        "name": data["name"],
        "points": {"default_per_kg": dec(Decimal(data["points"]["default_per_kg"])),
                   "per_kg": {k: dec(Decimal(v)) for k, v in sorted(data["points"].get("per_kg", {}).items())}},
        "caps": [{"types": sorted(c["types"]), "period": c["period"], "grams": c["grams"]} for c in data["caps"]],
        "engagement": {k: dict(v) for k, v in sorted(data.get("engagement", {}).items())},
        "campaigns": [{**c, "types": sorted(c["types"]), "multiplier": dec(Decimal(c["multiplier"])),
                       "starts_on": c["starts_on"].isoformat(), "ends_on": c["ends_on"].isoformat()}
                      for c in data["campaigns"]],
        "expiry": dict(data["expiry"]),
        "budget": dict(data["budget"]),
        "settlement": {"yuan_per_point": dec(Decimal(data["settlement"]["yuan_per_point"]))},
    }
    if "claims" in data:  # only when given, so rule sets without it keep their digest
        out["claims"] = dict(data["claims"])
    if "levels" in data:  # likewise
        out["levels"] = [{"name": level["name"], "min_grams": level["min_grams"]} for level in data["levels"]]
    return out


# --- the TOML form, with errors located by line ---------------------------------------------------


@dataclass(frozen=True)
class FileProblem:
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}: {self.field}: {self.message}"


@dataclass(frozen=True)
class RuleFile:
    region: str
    rules: dict[str, Any]


def _locate(text: str) -> dict[str, int]:
    """Dotted key path → line number, for tables, arrays of tables and key = value lines."""
    where: dict[str, int] = {}
    table: list[str] = []
    counters: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[["):
            name = line.strip("[] ")
            index = counters.get(name, -1) + 1
            counters[name] = index
            table = [*name.split("."), str(index)]
            where.setdefault(".".join(table), number)
        elif line.startswith("["):
            table = line.strip("[] ").split(".")
            where.setdefault(".".join(table), number)
        elif "=" in line:
            key = line.split("=", 1)[0].strip().strip('"')
            where.setdefault(".".join([*table, *key.split(".")]), number)
    return where


def flatten_errors(messages: Any, path: list[str]) -> list[tuple[str, str]]:
    if isinstance(messages, dict):
        return [item for key, value in messages.items() for item in flatten_errors(value, [*path, str(key)])]
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [(".".join(path), m) for m in messages]
    if isinstance(messages, list):
        return [item for i, value in enumerate(messages) for item in flatten_errors(value, [*path, str(i)])]
    return [(".".join(path), str(messages))]


UNIT_HINTS = {
    "budget": "a budget is given in whole points, as budget.points",
    "caps": "a cap is given in whole grams of CO2e, as grams",
    "campaigns": "a campaign budget is given in whole points, as budget_points",
    "points": "rates are points per kg CO2e, as default_per_kg and per_kg",
    "levels": "a level is given as name and min_grams (lifetime certified grams)",
}


def explain(path: str, message: str) -> str:
    """Turn marshmallow's 'Unknown field.' into what the author most likely meant (a unit slip)."""
    if message == "Unknown field." and path.split(".")[0] in UNIT_HINTS:
        return f"unknown field: {UNIT_HINTS[path.split('.')[0]]}"
    return message


def _line_for(path: str, where: dict[str, int]) -> int | None:
    parts = path.split(".")
    while parts:
        if ".".join(parts) in where:
            return where[".".join(parts)]
        parts.pop()
    return None


def parse_rule_file(text: str, scenarios: frozenset[str]) -> tuple[RuleFile | None, list[FileProblem]]:
    """Parse and validate a rule file; every problem carries its line and dotted field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else max(1, len(text.splitlines()))  # "at end of document"
        return None, [FileProblem(line, "toml", str(exc))]
    where = _locate(text)
    header = data.pop("rules", None)
    problems: list[FileProblem] = []
    region = header.get("region") if isinstance(header, dict) else None
    if not isinstance(region, str) or not re.fullmatch(r"\d{6}", region):
        problems.append(FileProblem(where.get("rules.region") or where.get("rules"), "rules.region",
                                    "give the GB/T 2260 code of the region these rules are for"))
    if isinstance(header, dict) and set(header) - {"region"}:
        for key in sorted(set(header) - {"region"}):
            problems.append(FileProblem(where.get(f"rules.{key}"), f"rules.{key}", "unknown field"))
    try:
        rules = validate_rules(data, scenarios)
    except ma.ValidationError as exc:
        problems += [FileProblem(_line_for(path, where), path, explain(path, message))
                     for path, message in flatten_errors(exc.messages, [])]
        return None, problems
    if problems:
        return None, problems
    return RuleFile(region, rules), []


def expiry_date(rules: dict[str, Any], earned_on: date) -> date | None:
    """The last day points earned on ``earned_on`` can be spent; None: they never expire."""
    policy = rules["expiry"]["policy"]
    if policy == "end_of_next_year":
        return date(earned_on.year + 1, 12, 31)
    if policy == "days_after":
        from datetime import timedelta

        return earned_on + timedelta(days=rules["expiry"]["days"])
    return None
