"""Low-carbon knowledge quizzes (低碳知识竞赛): engagement only, zero grams.

Points for quizzes come from the exchange rules; reports never count quizzes as CO2.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import marshmallow as ma

from backend.methodology import ActivityInput, EvidenceSchema, Finding, Methodology, Quantification


class QuizEvidence(EvidenceSchema):
    quiz_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    score = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=0, max=100))


class Quiz(Methodology):
    id = "quiz"
    version = 1
    title = "Low-carbon knowledge quiz (engagement only)"
    title_zh = "低碳知识答题（仅参与，不计减排）"
    types = frozenset({"quiz"})
    formula = "ER_g = 0: engagement earns points under the exchange rules, never certified grams"
    parameters: Mapping[str, object] = {}
    engagement_only = True
    self_reportable = frozenset({"quiz"})

    def evidence_schema(self, activity_type: str) -> ma.Schema:
        return QuizEvidence()

    def check(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> list[Finding]:
        return []

    def quantify(self, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> Quantification:
        return Quantification(0, {
            "formula": "engagement only: 0 g",
            "quiz_id": activity.data["quiz_id"],
            "score": str(activity.data["score"]),
            "grams": "0",
        })
