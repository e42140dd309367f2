"""The built-in methodologies reproduce shared/domain/METHODOLOGIES.md to the gram.

Every worked example below is computed by hand from the formulas and default factors there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import marshmallow as ma
import pytest

from backend.methodology import REJECT, REVIEW, ActivityInput, Methodology
from backend.methodology.conformance import check_methodology
from backend.methodology.parameters import load_factors_file, values
from backend.methodology.registry import BUILT_INS, load_registry

REGISTRY = load_registry(BUILT_INS)
WHEN = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)

# (type, evidence, grams): the arithmetic is in the comment beside each.
WORKED_EXAMPLES: dict[str, list[tuple[str, dict[str, Any], int]]] = {
    "travel": [
        ("bus_ride", {"distance_km": "12.5", "duration_min": 30}, 650),        # 12.5 × (104 − 52)
        ("metro_ride", {"distance_km": 10, "duration_min": 20}, 720),          # 10 × (104 − 32)
        ("bike_ride", {"distance_km": 3.2, "duration_min": 15}, 304),          # 3.2 × 95.3 = 304.96
        ("walk", {"distance_km": "2.35", "duration_min": 30}, 244),            # 2.35 × 104 = 244.4
    ],
    "carpool": [
        ("carpool", {"distance_km": 20, "duration_min": 30, "passengers": 3}, 2465),  # 20 × (170 − 187/4)
        ("carpool", {"distance_km": 20, "duration_min": 30, "passengers": 1}, 1530),  # 20 × (170 − 93.5)
        ("carpool", {"distance_km": "7.3", "duration_min": 15, "passengers": 2}, 785),  # 7.3 × 107.66… = 785.97
    ],
    "recycling": [
        ("recycling", {"material": "cardboard", "weight_kg": "2.5"}, 8652),    # 2.5 × 3461 = 8652.5
        ("recycling", {"material": "aluminium", "weight_kg": "0.3"}, 3019),    # 0.3 × 10064 = 3019.2
        ("recycling", {"material": "pet", "weight_kg": "1.25"}, 1432),         # 1.25 × 1146 = 1432.5
        ("recycling", {"material": "glass", "weight_kg": 4}, 1236),            # 4 × 309
    ],
    "household_electricity": [
        # 3 people × 2.0 × 30 days = 180 kWh baseline; saved 30 kWh × 539.5
        ("household_electricity", {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": 150,
                                   "household_size": 3}, 16185),
        # 2 × 2.0 × 28 = 112; saved 11.5 × 539.5 = 6204.25
        ("household_electricity", {"period_start": "2026-02-01", "period_end": "2026-02-28", "kwh": "100.5",
                                   "household_size": 2}, 6204),
    ],
    "rooftop_pv": [
        ("rooftop_pv", {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": 420}, 226590),
        ("rooftop_pv", {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": "12.345"}, 6660),
    ],
    "quiz": [
        ("quiz", {"quiz_id": "earth-day-2026", "score": 90}, 0),
    ],
}


def _entry(methodology_id: str) -> tuple[Methodology, dict[str, Decimal]]:
    entry = REGISTRY.get(methodology_id)
    return entry.methodology, values(entry.defaults)


def _run(activity_type: str, data: dict[str, Any], facts: dict[str, Any] | None = None,
         overrides: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    m = REGISTRY.for_type(activity_type).methodology  # type: ignore[union-attr]
    parameters = {**values(REGISTRY.get(m.id).defaults), **{k: Decimal(v) for k, v in (overrides or {}).items()}}
    evidence = m.evidence_schema(activity_type).load(data)
    activity = ActivityInput(activity_type, WHEN, evidence, facts or {})
    return m.check(activity, parameters), m.quantify(activity, parameters)


@pytest.mark.parametrize(
    ("activity_type", "data", "grams"),
    [example for examples in WORKED_EXAMPLES.values() for example in examples],
)
def test_worked_examples_to_the_gram(activity_type: str, data: dict[str, Any], grams: int) -> None:
    findings, result = _run(activity_type, data)
    assert result.grams == grams
    assert result.trace["grams"] == str(grams)
    assert [f for f in findings if f.severity == REJECT] == []


@pytest.mark.parametrize("methodology_id", BUILT_INS)
def test_conformance(methodology_id: str) -> None:
    check_methodology(REGISTRY.get(methodology_id).methodology, examples=WORKED_EXAMPLES[methodology_id],
                      max_examples=60)


def test_default_factors_are_those_of_the_methodology_document() -> None:
    travel = values(REGISTRY.get("travel").defaults)
    assert (travel["baseline_g_per_pkm"], travel["bus_g_per_pkm"], travel["metro_g_per_pkm"],
            travel["bike_g_per_pkm"], travel["walk_g_per_pkm"]) == (104, 52, 32, Decimal("8.7"), 0)
    limits = {mode: (travel[f"{mode}_max_speed_kmh"], travel[f"{mode}_max_distance_km"])
              for mode in ("walk", "bike", "bus", "metro")}
    assert limits == {"walk": (8, 20), "bike": (30, 50), "bus": (60, 80), "metro": (80, 60)}
    recycling = values(REGISTRY.get("recycling").defaults)
    assert {k.removesuffix("_g_per_kg"): int(v) for k, v in recycling.items() if k.endswith("_g_per_kg")} == {
        "aluminium": 10064, "steel": 2017, "copper": 4949, "glass": 309, "pet": 1146, "hdpe": 838, "pp": 871,
        "mixed_paper": 3913, "cardboard": 3461, "newspaper": 2987, "office_paper": 3153,
    }
    assert (recycling["review_above_kg"], recycling["reject_above_kg"]) == (50, 500)
    electricity = values(REGISTRY.get("household_electricity").defaults)
    assert (electricity["baseline_kwh_per_person_day"], electricity["grid_g_per_kwh"]) == (2, Decimal("539.5"))
    assert values(REGISTRY.get("rooftop_pv").defaults)["grid_g_per_kwh"] == Decimal("539.5")
    carpool = values(REGISTRY.get("carpool").defaults)
    assert (carpool["car_g_per_vkm"], carpool["detour_factor"]) == (170, Decimal("1.1"))


def test_every_factor_carries_unit_source_vintage_and_region() -> None:
    for entry in REGISTRY:
        for name, factor in load_factors_file(type(entry.methodology)).items():
            assert factor["unit"] == entry.methodology.parameters[name].unit
            assert factor["source"] and factor["vintage"] and factor["region"], (entry.id, name)


@pytest.mark.parametrize(
    ("activity_type", "data", "code", "severity"),
    [
        ("walk", {"distance_km": 10, "duration_min": 30}, "implausible_speed", REJECT),       # 20 km/h
        ("bike_ride", {"distance_km": 60, "duration_min": 180}, "implausible_distance", REJECT),
        ("bus_ride", {"distance_km": 81, "duration_min": 120}, "implausible_distance", REJECT),
        ("metro_ride", {"distance_km": 50, "duration_min": 30}, "implausible_speed", REJECT),  # 100 km/h
        ("carpool", {"distance_km": 100, "duration_min": 30, "passengers": 2}, "implausible_speed", REJECT),
        ("recycling", {"material": "steel", "weight_kg": 60}, "heavy_drop_off", REVIEW),
        ("recycling", {"material": "steel", "weight_kg": 600}, "implausible_weight", REJECT),
        ("rooftop_pv", {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": 3100}, "high_generation",
         REVIEW),
        ("rooftop_pv", {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": 300,
                        "green_certificates_issued": True}, "double_counted", REJECT),
        ("household_electricity", {"period_start": "2026-01-01", "period_end": "2026-04-30", "kwh": 300,
                                   "household_size": 2}, "period_too_long", REJECT),
    ],
)
def test_plausibility_findings(activity_type: str, data: dict[str, Any], code: str, severity: str) -> None:
    findings, _ = _run(activity_type, data)
    assert [(f.code, f.severity) for f in findings] == [(code, severity)]


def test_limits_are_inclusive() -> None:
    assert _run("walk", {"distance_km": 4, "duration_min": 30})[0] == []          # exactly 8 km/h
    assert _run("bike_ride", {"distance_km": 50, "duration_min": 100})[0] == []   # exactly 50 km
    assert _run("recycling", {"material": "pp", "weight_kg": 50})[0] == []        # exactly 50 kg


def test_heavy_users_are_compared_with_the_same_period_last_year() -> None:
    heavy = {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": 90, "household_size": 1}
    # Baseline 1 × 2.0 × 30 = 60 kWh: above it, only improvement on last year counts.
    _, without_history = _run("household_electricity", heavy)
    assert without_history.grams == 0 and "without last year" in without_history.trace["rule"]
    _, improved = _run("household_electricity", heavy, facts={"same_period_last_year_kwh": "110"})
    assert improved.grams == 10790                                                # (110 − 90) × 539.5
    _, worse = _run("household_electricity", heavy, facts={"same_period_last_year_kwh": "80"})
    assert worse.grams == 0


def test_governed_parameters_change_the_result() -> None:
    _, result = _run("bus_ride", {"distance_km": 10, "duration_min": 30}, overrides={"bus_g_per_pkm": "60"})
    assert result.grams == 440                                                    # 10 × (104 − 60)
    assert result.trace["mode_g_per_pkm"] == "60"


@pytest.mark.parametrize(
    ("activity_type", "data", "field"),
    [
        ("bus_ride", {"distance_km": -3, "duration_min": 10}, "distance_km"),
        ("bus_ride", {"distance_km": 0, "duration_min": 10}, "distance_km"),
        ("bus_ride", {"distance_km": "NaN", "duration_min": 10}, "distance_km"),
        ("bus_ride", {"distance_km": "Infinity", "duration_min": 10}, "distance_km"),
        ("bus_ride", {"distance_km": 5000, "duration_min": 10}, "distance_km"),
        ("bus_ride", {"distance_km": "five", "duration_min": 10}, "distance_km"),
        ("bus_ride", {"distance_km": True, "duration_min": 10}, "distance_km"),
        ("bus_ride", {"distance_km": 5, "duration_min": 0}, "duration_min"),
        ("bus_ride", {"distance_km": 5}, "duration_min"),
        ("carpool", {"distance_km": 5, "duration_min": 10, "passengers": 0}, "passengers"),
        ("carpool", {"distance_km": 5, "duration_min": 10, "passengers": 7}, "passengers"),
        ("carpool", {"distance_km": 5, "duration_min": 10, "passengers": "2"}, "passengers"),
        ("recycling", {"material": "plutonium", "weight_kg": 1}, "material"),
        ("recycling", {"material": "pet", "weight_kg": -1}, "weight_kg"),
        ("household_electricity", {"period_start": "2026-06-30", "period_end": "2026-06-01", "kwh": 1,
                                   "household_size": 2}, "period_end"),
        ("household_electricity", {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": 1,
                                   "household_size": 0}, "household_size"),
        ("household_electricity", {"period_start": "June", "period_end": "2026-06-30", "kwh": 1,
                                   "household_size": 2}, "period_start"),
        ("rooftop_pv", {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": -5}, "kwh"),
        ("quiz", {"quiz_id": "q", "score": 101}, "score"),
    ],
)
def test_bad_evidence_is_refused_naming_the_field(activity_type: str, data: dict[str, Any], field: str) -> None:
    m = REGISTRY.for_type(activity_type).methodology  # type: ignore[union-attr]
    with pytest.raises(ma.ValidationError) as refused:
        m.evidence_schema(activity_type).load(data)
    assert field in refused.value.messages


def test_every_registered_methodology_claims_distinct_types() -> None:
    assert REGISTRY.types() == {"bus_ride", "metro_ride", "bike_ride", "walk", "carpool", "recycling",
                                "household_electricity", "rooftop_pv", "quiz"}
    assert REGISTRY.get("quiz").methodology.engagement_only
