"""Nightly checks and alerts (issue #7 point 2): ledger verify and audit verify raise a logged, audited
alert on a breach; review-queue ageing; refresh, acknowledge, supersede and resolve; the admin endpoints."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, text, update

from backend.db import db, utcnow
from backend.jobs import runner
from backend.jobs import scheduler as jobs
from backend.models import Activity, Alert, AuditHead, AuditLog, Lot, User
from backend.services import alerts, checks, ledger
from tests.conftest import Api, sign_up

_moments = iter(range(1, 10_000))


def _run(app: Flask, job_id: str) -> runner.RunResult:
    """One scheduled run of a declared job, each at its own fire time."""
    result = runner.run(app, jobs.find(job_id), utcnow() - timedelta(microseconds=next(_moments)))
    assert result.outcome == "ok", result.error
    return result


def _alerts(app: Flask, kind: str) -> list[Alert]:
    with app.app_context():
        rows = list(db.session.scalars(select(Alert).where(Alert.kind == kind).order_by(Alert.id)))
        db.session.expunge_all()
        return rows


def _audit_actions(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


@pytest.fixture
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.ERROR)
    logger = logging.getLogger("backend.services.checks")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _wallet_with_lot(app: Flask, api: Api, name: str) -> int:
    """A resident's wallet holding 100 points in one lot; the lot's id."""
    resident_id = sign_up(api, name).get("/api/v1/me").get_json()["id"]
    with app.app_context():
        version = ledger.rules_in_force("430602", utcnow())
        wallet = ledger.wallet_of_resident(resident_id)
        issuance = ledger.accounts_for("issuance", [version.region_code])[version.region_code]
        ledger.post([ledger.EntryDraft(key=f"test-grant:{resident_id}", kind="adjust", rule_version=version,
                                       postings=[(issuance, -100), (wallet, 100)], memo="test grant",
                                       lot=(wallet, 100, None))])
        db.session.commit()
        return db.session.scalar(select(Lot.id).where(Lot.account_id == wallet))


def _shift_lot(app: Flask, lot_id: int, by: int) -> None:
    """Make a wallet's lots disagree with its balance (what a buggy writer would leave)."""
    with app.app_context():
        db.session.execute(update(Lot).where(Lot.id == lot_id).values(remaining=Lot.remaining + by))
        db.session.commit()


# --- ledger verify ---------------------------------------------------------------------------------


def test_a_ledger_breach_is_logged_audited_and_flagged_until_it_is_gone(
        app: Flask, api: Api, staff: dict[str, Api], errors_logged: list[logging.LogRecord]) -> None:
    first_lot = _wallet_with_lot(app, api, "lihua")
    assert _run(app, "verify_ledger").counts == {"breaches": 0, "entries": 1}
    assert _alerts(app, checks.LEDGER_BREACH) == [] and errors_logged == []

    _shift_lot(app, first_lot, -1)
    found = _run(app, "verify_ledger")
    assert found.counts["breaches"] == 1
    [alert] = _alerts(app, checks.LEDGER_BREACH)
    assert (alert.id, alert.severity, alert.occurrences, alerts.state_of(alert)) == \
        (found.counts["alert_id"], "critical", 1, "open")
    assert alert.message.startswith("ledger verify found a breach: wallets whose lots do not add up")
    assert alert.details["ok"] is False and len(alert.details["breaches"]) == 1
    assert any("LEDGER BREACH" in r.getMessage() for r in errors_logged)
    assert _audit_actions(app)[-2:] == ["ledger.verify_breach", "alert.raise"]

    # Found again the next night: the same alert, refreshed; audited again as a breach, not re-raised.
    _run(app, "verify_ledger")
    [alert] = _alerts(app, checks.LEDGER_BREACH)
    assert alert.occurrences == 2 and alert.last_seen_at > alert.raised_at
    assert _audit_actions(app).count("alert.raise") == 1 and _audit_actions(app).count("ledger.verify_breach") == 2

    acknowledged = staff["admin1"].post(f"/api/v1/admin/alerts/{alert.id}/acknowledge",
                                        {"note": "looking into the lot writer"})
    assert acknowledged.status_code == 200, acknowledged.get_json()
    assert acknowledged.get_json()["state"] == "acknowledged"
    _run(app, "verify_ledger")  # the same breach: stays acknowledged, no new alert
    [alert] = _alerts(app, checks.LEDGER_BREACH)
    assert (alerts.state_of(alert), alert.occurrences) == ("acknowledged", 3)

    # A different breach is news: a new alert, the acknowledged one superseded.
    second_lot = _wallet_with_lot(app, api, "wangfang")
    _shift_lot(app, second_lot, -2)
    _run(app, "verify_ledger")
    old, new = _alerts(app, checks.LEDGER_BREACH)
    assert (alerts.state_of(old), alerts.state_of(new), new.occurrences) == ("resolved", "open", 1)
    assert _audit_actions(app).count("alert.raise") == 2

    _shift_lot(app, first_lot, 1)
    _shift_lot(app, second_lot, 2)
    assert _run(app, "verify_ledger").counts["breaches"] == 0
    assert [alerts.state_of(a) for a in _alerts(app, checks.LEDGER_BREACH)] == ["resolved", "resolved"]


