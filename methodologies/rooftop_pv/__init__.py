"""Distributed rooftop solar (after Shanghai's 分布式光伏发电 碳普惠 methodology, 2024).

ER_g = kwh × EF_grid. Systems that already hold green certificates or CCER are excluded, so the same
electricity is never counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import marshmallow as ma

from backend.methodology import (
    REJECT,
    ActivityInput,
    Finding,
    MeteredPeriod,
    Methodology,
    Param,
    PeriodEvidence,
    Quantification,
    dec,
    floor_grams,
    metered_period_findings,
)


class PVEvidence(PeriodEvidence):
    # Green electricity certificates (绿证) or CCER already issued for this system: excluded.
    green_certificates_issued = ma.fields.Boolean(load_default=False)


class RooftopPV(MeteredPeriod, Methodology):
    id = "rooftop_pv"
    version = 1
    title = "Rooftop solar generation"
    title_zh = "分布式光伏发电"
    types = frozenset({"rooftop_pv"})
    overlap_group = "rooftop_pv"
    formula = "ER_g = kwh × grid_g_per_kwh, rounded down; systems with green certificates or CCER are excluded"
    references = ("上海市分布式光伏发电碳普惠方法学 (2024)",
                  "MEE/NBS 2022 regional grid emission factors, announced 2024-12-20 (华中 0.5395 kg/kWh)")
    parameters = {
        "grid_g_per_kwh": Param("g CO2/kWh", "emission factor of the regional grid"),
        "review_above_kwh_per_day": Param("kWh/day", "more generation per day goes to an auditor"),
        "max_period_days": Param("days", "longest metering period accepted", minimum=Decimal(1), integer=True),
    }

    def evidence_schema(self, activity_type: str) -> ma.Schema:
        return PVEvidence()

    def check(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> list[Finding]:
        if activity.data.get("green_certificates_issued"):
            return [Finding("double_counted", REJECT, "green_certificates_issued",
                            "this system already holds green certificates or CCER for its output")]
        return metered_period_findings(activity.data, parameters, high_code="high_generation",
                                       high_message="is more than a rooftop system usually makes")

    def quantify(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        kwh = activity.data["kwh"]
        grid = parameters["grid_g_per_kwh"]
        exact = kwh * grid
        grams = floor_grams(exact)
        return Quantification(grams, {
            "formula": "kwh × grid_g_per_kwh",
            "kwh": dec(kwh),
            "grid_g_per_kwh": dec(grid),
            "exact_g": dec(exact),
            "grams": str(grams),
        })
