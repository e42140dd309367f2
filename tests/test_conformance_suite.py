"""The conformance suite catches what it promises to, and third-party packages load like built-ins."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import marshmallow as ma
import pytest

from backend.config import load_settings
from backend.methodology import ActivityInput, Finding, Quantification, dec, positive
from backend.methodology.conformance import check_methodology
from backend.methodology.parameters import load_factors_file, values
from backend.methodology.registry import BUILT_INS, RegistryError, load_registry
from methodologies.travel import Travel

EXAMPLE_PACKAGE = Path(__file__).parent / "example_methodology"
BUS = [("bus_ride", {"distance_km": 10, "duration_min": 30}, 520), ("metro_ride", {"distance_km": 10,
       "duration_min": 30}, 720), ("bike_ride", {"distance_km": 1, "duration_min": 5}, 95),
       ("walk", {"distance_km": 1, "duration_min": 15}, 104)]


def _broken(quantify: Any, *, evidence: type[ma.Schema] | None = None) -> type[Travel]:
    class Broken(Travel):
        def quantify(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
            return quantify(self, activity, parameters)

        if evidence is not None:
            def evidence_schema(self, activity_type: str) -> ma.Schema:
                return evidence()

    Broken.id = "travel"
    return Broken


TRAVEL_DEFAULTS = values(load_factors_file(Travel))


def _fails_with(cls: type[Travel], text: str, max_examples: int = 20) -> None:
    with pytest.raises(AssertionError, match=text):
        check_methodology(cls, examples=BUS, parameters=TRAVEL_DEFAULTS, max_examples=max_examples)


def test_a_correct_methodology_passes() -> None:
    check_methodology(Travel, examples=BUS, max_examples=20)


def test_reading_the_clock_is_impure() -> None:
    def quantify(self: Travel, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        return Travel.quantify(self, activity, parameters) if datetime.now().year else None  # type: ignore[return-value]

    _fails_with(_broken(quantify), "pure but it used the clock")


def test_reading_a_file_is_impure() -> None:
    def quantify(self: Travel, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        with open(__file__):
            return Travel.quantify(self, activity, parameters)

    _fails_with(_broken(quantify), "pure but it used a file")


def test_randomness_is_caught_as_nondeterminism() -> None:
    def quantify(self: Travel, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        return Quantification(random.randint(0, 10**9), {"grams": "x"})

    _fails_with(_broken(quantify), "not deterministic")


def test_negative_grams_are_caught() -> None:
    def quantify(self: Travel, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        return Quantification(-5, {"grams": "-5"})

    _fails_with(_broken(quantify), "negative grams")


def test_rounding_up_is_caught() -> None:
    def quantify(self: Travel, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        exact = activity.data["distance_km"] * Decimal("95.3")
        return Quantification(int(exact) + 1, {"exact_g": dec(exact), "grams": str(int(exact) + 1)})

    _fails_with(_broken(quantify), "rounded down")


def test_lax_evidence_is_caught() -> None:
    class Lax(ma.Schema):
        class Meta:
            unknown = ma.EXCLUDE

        distance_km = ma.fields.Raw(required=True)
        duration_min = positive()

    def quantify(self: Travel, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        return Quantification(1, {"grams": "1"})

    _fails_with(_broken(quantify, evidence=Lax), "was accepted")


def test_a_crash_on_generated_evidence_is_caught() -> None:
    def quantify(self: Travel, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        if activity.data["distance_km"] > 500:
            raise ZeroDivisionError("boom")
        return Travel.quantify(self, activity, parameters)

    _fails_with(_broken(quantify), "generated evidence broke it", max_examples=300)


def test_wrong_worked_examples_are_reported() -> None:
    with pytest.raises(AssertionError, match="the worked example says 521 g"):
        check_methodology(Travel, examples=[("bus_ride", {"distance_km": 10, "duration_min": 30}, 521), *BUS[1:]],
                          max_examples=5)


# --- a third-party package, through its own entry point -----------------------------------------


@pytest.fixture
def example_package(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(EXAMPLE_PACKAGE))
    return EXAMPLE_PACKAGE


def test_third_party_methodology_loads_through_its_entry_point(example_package: Path) -> None:
    registry = load_registry((*BUILT_INS, "tree_planting"))
    entry = registry.get("tree_planting")
    assert entry.package == "carbon-points-tree-planting 0.1.0"
    assert entry.entry_point == "carbon_points_tree_planting:TreePlanting"
    assert registry.for_type("tree_planting") is entry
    check_methodology(entry.methodology, examples=[
        ("tree_planting", {"trees": 10, "months": 6, "survival_rate": "0.9"}, 81000),  # 10 × 0.9 × 6 × 1500
    ], max_examples=40)


def test_not_allowlisted_means_not_loaded(example_package: Path) -> None:
    assert "tree_planting" not in load_registry(BUILT_INS)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_methodology", "no installed package provides it"),
        ("broken_import", "failed to import"),
        ("not_a_methodology", "breaks the contract: is not a subclass"),
    ],
)
def test_start_up_fails_loudly_naming_the_methodology(example_package: Path, name: str, message: str) -> None:
    with pytest.raises(RegistryError, match=f"methodology '{name}'.*{message}"):
        load_registry((*BUILT_INS, name))


def test_the_app_refuses_to_start_with_a_bad_allowlist(tmp_path: Path) -> None:
    from backend.app import create_app

    settings = load_settings({"CARBON_INSTANCE_PATH": str(tmp_path), "METHODOLOGIES": "travel,warp_drive"})
    with pytest.raises(RegistryError, match="warp_drive"):
        create_app(settings)


def test_two_methodologies_may_not_claim_one_type(example_package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from carbon_points_tree_planting import TreePlanting

    monkeypatch.setattr(TreePlanting, "types", frozenset({"tree_planting", "walk"}))
    with pytest.raises(RegistryError, match="'walk' is claimed by both"):
        load_registry((*BUILT_INS, "tree_planting"))


def test_contract_breaches_are_named(example_package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from carbon_points_tree_planting import TreePlanting

    monkeypatch.setattr(TreePlanting, "formula", "")
    with pytest.raises(RegistryError, match="formula must be a non-empty string"):
        load_registry(("tree_planting",))


def test_check_findings_shape() -> None:
    assert Finding("x", "reject", "f", "m").as_dict() == {"code": "x", "severity": "reject", "field": "f",
                                                          "message": "m"}