# --- audit verify ----------------------------------------------------------------------------------


def test_a_broken_audit_chain_is_logged_recorded_and_flagged(
        app: Flask, staff: dict[str, Api], errors_logged: list[logging.LogRecord]) -> None:
    assert _run(app, "verify_audit").counts["broken"] == 0
    with app.app_context():
        db.session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_id=AuditHead.last_id + 5))
        db.session.commit()
    found = _run(app, "verify_audit")
    assert found.counts["broken"] == 1
    [alert] = _alerts(app, checks.AUDIT_CHAIN_BROKEN)
    assert alert.severity == "critical" and "audit chain is broken" in alert.message
    assert alert.details["problem"].startswith("the chain ends before the recorded head")
    assert any("AUDIT CHAIN BROKEN" in r.getMessage() for r in errors_logged)
    assert "audit.verify_breach" in _audit_actions(app)
    listed = staff["auditor1"].get("/api/v1/admin/alerts?state=open").get_json()["items"]
    assert [a["kind"] for a in listed] == [checks.AUDIT_CHAIN_BROKEN]


# --- review ageing ---------------------------------------------------------------------------------


def _waiting(app: Flask, hours: float, region: str = "430602", status: str = "pending_review") -> int:
    with app.app_context():
        now = utcnow()
        activity = Activity(source="self", type="recycling", occurred_at=now - timedelta(hours=hours + 1),
                            region_code=region, data={"material": "paper", "weight_kg": "2"}, status=status,
                            created_at=now - timedelta(hours=hours))
        db.session.add(activity)
        db.session.commit()
        return activity.id


def test_review_ageing_raises_refreshes_escalates_and_resolves_one_alert(app: Flask, staff: dict[str, Api]) -> None:
    _waiting(app, 2)
    _waiting(app, 30)
    _waiting(app, 500, status="rejected")  # decided: not in the queue
    assert _run(app, "review_ageing").counts == {"pending": 2, "overdue": 0}
    assert _alerts(app, checks.REVIEW_BACKLOG) == []

    late = [_waiting(app, 80), _waiting(app, 100, region="430204")]
    counts = _run(app, "review_ageing").counts
    assert (counts["pending"], counts["overdue"]) == (4, 2)
    [alert] = _alerts(app, checks.REVIEW_BACKLOG)
    assert alert.severity == "warning"
    assert alert.details["by_age"] == {"under_24h": 1, "24h_to_72h": 1, "72h_to_7d": 2, "over_7d": 0}
    assert alert.details["overdue_by_region"] == {"430204": 1, "430602": 1}
    assert alert.details["oldest"]["activity_id"] == late[1] and alert.details["oldest"]["hours_waiting"] == 100
    assert alert.details["sla_hours"] == 72 and "2 activities have waited in review longer than 72 h" in alert.message

    _run(app, "review_ageing")
    [alert] = _alerts(app, checks.REVIEW_BACKLOG)
    assert alert.occurrences == 2
    assert staff["admin1"].post(f"/api/v1/admin/alerts/{alert.id}/acknowledge").status_code == 200
    _waiting(app, 90)
    _run(app, "review_ageing")  # still a warning: acknowledged, it does not nag
    [alert] = _alerts(app, checks.REVIEW_BACKLOG)
    assert (alerts.state_of(alert), alert.details["overdue"]) == ("acknowledged", 3)

    oldest = _waiting(app, 24 * 8)  # past a week: critical, raised afresh
    _run(app, "review_ageing")
    old, new = _alerts(app, checks.REVIEW_BACKLOG)
    assert alerts.state_of(old) == "resolved" and (new.severity, alerts.state_of(new)) == ("critical", "open")
    assert new.details["oldest"]["activity_id"] == oldest

    with app.app_context():
        db.session.execute(update(Activity).where(Activity.created_at < utcnow() - checks.REVIEW_SLA)
                           .values(status="rejected"))
        db.session.commit()
    assert _run(app, "review_ageing").counts == {"pending": 2, "overdue": 0}
    assert [alerts.state_of(a) for a in _alerts(app, checks.REVIEW_BACKLOG)] == ["resolved", "resolved"]


