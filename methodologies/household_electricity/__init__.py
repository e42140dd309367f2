"""Household electricity saving, credited to the household (after Shenzhen's 居民低碳用电 methodology).

Per billing period: baseline_kwh = household_size × B × days. Below the baseline, the saving is the
difference; above it, a heavy user is still rewarded for using less than in the same period a year
earlier. ER_g = saved_kwh × EF_grid.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import marshmallow as ma

from backend.methodology import (
    ActivityInput,
    FactRequest,
    Finding,
    MeteredPeriod,
    Methodology,
    Param,
    PeriodEvidence,
    Quantification,
    dec,
    floor_grams,
    metered_period_findings,
    period_days,
)

SAME_PERIOD_LAST_YEAR = "household_electricity.same_period_last_year_kwh"


class BillingEvidence(PeriodEvidence):
    household_size = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1, max=20))


class HouseholdElectricity(MeteredPeriod, Methodology):
    id = "household_electricity"
    version = 1
    title = "Household electricity saving"
    title_zh = "居民低碳用电"
    types = frozenset({"household_electricity"})
    credits = "household"
    overlap_group = "household_electricity"
    formula = ("baseline_kwh = household_size × baseline_kwh_per_person_day × days; saved_kwh = baseline_kwh − kwh "
               "when kwh ≤ baseline_kwh, else max(0, same period last year − kwh) when that is known, else 0; "
               "ER_g = saved_kwh × grid_g_per_kwh, rounded down")
    references = ("深圳市居民低碳用电碳普惠方法学 (2022)",
                  "MEE/NBS 2022 regional grid emission factors, announced 2024-12-20 (华中 0.5395 kg/kWh)")
    parameters = {
        "baseline_kwh_per_person_day": Param("kWh/(person·day)", "expected use per person and day"),
        "grid_g_per_kwh": Param("g CO2/kWh", "emission factor of the regional grid"),
        "max_period_days": Param("days", "longest billing period accepted", minimum=Decimal(1), integer=True),
        "review_above_kwh_per_day": Param("kWh/day", "a household using more per day goes to an auditor"),
    }

    def evidence_schema(self, activity_type: str) -> ma.Schema:
        return BillingEvidence()

    def required_facts(self, activity: ActivityInput) -> list[FactRequest]:
        return [FactRequest("same_period_last_year_kwh", SAME_PERIOD_LAST_YEAR, {
            "period_start": activity.data["period_start"].isoformat(),
            "period_end": activity.data["period_end"].isoformat(),
        })]

    def check(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> list[Finding]:
        return metered_period_findings(activity.data, parameters, high_code="high_consumption",
                                       high_message="is unusual for a household: an auditor checks it")

    def quantify(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        data = activity.data
        days = period_days(data["period_start"], data["period_end"])
        per_person = parameters["baseline_kwh_per_person_day"]
        baseline = Decimal(data["household_size"]) * per_person * days
        kwh = data["kwh"]
        last_year = activity.facts.get("same_period_last_year_kwh")
        if kwh <= baseline:
            saved, rule = baseline - kwh, "below baseline"
        elif last_year is not None:
            saved = max(Decimal(0), Decimal(str(last_year)) - kwh)
            rule = "heavy user: against the same period last year"
        else:
            saved, rule = Decimal(0), "heavy user without last year's record: no saving"
        grid = parameters["grid_g_per_kwh"]
        exact = saved * grid
        grams = floor_grams(exact)
        return Quantification(grams, {
            "formula": "saved_kwh × grid_g_per_kwh",
            "days": str(days),
            "household_size": str(data["household_size"]),
            "baseline_kwh_per_person_day": dec(per_person),
            "baseline_kwh": dec(baseline),
            "kwh": dec(kwh),
            "same_period_last_year_kwh": "unknown" if last_year is None else dec(Decimal(str(last_year))),
            "rule": rule,
            "saved_kwh": dec(saved),
            "grid_g_per_kwh": dec(grid),
            "exact_g": dec(exact),
            "grams": str(grams),
        })
