"""Carpooling, credited to the passenger (substitution baseline, after T/CCAA 38-2021).

ER_g = distance_km × (EF_car − EF_car × detour / (passengers + 1)): the passenger's own car trip
avoided, less their share of the shared car's emissions including the detour to pick them up.
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


class CarpoolEvidence(EvidenceSchema):
    distance_km = positive(maximum=2000)
    duration_min = positive(maximum=24 * 60)
    passengers = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1, max=6),
                                   metadata={"description": "riders besides the driver"})


class Carpool(Methodology):
    id = "carpool"
    version = 1
    title = "Carpooling (passenger)"
    title_zh = "拼车出行（乘客）"
    types = frozenset({"carpool"})
    overlap_group = "trip"
    formula = ("ER_g = distance_km × (car_g_per_vkm − car_g_per_vkm × detour_factor / (passengers + 1)), "
               "rounded down; passengers counts riders besides the driver")
    references = ("T/CCAA 38-2021 (substitution baseline for shared travel)",)
    parameters = {
        "car_g_per_vkm": Param("g CO2/vkm", "emission of a private petrol car per vehicle-km"),
        "detour_factor": Param("ratio", "extra distance the shared car drives to pick up riders",
                               minimum=Decimal(1), maximum=Decimal(3)),
        "max_speed_kmh": Param("km/h", "highest plausible average speed", minimum=Decimal(1)),
        "max_distance_km": Param("km", "longest plausible single carpool trip", minimum=Decimal(1)),
    }

    def evidence_schema(self, activity_type: str) -> ma.Schema:
        return CarpoolEvidence()

    def check(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> list[Finding]:
        distance = activity.data["distance_km"]
        findings = []
        if distance > parameters["max_distance_km"]:
            findings.append(Finding("implausible_distance", REJECT, "distance_km",
                                    f"{dec(distance)} km is longer than {parameters['max_distance_km']} km"))
        speed = distance / (activity.data["duration_min"] / 60)
        if speed > parameters["max_speed_kmh"]:
            findings.append(Finding("implausible_speed", REJECT, "duration_min",
                                    f"average speed {speed:.1f} km/h is above {parameters['max_speed_kmh']} km/h"))
        return findings

    def quantify(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        distance = activity.data["distance_km"]
        riders = Decimal(activity.data["passengers"])
        car = parameters["car_g_per_vkm"]
        detour = parameters["detour_factor"]
        share = car * detour / (riders + 1)
        exact = distance * (car - share)
        grams = floor_grams(exact)
        return Quantification(grams, {
            "formula": "distance_km × (car_g_per_vkm − car_g_per_vkm × detour_factor / (passengers + 1))",
            "distance_km": dec(distance),
            "passengers": str(activity.data["passengers"]),
            "car_g_per_vkm": dec(car),
            "detour_factor": dec(detour),
            "passenger_share_g_per_km": dec(share),
            "exact_g": dec(exact),
            "grams": str(grams),
        })

    def ends_at(self, activity: ActivityInput) -> datetime | None:
        return activity.occurred_at + timedelta(minutes=float(activity.data["duration_min"]))