# --- the alerts service ----------------------------------------------------------------------------


def test_one_unresolved_alert_per_kind_and_subject(app: Flask) -> None:
    with app.app_context():
        first, new = alerts.raise_alert("job_failed", subject="expire_points", severity="warning", message="m",
                                        details={"at": datetime(2026, 1, 1)})
        assert new and first.details == {"at": "2026-01-01T00:00:00"}
        other, new_other = alerts.raise_alert("job_failed", subject="stats_rollup", severity="warning", message="m",
                                              details={})
        again, new_again = alerts.raise_alert("job_failed", subject="expire_points", severity="critical",
                                              message="worse", details={})
        assert new_other and not new_again and again.id == first.id
        assert (again.severity, again.message, again.occurrences) == ("critical", "worse", 2)
        db.session.commit()
        assert alerts.resolve("job_failed", "expire_points").id == first.id
        assert alerts.resolve("job_failed", "expire_points") is None
        db.session.commit()
        # The database holds the line too: a second unresolved row of one kind and subject is refused.
        dup = db.session.get(Alert, other.id)
        db.session.add(Alert(kind=dup.kind, subject=dup.subject, severity="info", message="x", details={},
                             fingerprint="0" * 64, raised_at=utcnow(), last_seen_at=utcnow(), occurrences=1))
        with pytest.raises(Exception, match=r"(?i)unique"):
            db.session.flush()
        db.session.rollback()


# --- endpoints -------------------------------------------------------------------------------------


def _some_alerts(app: Flask) -> list[int]:
    with app.app_context():
        ids = [alerts.raise_alert(kind, severity="warning", message=f"{kind} happened", details={"n": 1})[0].id
               for kind in ("review_backlog", "ledger_breach", "audit_chain_broken")]
        alerts.resolve("review_backlog")
        db.session.commit()
        return ids


def test_alerts_are_listed_filtered_and_acknowledged_by_admins(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    backlog, breach, chain = _some_alerts(app)
    admin, auditor = staff["admin1"], staff["auditor1"]
    page = admin.get("/api/v1/admin/alerts?limit=2").get_json()
    assert [a["id"] for a in page["items"]] == [chain, breach]
    rest = admin.get(f"/api/v1/admin/alerts?limit=2&cursor={page['next_cursor']}").get_json()
    assert [a["id"] for a in rest["items"]] == [backlog] and rest["next_cursor"] is None
    assert [a["id"] for a in auditor.get("/api/v1/admin/alerts?state=resolved").get_json()["items"]] == [backlog]
    assert [a["id"] for a in auditor.get("/api/v1/admin/alerts?kind=ledger_breach").get_json()["items"]] == [breach]

    refused = auditor.post(f"/api/v1/admin/alerts/{breach}/acknowledge", {"note": "mine"})
    assert refused.status_code == 403
    long_note = admin.post(f"/api/v1/admin/alerts/{breach}/acknowledge", {"note": "x" * 501})
    assert long_note.status_code == 422 and "note" in long_note.get_json()["errors"]["json"]
    done = admin.post(f"/api/v1/admin/alerts/{breach}/acknowledge", {"note": " on it "})
    assert done.status_code == 200
    body = done.get_json()
    assert (body["state"], body["acknowledgement_note"]) == ("acknowledged", "on it")
    with app.app_context():
        assert body["acknowledged_by"] == db.session.scalar(select(User.id).where(User.username == "admin1"))
    twice = admin.post(f"/api/v1/admin/alerts/{breach}/acknowledge")
    assert twice.status_code == 409 and twice.get_json()["error"] == "already_acknowledged"
    assert admin.post("/api/v1/admin/alerts/999999/acknowledge").status_code == 404
    assert admin.get(f"/api/v1/admin/alerts/{breach}").get_json()["state"] == "acknowledged"
    assert [a["id"] for a in admin.get("/api/v1/admin/alerts?state=open").get_json()["items"]] == [chain]
    with app.app_context():
        entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "alert.acknowledge")).one()
        assert (entry.actor, entry.target_id, entry.reason) == ("admin1", str(breach), "on it")

    bad = admin.get("/api/v1/admin/alerts?state=closed")
    assert bad.status_code == 422 and "state" in bad.get_json()["errors"]["query"]
    assert admin.get("/api/v1/admin/alerts?colour=red").status_code == 422
    assert staff["operator1"].get("/api/v1/admin/alerts").status_code == 403
    assert sign_up(api, "lihua").get("/api/v1/admin/alerts").status_code == 403
    assert api.get("/api/v1/admin/alerts").status_code == 401
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Alert)) == 3
        assert db.session.execute(text("SELECT count(*) FROM alerts WHERE resolved_at IS NULL")).scalar() == 2
