"""Evaluation: (certified reduction, the account's usage so far, rule set) → (points, trace). Pure.

Caps limit points, never certified grams: grams above a cap stay in the registry, flagged as
capped. Campaign bonuses come out of the campaign's own budget. The issuance budget is not applied
here (it depends on the whole batch): the credit service queues what does not fit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from typing import Any


@dataclass(frozen=True)
class Claim:
    """What the rules see of one certified reduction."""

    activity_type: str
    grams: int
    day: date  # the activity's calendar day in China (Asia/Shanghai)
    quiz_score: int | None = None


@dataclass
class Usage:
    """What the account has used so far, in the periods that matter for this claim."""

    cap_grams: dict[int, int] = field(default_factory=dict)  # cap index → creditable grams so far
    engagement_today: int = 0  # engagement activities of this type that earned points today
    campaign_bonus_used: int = 0  # points of the campaign's budget already used


@dataclass(frozen=True)
class Evaluation:
    points: int
    base_points: int
    bonus_points: int
    campaign: str | None
    creditable_grams: int
    capped_grams: int
    trace: dict[str, str]

    def with_bonus(self, bonus: int) -> Evaluation:
        """The same evaluation with the campaign bonus cut to what the campaign's budget has left."""
        trace = {**self.trace, "bonus_points": str(bonus), "points": str(self.base_points + bonus),
                 "campaign_budget": _budget_note(bonus)}
        return Evaluation(self.base_points + bonus, self.base_points, bonus, self.campaign, self.creditable_grams,
                          self.capped_grams, trace)


def _budget_note(bonus: int) -> str:
    return "exhausted" if bonus == 0 else "partly exhausted"


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def caps_for(rules: dict[str, Any], activity_type: str) -> list[tuple[int, dict[str, Any]]]:
    return [(i, cap) for i, cap in enumerate(rules["caps"]) if activity_type in cap["types"]]


def rate_per_kg(rules: dict[str, Any], activity_type: str) -> Decimal:
    return Decimal(rules["points"]["per_kg"].get(activity_type, rules["points"]["default_per_kg"]))


class Exchange:
    """One rule set's terms for one activity type, worked out once: the bulk path evaluates
    thousands of claims against a handful of (rule version, type) pairs."""

    __slots__ = ("_cap_notes", "activity_type", "campaigns", "caps", "denominator", "engagement", "numerator", "rate",
                 "ref")

    def __init__(self, rules: dict[str, Any], activity_type: str, rules_ref: str) -> None:
        self.activity_type, self.ref = activity_type, rules_ref
        self.caps = caps_for(rules, activity_type)
        self._cap_notes = [(index, cap["grams"], f"cap_{cap['period']}",
                            f"{'+'.join(cap['types'])}: {cap['grams']} g per {cap['period']}, ")
                           for index, cap in self.caps]
        self.campaigns = [c for c in rules["campaigns"] if activity_type in c["types"]]
        self.engagement = rules.get("engagement", {}).get(activity_type)
        rate = rate_per_kg(rules, activity_type)
        self.rate = str(rate)
        self.numerator, self.denominator = rate.as_integer_ratio()

    def campaign(self, day: date) -> dict[str, Any] | None:
        if not self.campaigns:
            return None
        iso = day.isoformat()
        return next((c for c in self.campaigns if c["starts_on"] <= iso <= c["ends_on"]), None)

    def evaluate(self, claim: Claim, usage: Usage) -> Evaluation:
        trace: dict[str, str] = {"rules": self.ref, "grams": str(claim.grams)}
        if self.engagement is not None:
            base, creditable = _engagement(claim, usage, self.engagement, trace), 0
        else:
            creditable = claim.grams
            for index, grams, key, note in self._cap_notes:
                used = usage.cap_grams.get(index, 0)
                trace[key] = f"{note}{used} g used before"
                creditable = min(creditable, max(0, grams - used))
            # floor(grams × rate / 1000) in integers: exact
            base = (creditable * self.numerator) // (1000 * self.denominator)
            trace["rate_per_kg"] = self.rate
            trace["creditable_g"] = str(creditable)
            trace["capped_g"] = str(claim.grams - creditable)
            trace["base_points"] = str(base)
        bonus, campaign_id = 0, None
        campaign = self.campaign(claim.day) if base > 0 else None
        if campaign is not None:
            campaign_id = campaign["id"]
            wanted = _floor(Decimal(base) * (Decimal(campaign["multiplier"]) - 1))
            bonus = max(0, min(wanted, campaign["budget_points"] - usage.campaign_bonus_used))
            trace.update(campaign=campaign_id, multiplier=campaign["multiplier"], bonus_points=str(bonus))
            if bonus < wanted:
                trace["campaign_budget"] = _budget_note(bonus)
        points = base + bonus
        trace["points"] = str(points)
        return Evaluation(points, base, bonus, campaign_id, creditable, claim.grams - creditable, trace)


