"""An example third-party methodology package: micro carbon sinks of planted trees (林农微碳汇).

It lives outside the platform's code, declares itself through the ``carbon_points.methodologies``
entry point in its own distribution metadata, and is loaded only when allowlisted. The uptake
factor is illustrative, not a verified value.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import marshmallow as ma

from backend.methodology import (
    ActivityInput,
    EvidenceSchema,
    Finding,
    FiniteDecimal,
    Methodology,
    Param,
    Quantification,
    dec,
    floor_grams,
)


class PlantingEvidence(EvidenceSchema):
    trees = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1, max=10000))
    months = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1, max=12))
    survival_rate = FiniteDecimal(minimum=0, maximum=1)


class TreePlanting(Methodology):
    id = "tree_planting"
    version = 1
    title = "Tree planting micro carbon sink (example)"
    title_zh = "林农微碳汇（示例）"
    types = frozenset({"tree_planting"})
    formula = "ER_g = trees × survival_rate × months × uptake_g_per_tree_month, rounded down"
    parameters = {"uptake_g_per_tree_month": Param("g CO2/(tree·month)", "CO2 one young tree takes up a month")}

    def evidence_schema(self, activity_type: str) -> ma.Schema:
        return PlantingEvidence()

    def check(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> list[Finding]:
        return []

    def quantify(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        d = activity.data
        uptake = parameters["uptake_g_per_tree_month"]
        exact = Decimal(d["trees"]) * d["survival_rate"] * Decimal(d["months"]) * uptake
        grams = floor_grams(exact)
        return Quantification(grams, {"formula": self.formula, "trees": str(d["trees"]),
                                      "survival_rate": dec(d["survival_rate"]), "months": str(d["months"]),
                                      "uptake_g_per_tree_month": dec(uptake), "exact_g": dec(exact),
                                      "grams": str(grams)})


class NotAMethodology:
    """Declared under the entry point group by mistake: the registry must refuse it."""
