"""Recycling of sorted materials: ER_g = weight_kg × EF_material (EPA WARM v16 recycling factors)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import marshmallow as ma

from backend.methodology import (
    REJECT,
    REVIEW,
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

MATERIALS = ("aluminium", "steel", "copper", "glass", "pet", "hdpe", "pp",
             "mixed_paper", "cardboard", "newspaper", "office_paper")


class RecyclingEvidence(EvidenceSchema):
    material = ma.fields.String(required=True, validate=ma.validate.OneOf(MATERIALS))
    weight_kg = positive(maximum=100000)
    # A kiosk's receipt number: what lets a resident report a drop-off themselves.
    receipt_id = ma.fields.String(validate=ma.validate.Length(min=1, max=64))


def _params() -> dict[str, Param]:
    params = {f"{m}_g_per_kg": Param("g CO2e/kg", f"emission avoided by recycling one kg of {m}")
              for m in MATERIALS}
    params["review_above_kg"] = Param("kg", "a drop-off heavier than this goes to an auditor", minimum=Decimal(1))
    params["reject_above_kg"] = Param("kg", "a drop-off heavier than this is refused", minimum=Decimal(1))
    return params


class Recycling(Methodology):
    id = "recycling"
    version = 1
    title = "Recycling of sorted materials"
    title_zh = "废弃物资源化回收"
    types = frozenset({"recycling"})
    formula = "ER_g = weight_kg × material_g_per_kg, rounded down"
    references = ("US EPA WARM v16 (Dec 2023) recycling factors, MTCO2e/short ton × 1102.3",
                  "CDM AMS-III.AJ (structure reference for a stricter later version)")
    parameters = _params()
    self_reportable = frozenset({"recycling"})

    def evidence_schema(self, activity_type: str) -> ma.Schema:
        return RecyclingEvidence()

    def check(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> list[Finding]:
        weight = activity.data["weight_kg"]
        if weight > parameters["reject_above_kg"]:
            return [Finding("implausible_weight", REJECT, "weight_kg",
                            f"{dec(weight)} kg is more than one drop-off can be ({parameters['reject_above_kg']} kg)")]
        if weight > parameters["review_above_kg"]:
            return [Finding("heavy_drop_off", REVIEW, "weight_kg",
                            f"{dec(weight)} kg is above {parameters['review_above_kg']} kg: an auditor checks it")]
        return []

    def quantify(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        material = activity.data["material"]
        weight = activity.data["weight_kg"]
        factor = parameters[f"{material}_g_per_kg"]
        exact = weight * factor
        grams = floor_grams(exact)
        return Quantification(grams, {
            "formula": "weight_kg × material_g_per_kg",
            "material": material,
            "weight_kg": dec(weight),
            "material_g_per_kg": dec(factor),
            "exact_g": dec(exact),
            "grams": str(grams),
        })
