"""Green travel by bus, metro, bicycle or on foot (mean-baseline method, 均值法).

ER_g = distance_km × (EF_baseline − EF_mode), per passenger-km; DB11/T 3043-2024 structure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal

import marshmallow as ma

from backend.methodology import (
    REJECT,
    ActivityInput,
    EvidenceSchema,
    Finding,
    Methodology,
    Param,
    Quantification,
    dec,
    floor_grams,
    positive,
)

MODES = ("bus", "metro", "bike", "walk")
TYPE_MODE = {"bus_ride": "bus", "metro_ride": "metro", "bike_ride": "bike", "walk": "walk"}


class TripEvidence(EvidenceSchema):
    distance_km = positive(maximum=1000)
    duration_min = positive(maximum=24 * 60)


def _params() -> dict[str, Param]:
    params = {"baseline_g_per_pkm": Param("g CO2/pkm", "mean emission of urban motorised travel")}
    for mode in MODES:
        params[f"{mode}_g_per_pkm"] = Param("g CO2/pkm", f"emission of travel by {mode}")
    for mode in MODES:
        params[f"{mode}_max_speed_kmh"] = Param("km/h", f"highest plausible average speed by {mode}",
                                                minimum=Decimal(1))
        params[f"{mode}_max_distance_km"] = Param("km", f"longest plausible single trip by {mode}",
                                                  minimum=Decimal(1))
    return params


class Travel(Methodology):
    id = "travel"
    version = 1
    title = "Green travel: bus, metro, cycling, walking"
    title_zh = "绿色出行（公交、地铁、骑行、步行）"
    types = frozenset(TYPE_MODE)
    overlap_group = "trip"
    formula = ("ER_g = distance_km × (baseline_g_per_pkm − mode_g_per_pkm), rounded down to whole grams; "
               "mode is bus, metro, bike or walk")
    references = ("DB11/T 3043-2024 碳普惠项目减排量核算技术规范 低碳出行",
                  "Huang et al., 气候变化研究进展 2017, 13(3):284-291 (mean vs substitution baseline)")
    parameters = _params()

    def evidence_schema(self, activity_type: str) -> ma.Schema:
        return TripEvidence()

    def check(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> list[Finding]:
        mode = TYPE_MODE[activity.type]
        distance = activity.data["distance_km"]
        hours = activity.data["duration_min"] / 60
        findings = []
        if distance > parameters[f"{mode}_max_distance_km"]:
            findings.append(Finding("implausible_distance", REJECT, "distance_km",
                                    f"{dec(distance)} km is longer than a {mode} trip can be "
                                    f"({parameters[f'{mode}_max_distance_km']} km at most)"))
        speed = distance / hours
        if speed > parameters[f"{mode}_max_speed_kmh"]:
            findings.append(Finding("implausible_speed", REJECT, "duration_min",
                                    f"average speed {speed:.1f} km/h is faster than {mode} travel "
                                    f"({parameters[f'{mode}_max_speed_kmh']} km/h at most)"))
        return findings

    def quantify(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        mode = TYPE_MODE[activity.type]
        distance = activity.data["distance_km"]
        baseline = parameters["baseline_g_per_pkm"]
        mode_factor = parameters[f"{mode}_g_per_pkm"]
        exact = distance * (baseline - mode_factor)
        grams = floor_grams(exact)
        return Quantification(grams, {
            "formula": "distance_km × (baseline_g_per_pkm − mode_g_per_pkm)",
            "mode": mode,
            "distance_km": dec(distance),
            "baseline_g_per_pkm": dec(baseline),
            "mode_g_per_pkm": dec(mode_factor),
            "exact_g": dec(exact),
            "grams": str(grams),
        })

    def ends_at(self, activity: ActivityInput) -> datetime | None:
        return activity.occurred_at + timedelta(minutes=float(activity.data["duration_min"]))
