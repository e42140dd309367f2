"""Alerts: flags the nightly checks raise for admins to look at and acknowledge.

One unresolved alert per ``(kind, subject)``. A check that finds the problem again refreshes it
(``last_seen_at``, ``occurrences``, the latest details). Once an admin has acknowledged it, it is
raised afresh only when its *fingerprint* changes (a different breach, a backlog turning critical),
so an acknowledged, known problem does not nag every hour. When a check finds the condition gone
it resolves the alert. Raising a new alert and acknowledging one are audited.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select

from backend.db import db, utcnow
from backend.errors import Conflict, NotFound
from backend.models import Alert, User
from backend.services import audit
from backend.services.pagination import keyset_page

STATES = ("open", "acknowledged", "resolved")
MESSAGE_MAX = 500


def fingerprint_of(material: Any) -> str:
    return hashlib.sha256(json.dumps(audit.jsonable(material), sort_keys=True, ensure_ascii=False)
                          .encode()).hexdigest()


def _unresolved(kind: str, subject: str) -> Alert | None:
    return db.session.scalar(select(Alert).where(Alert.kind == kind, Alert.subject == subject,
                                                 Alert.resolved_at.is_(None)).with_for_update())


def raise_alert(kind: str, *, severity: str, message: str, details: dict[str, Any], subject: str = "",
                fingerprint: Any = None) -> tuple[Alert, bool]:
    """Raise or refresh the alert of ``(kind, subject)``; returns it and whether it is new.

    ``fingerprint`` is what must change for an acknowledged alert to be raised again (default:
    the severity and the message).
    """
    now = utcnow()
    digest = fingerprint_of(fingerprint if fingerprint is not None else [severity, message])
    message = message[:MESSAGE_MAX]
    details = audit.jsonable(details)
    current = _unresolved(kind, subject)
    if current is not None and (current.acknowledged_at is None or current.fingerprint == digest):
        current.severity, current.message, current.details, current.fingerprint = severity, message, details, digest
        current.last_seen_at = now
        current.occurrences += 1
        db.session.flush()
        return current, False
    if current is not None:  # acknowledged, and what it is about has changed: a person must look again
        current.resolved_at = now
        db.session.flush()
    alert = Alert(kind=kind, subject=subject, severity=severity, message=message, details=details,
                  fingerprint=digest, raised_at=now, last_seen_at=now, occurrences=1)
    db.session.add(alert)
    db.session.flush()
    audit.record("alert.raise", "alert", alert.id, actor=None,
                 after={"kind": kind, "subject": subject, "severity": severity, "message": message,
                        "supersedes": current.id if current is not None else None})
    return alert, True


def resolve(kind: str, subject: str = "") -> Alert | None:
    """The condition is gone: resolve the unresolved alert of ``(kind, subject)``, if any."""
    current = _unresolved(kind, subject)
    if current is None:
        return None
    current.resolved_at = utcnow()
    db.session.flush()
    return current


def acknowledge(alert_id: int, *, actor: User, note: str | None) -> Alert:
    alert = db.session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    if alert.acknowledged_at is not None:
        raise Conflict(f"Alert {alert_id} was already acknowledged.", error="already_acknowledged")
    alert.acknowledged_by, alert.acknowledged_at = actor.id, utcnow()
    alert.acknowledgement_note = note.strip() if note and note.strip() else None
    db.session.flush()
    audit.record("alert.acknowledge", "alert", alert.id, actor=actor,
                 before={"kind": alert.kind, "subject": alert.subject, "severity": alert.severity},
                 after={"acknowledged_at": alert.acknowledged_at}, reason=alert.acknowledgement_note)
    return alert


def state_of(alert: Alert) -> str:
    if alert.resolved_at is not None:
        return "resolved"
    return "acknowledged" if alert.acknowledged_at is not None else "open"


def browse(*, state: str | None, kind: str | None, before: int | None, limit: int) -> tuple[list[Alert], int | None]:
    query = select(Alert)
    if state == "open":
        query = query.where(Alert.resolved_at.is_(None), Alert.acknowledged_at.is_(None))
    elif state == "acknowledged":
        query = query.where(Alert.resolved_at.is_(None), Alert.acknowledged_at.is_not(None))
    elif state == "resolved":
        query = query.where(Alert.resolved_at.is_not(None))
    if kind is not None:
        query = query.where(Alert.kind == kind)
    return keyset_page(query, Alert.id, before=before, limit=limit)


def get(alert_id: int) -> Alert:
    alert = db.session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    return alert
