"""Recording one verified activity: evidence → plausibility → quantification → registry.

The partner batch pipeline (set-based, with consent and de-duplication) is built on the same
pieces; this path serves single activities: the demo's history, tests, and review decisions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backend.db import db
from backend.errors import Unprocessable
from backend.methodology import ActivityInput
from backend.models import Activity, Reduction
from backend.services.quantification import EvidenceError, NotQuantifiable, Quantifier, load_evidence, record, to_stored


def record_one(
    *, activity_type: str, occurred_at: datetime, data: Any, region: str, source: str,
    resident_id: int | None = None, household_id: int | None = None, partner_id: int | None = None,
    external_id: str | None = None, quantifier: Quantifier | None = None,
) -> tuple[Activity, Reduction | None]:
    try:
        entry, evidence = load_evidence(activity_type, data)
    except EvidenceError as exc:
        field, message = exc.first()
        raise Unprocessable(f"{field}: {message}", error="invalid_evidence", errors={"json": exc.errors}) from None
    quantifier = quantifier or Quantifier()
    activity = Activity(
        resident_id=resident_id, household_id=household_id, partner_id=partner_id, source=source,
        external_id=external_id, type=activity_type, occurred_at=occurred_at, region_code=region,
        data=to_stored(evidence), status="rejected",
    )
    try:
        quantified = quantifier.quantify(entry, activity_type, occurred_at, evidence, region,
                                          household_id=household_id, resident_id=resident_id)
    except NotQuantifiable as exc:
        activity.status, activity.reason = "pending_review", exc.reason
        db.session.add(activity)
        db.session.flush()
        return activity, None
    subject = ActivityInput(activity_type, occurred_at, evidence)
    activity.ended_at = entry.methodology.ends_at(subject)
    if activity.ended_at is not None:
        activity.started_at = entry.methodology.starts_at(subject)
    activity.findings = [f.as_dict() for f in quantified.findings]
    rejected = quantified.rejected
    if rejected is not None:
        activity.status, activity.reason = "rejected", rejected.code
    elif quantified.review_finding is not None:
        activity.status, activity.reason = "pending_review", quantified.review_finding.code
    else:
        activity.status = "credited"
    db.session.add(activity)
    db.session.flush()
    reduction = record(activity, quantified) if activity.status == "credited" else None
    db.session.flush()
    return activity, reduction
