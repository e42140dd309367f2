"""The auditors' review queue: activities held back for a person to decide, and fraud signals.

Approving credits exactly once: the activity row is locked and must still be ``pending_review``;
the reduction is recorded and credited in the same transaction, so a second approval, concurrent
or later, finds the decision already made.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from backend.db import db, utcnow
from backend.errors import Conflict, NotFound, field_error
from backend.models import Activity, FraudSignal, User
from backend.observability import metrics
from backend.services import audit, ledger
from backend.services.pagination import keyset_page
from backend.services.quantification import EvidenceError, NotQuantifiable, Quantifier, load_evidence, record
from backend.services.scope import require_in_scope, scope_filter


def queue_page(actor: User, *, before: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    query = select(Activity).where(Activity.status == "pending_review")
    query = scope_filter(query, Activity.region_code, actor)
    activities, next_key = keyset_page(query, Activity.id, before=before, limit=limit)
    signals: dict[int, list[dict[str, Any]]] = {}
    ids = [a.id for a in activities]
    if ids:
        for signal in db.session.scalars(select(FraudSignal).where(FraudSignal.activity_id.in_(ids))):
            signals.setdefault(signal.activity_id, []).append(signal_view(signal))  # type: ignore[arg-type]
    return [activity_view(a) | {"signals": signals.get(a.id, [])} for a in activities], next_key


def activity_view(activity: Activity) -> dict[str, Any]:
    return {"id": activity.id, "type": activity.type, "status": activity.status, "reason": activity.reason,
            "source": activity.source, "partner_id": activity.partner_id, "external_id": activity.external_id,
            "resident_id": activity.resident_id, "household_id": activity.household_id,
            "region": activity.region_code, "occurred_at": activity.occurred_at, "ended_at": activity.ended_at,
            "data": activity.data, "findings": activity.findings or [], "duplicate_of": activity.duplicate_of,
            "reviewed_at": activity.reviewed_at, "created_at": activity.created_at}


def signal_view(signal: FraudSignal) -> dict[str, Any]:
    return {"id": signal.id, "kind": signal.kind, "status": signal.status, "detail": signal.detail,
            "resident_id": signal.resident_id, "partner_id": signal.partner_id, "activity_id": signal.activity_id,
            "region": signal.region_code, "created_at": signal.created_at, "resolution": signal.resolution}


def _pending(activity_id: int, actor: User) -> Activity:
    activity = db.session.scalar(select(Activity).where(Activity.id == activity_id).with_for_update())
    if activity is None:
        raise NotFound(f"No activity {activity_id}.")
    require_in_scope(actor, activity.region_code)
    if activity.status != "pending_review":
        raise Conflict(f"Activity {activity_id} was already decided: {activity.status}.", error="already_decided")
    return activity


def approve(activity_id: int, *, actor: User, note: str = "") -> dict[str, Any]:
    """Certify and credit a held-back activity, once."""
    activity = _pending(activity_id, actor)
    try:
        entry, data = load_evidence(activity.type, activity.data)
        quantified = Quantifier().quantify(entry, activity.type, activity.occurred_at, data, activity.region_code,
                                           household_id=activity.household_id, resident_id=activity.resident_id)
    except EvidenceError as exc:
        raise Conflict(f"The stored evidence no longer loads: {': '.join(exc.first())}",
                       error="not_quantifiable") from None
    except NotQuantifiable as exc:
        raise Conflict(exc.message, error=exc.reason) from None
    if quantified.rejected is not None:
        raise Conflict(f"The methodology rejects it: {quantified.rejected.message}", error=quantified.rejected.code)
    now = utcnow()
    before = {"status": activity.status, "reason": activity.reason}
    activity.status, activity.reviewed_by, activity.reviewed_at = "credited", actor.id, now
    reduction = record(activity, quantified)
    db.session.flush()
    result = ledger.credit([reduction.id])[0]
    if result.status == "credited":
        metrics.points_issued(result.points, "review")  # counted when the approval commits
    outcome = {"activity_id": activity.id, "status": "credited", "reduction_id": reduction.id,
               "reduction_g": reduction.grams, "points": result.points if result.status == "credited" else 0,
               "credit": result.status}
    audit.record("activity.approve", "activity", activity.id, actor=actor, region_code=activity.region_code,
                 before=before, after=outcome, reason=note.strip() or None)
    return outcome


def reject(activity_id: int, *, actor: User, reason: str) -> dict[str, Any]:
    if not reason.strip():
        raise field_error("reason", "say why the activity is rejected", error="reason_required")
    activity = _pending(activity_id, actor)
    before = {"status": activity.status, "reason": activity.reason}
    activity.status, activity.reason = "rejected", reason.strip()[:200]
    activity.reviewed_by, activity.reviewed_at = actor.id, utcnow()
    db.session.flush()
    audit.record("activity.reject", "activity", activity.id, actor=actor, region_code=activity.region_code,
                 before=before, after={"status": "rejected"}, reason=reason.strip())
    return {"activity_id": activity.id, "status": "rejected", "reason": activity.reason}


def signals_page(actor: User, *, status: str, before: int | None, limit: int) -> tuple[list[Any], int | None]:
    query = select(FraudSignal).where(FraudSignal.status == status)
    query = scope_filter(query, FraudSignal.region_code, actor)
    rows, next_key = keyset_page(query, FraudSignal.id, before=before, limit=limit)
    return [signal_view(s) for s in rows], next_key


def resolve_signal(signal_id: int, *, actor: User, status: str, resolution: str) -> dict[str, Any]:
    signal = db.session.scalar(select(FraudSignal).where(FraudSignal.id == signal_id).with_for_update())
    if signal is None:
        raise NotFound(f"No fraud signal {signal_id}.")
    if signal.region_code is not None:
        require_in_scope(actor, signal.region_code)
    if signal.status != "open":
        raise Conflict(f"Signal {signal_id} is already {signal.status}.", error="already_decided")
    if not resolution.strip():
        raise field_error("resolution", "say what was found", error="reason_required")
    signal.status, signal.resolution = status, resolution.strip()[:500]
    signal.resolved_by, signal.resolved_at = actor.id, utcnow()
    db.session.flush()
    audit.record(f"fraud_signal.{status}", "fraud_signal", signal.id, actor=actor, region_code=signal.region_code,
                 after={"status": status}, reason=resolution.strip())
    return signal_view(signal)


def resident_activities(resident_id: int, *, before: int | None, limit: int) -> tuple[list[Any], int | None]:
    query = select(Activity).where(Activity.resident_id == resident_id)
    rows, next_key = keyset_page(query, Activity.id, before=before, limit=limit)
    return [{"id": a.id, "type": a.type, "status": a.status, "reason": a.reason, "source": a.source,
             "occurred_at": a.occurred_at, "data": a.data, "reviewed_at": a.reviewed_at, "created_at": a.created_at}
            for a in rows], next_key