def evaluate(claim: Claim, usage: Usage, rules: dict[str, Any], rules_ref: str) -> Evaluation:
    return Exchange(rules, claim.activity_type, rules_ref).evaluate(claim, usage)


def _engagement(claim: Claim, usage: Usage, rule: dict[str, Any], trace: dict[str, str]) -> int:
    score = claim.quiz_score if claim.quiz_score is not None else 0
    trace.update(engagement=claim.activity_type, score=str(score), min_score=str(rule["min_score"]),
                 per_day=str(rule["per_day"]), earned_today_before=str(usage.engagement_today))
    if score < rule["min_score"]:
        trace["base_points"] = "0 (score below the pass mark)"
        return 0
    if usage.engagement_today >= rule["per_day"]:
        trace["base_points"] = "0 (daily limit reached)"
        return 0
    trace["base_points"] = str(rule["points"])
    return int(rule["points"])


class Tally:
    """Usage as claims are evaluated in time order: creditable grams per (account, type, China day)
    and per (account, type, month), engagement credits per day, campaign bonuses per (rule version,
    campaign). Seeded with what is already recorded, it counts each claim it evaluates, so every
    claim sees the usage before it. The ledger and the rule simulation both evaluate through it:
    caps are counted one way. ``campaign_used`` gives a campaign's bonus points already used
    (asked once per campaign; none by default)."""

    def __init__(self, campaign_used: Callable[[int, str], int] | None = None) -> None:
        # daily[(account, type, day)] = [creditable grams, engagement credits]: one lookup a claim
        self.daily: dict[tuple[Hashable, str, date], list[int]] = {}
        self.monthly: defaultdict[tuple[Hashable, str, tuple[int, int]], int] = defaultdict(int)
        self.campaigns: dict[tuple[int, str], int] = {}
        self._campaign_used = campaign_used or (lambda _version, _campaign: 0)

    def seed_day(self, account: Hashable, activity_type: str, day: date, grams: int, earned: int) -> None:
        self.daily[(account, activity_type, day)] = [grams, earned]

    def seed_month(self, account: Hashable, activity_type: str, first: date, grams: int) -> None:
        self.monthly[(account, activity_type, (first.year, first.month))] = grams

    def count(self, account: Hashable, activity_type: str, day: date, creditable: int, earned: bool) -> None:
        """What a credit adds: its creditable grams to its day and month, an engagement credit."""
        cell = self.daily.setdefault((account, activity_type, day), [0, 0])
        cell[0] += creditable
        cell[1] += earned
        self.monthly[(account, activity_type, (day.year, day.month))] += creditable

    def evaluate(self, exchange: Exchange, version_id: int, account: Hashable, claim: Claim) -> Evaluation:
        """Evaluate ``claim`` against the usage so far, then count it."""
        day, month = claim.day, (claim.day.year, claim.day.month)
        used = {}
        for index, cap in exchange.caps:
            if cap["period"] == "day":
                used[index] = sum(self.daily.get((account, t, day), (0,))[0] for t in cap["types"])
            else:
                used[index] = sum(self.monthly.get((account, t, month), 0) for t in cap["types"])
        campaign = exchange.campaign(day)
        budget = (version_id, campaign["id"]) if campaign is not None else None
        if budget is not None and budget not in self.campaigns:
            self.campaigns[budget] = self._campaign_used(*budget)
        cell = self.daily.setdefault((account, claim.activity_type, day), [0, 0])
        result = exchange.evaluate(claim, Usage(used, cell[1], self.campaigns[budget] if budget is not None else 0))
        cell[0] += result.creditable_grams
        cell[1] += result.points > 0
        self.monthly[(account, claim.activity_type, month)] += result.creditable_grams
        if budget is not None:
            self.campaigns[budget] += result.bonus_points
        return result
