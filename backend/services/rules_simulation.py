"""Simulating an exchange-rule version: what the last days' certified reductions would earn under it.

An auditor deciding on new rules wants to know, before approving, who gains and who loses points
and whether the proposed issuance budget holds. The reductions of the window are replayed per
account in the order the ledger credits a batch in (occurred_at, id) through the same pure
evaluator (``backend.rules.evaluate``) twice: under the rules version in force when each happened,
and under the proposed one, each replay a ``Tally`` of cap usage per China day or month, engagement
credits per day and campaign budgets, the one the ledger credits with. Reads are streamed;
nothing is written but the audit note ``rules.simulate``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select

from backend.db import db, utcnow
from backend.methodology import start_of_day
from backend.models import Activity, PolicyVersion, Reduction, ReductionEvaluation, User
from backend.rules.evaluate import Claim, Evaluation, Exchange, Tally
from backend.services import audit, governance
from backend.services.ledger import china_day, period_key
from backend.services.regions import ancestors
from backend.services.rules import KIND, SUBJECT

Account = tuple[str, int]  # ("resident" | "household", owner id): the wallet the ledger credits

ASSUMPTIONS = {
    "replay_order": "Each account's reductions are replayed in time order (occurred_at, id), as one batch "
                    "would credit them. The ledger credits in arrival order, so a late report may have seen "
                    "more of its day's usage: current_points are the points actually credited (stored "
                    "evaluations), current_rules_points the replay under the rules in force then, and "
                    "change_points compares the two replays.",
    "usage_before": "Cap usage earlier on the window's first China day and month, and usage from the "
                    "account's reductions this version would not apply to (other regions, a nearer region's "
                    "own rules, reversed credits), is taken as the stored evaluations record it, in both "
                    "replays.",
    "campaigns": "Campaign budgets are counted from zero at the window's start.",
    "not_evaluated": "A reduction never evaluated by the ledger counts its replayed current points as "
                     "current_points.",
    "whole_window": "The proposed version is taken as in force over the whole window, whatever its "
                    "effective_from.",
    "issuance": "Estimated issuance counts the simulated reductions by the China day they happened (the "
                "ledger counts by the day it credits); a budget period the window covers in part is counted "
                "in part, and the region's reductions outside your scope are not counted.",
}


@dataclass
class Totals:
    """Points and capped grams of a set of reductions: stored, replayed now, replayed as proposed."""

    reductions: int = 0
    grams: int = 0
    current_points: int = 0
    current_rules_points: int = 0
    proposed_points: int = 0
    current_capped_g: int = 0
    current_rules_capped_g: int = 0
    proposed_capped_g: int = 0

    def add(self, other: Totals) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def view(self) -> dict[str, int]:
        return {**asdict(self), "change_points": self.proposed_points - self.current_rules_points}


@dataclass
class _Simulation:
    """The state of one run: the versions, the two replays, and the totals by group, account, period."""

    version: PolicyVersion
    scope: set[str] | None
    since: datetime
    index: governance.VersionIndex
    current: Tally = field(default_factory=Tally)
    proposed: Tally = field(default_factory=Tally)
    exchanges: dict[tuple[int, str], Exchange] = field(default_factory=dict)
    chains: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("reductions", "accounts", "not_evaluated", "other_rules"), 0))
    totals: Totals = field(default_factory=Totals)
    groups: dict[tuple[str, str], Totals] = field(default_factory=lambda: defaultdict(Totals))
    accounts: dict[Account, Totals] = field(default_factory=lambda: defaultdict(Totals))
    periods: dict[str, Totals] = field(default_factory=lambda: defaultdict(Totals))

    def exchange(self, version: PolicyVersion, activity_type: str) -> Exchange:
        key = (version.id, activity_type)
        if key not in self.exchanges:
            self.exchanges[key] = Exchange(version.payload, activity_type, version.ref)
        return self.exchanges[key]

    def chain(self, region: str) -> list[str]:
        if region not in self.chains:
            self.chains[region] = ancestors(region)
        return self.chains[region]

    def applies(self, row: Any) -> bool:
        """Whether the proposed version would evaluate this reduction (else it only adds usage)."""
        if row.status != "certified" or row.occurred_at < self.since:
            return False
        if self.scope is not None and row.region_code not in self.scope:
            return False
        if self.index.shadowed(self.chain(row.region_code), self.version.region_code, row.occurred_at):
            self.counts["other_rules"] += 1
            return False
        return True

    def take(self, row: Any) -> None:
        account: Account = ("household", row.household_id) if row.household_id is not None \
            else ("resident", row.resident_id)
        day = china_day(row.occurred_at)
        if not self.applies(row):
            if row.points is not None:  # evaluated: counts as the ledger counted it, in both replays
                for replay in (self.current, self.proposed):
                    replay.count(account, row.activity_type, day, row.creditable_grams, row.points > 0)
            return
        score = (row.data or {}).get("score") if row.activity_type == "quiz" else None
        claim = Claim(row.activity_type, row.grams, day, score)
        in_force = self.index.resolve(self.chain(row.region_code), row.occurred_at)
        now = self.current.evaluate(self.exchange(in_force, row.activity_type), in_force.id, account, claim) \
            if in_force is not None else None
        new = self.proposed.evaluate(self.exchange(self.version, row.activity_type), self.version.id, account, claim)
        self._tally(row, account, day, now, new)

    def _tally(self, row: Any, account: Account, day: date, now: Evaluation | None, new: Evaluation) -> None:
        replayed_points = now.points if now is not None else 0
        replayed_capped = now.capped_grams if now is not None else 0
        if row.points is None:
            self.counts["not_evaluated"] += 1
        one = Totals(
            reductions=1, grams=row.grams,
            current_points=row.points if row.points is not None else replayed_points,
            current_rules_points=replayed_points, proposed_points=new.points,
            current_capped_g=row.grams - row.creditable_grams if row.points is not None else replayed_capped,
            current_rules_capped_g=replayed_capped, proposed_capped_g=new.capped_grams)
        budget = self.version.payload["budget"]
        for totals in (self.totals, self.groups[(row.region_code, row.activity_type)], self.accounts[account],
                       self.periods[period_key(day, budget["period"])]):
            totals.add(one)

    def result(self, days: int, now: datetime, top: int) -> dict[str, Any]:
        self.counts["reductions"] = self.totals.reductions
        self.counts["accounts"] = len(self.accounts)
        changes = sorted(((account, totals.view()) for account, totals in self.accounts.items()),
                         key=lambda item: (-abs(item[1]["change_points"]), item[0]))
        budget = self.version.payload["budget"]
        return {
            "version": self.version.ref, "status": self.version.status, "region": self.version.region_code,
            "days": days, "window": {"from": self.since, "to": now}, **self.counts,
            "totals": self.totals.view(),
            "groups": [{"region": region, "activity_type": activity_type, **totals.view()}
                       for (region, activity_type), totals in sorted(self.groups.items())],
            "largest_changes": [{"account_kind": kind, "owner_id": owner, **view}
                                for (kind, owner), view in changes[:top] if view["change_points"]],
            "issuance": {"period": budget["period"], "budget_points": budget["points"], "periods": [
                {"period": key, "current_rules_points": totals.current_rules_points,
                 "proposed_points": totals.proposed_points,
                 "within_budget": totals.proposed_points <= budget["points"]}
                for key, totals in sorted(self.periods.items())]},
            "assumptions": ASSUMPTIONS,
        }


def _window(scope: set[str] | None, lead_in: datetime, since: datetime, now: datetime) -> Select[Any]:
    """Every reduction from ``lead_in`` to ``now`` of the accounts with a certified reduction in the
    window and the scope, with its stored evaluation (if any) and a quiz's evidence, in time order.

    The accounts' other reductions are read too: their stored evaluations are cap usage the
    replays must see (``lead_in``, the first China month's start, covers daily and monthly caps).
    """
    r, e, a = Reduction, ReductionEvaluation, Activity
    simulated = [r.status == "certified", r.occurred_at >= since, r.occurred_at <= now,
                 *([r.region_code.in_(sorted(scope))] if scope is not None else [])]
    households = select(r.household_id).where(*simulated, r.household_id.is_not(None))
    residents = select(r.resident_id).where(*simulated, r.household_id.is_(None))
    return (
        select(r.id, r.region_code, r.activity_type, r.occurred_at, r.grams, r.resident_id, r.household_id,
               r.status, e.points, e.creditable_grams, a.data)
        .outerjoin(e, e.reduction_id == r.id)
        .outerjoin(a, and_(a.id == r.activity_id, r.activity_type == "quiz"))
        .where(r.occurred_at >= lead_in, r.occurred_at <= now,
               or_(r.household_id.in_(households), and_(r.household_id.is_(None), r.resident_id.in_(residents))))
        .order_by(r.occurred_at, r.id)
        .execution_options(yield_per=2000)
    )


def simulate(subject: str, number: int, *, days: int, actor: User, top: int = 10) -> dict[str, Any]:
    """Replay the certified reductions of the last ``days`` days under a draft or submitted rules
    version and under the rules in force when they happened; writes only the audit note.

    Covers the version's region and the regions below it that inherit it (a region nearer the
    activity with its own rules then is skipped), within the actor's scope. Returns counts, totals
    (points stored, replayed now and proposed; capped grams), groups per region and activity type,
    the ``top`` accounts whose points change most, the estimated issuance per budget period
    against the proposed budget, and the assumptions the figures rest on (``ASSUMPTIONS``).
    """
    version, scope = governance.simulatable(KIND, subject, number, actor=actor)
    now = utcnow()
    since = now - timedelta(days=days)
    lead_in = start_of_day(china_day(since).replace(day=1))
    run = _Simulation(version, scope, since, governance.index_for(KIND, SUBJECT))
    for row in db.session.execute(_window(scope, lead_in, since, now)):
        run.take(row)
    result = run.result(days, now, top)
    audit.record("rules.simulate", "rules_version", version.ref, actor=actor, region_code=version.region_code,
                 after={"days": days, "reductions": result["reductions"], "totals": result["totals"]})
    return result
