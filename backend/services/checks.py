"""The nightly and hourly checks: ledger invariants, the audit chain, the review queue's age.

A breach is logged at ERROR, written to the audit log, and flagged as an alert for the admins; a
later check that finds the condition gone resolves the alert. A job that fails is flagged too. The
checks themselves succeed when they could check: finding a breach is their job, not their failure.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select

from backend.db import db, utcnow
from backend.models import Activity
from backend.services import alerts, audit
from backend.services.ledger_verify import verify

log = logging.getLogger(__name__)

LEDGER_BREACH = "ledger_breach"
AUDIT_CHAIN_BROKEN = "audit_chain_broken"
REVIEW_BACKLOG = "review_backlog"
JOB_FAILED = "job_failed"

# How long an activity may wait in review. 72 hours spans a weekend plus a working day: an
# activity waiting longer was not merely queued behind a weekend; it has been missed, and the
# resident who did it is still waiting for points they were told about.
REVIEW_SLA = timedelta(hours=72)
# Past this the backlog is critical: the resident's 30-day window to report elsewhere or complain
# is a quarter gone, and the trip or receipt behind it is getting hard to check.
REVIEW_CRITICAL = timedelta(days=7)
AGE_BUCKETS = (("under_24h", timedelta(hours=24)), ("24h_to_72h", REVIEW_SLA), ("72h_to_7d", REVIEW_CRITICAL))
OLDEST_BUCKET = "over_7d"


def verify_ledger() -> dict[str, Any]:
    """`ledger verify` over the whole ledger; a breach raises a critical alert."""
    report = verify()
    counts: dict[str, Any] = {"breaches": len(report.breaches), "entries": report.totals.get("entries", 0)}
    if report.ok:
        if alerts.resolve(LEDGER_BREACH) is not None:
            log.warning("ledger verify passes again; alert %s resolved", LEDGER_BREACH)
        return counts
    for breach in report.breaches:
        log.error("LEDGER BREACH: %s", breach)
    audit.record("ledger.verify_breach", "ledger", None, actor=None,
                 after={"breaches": report.breaches, "totals": report.totals})
    first = report.breaches[0]
    more = f" (and {len(report.breaches) - 1} more)" if len(report.breaches) > 1 else ""
    alert, _ = alerts.raise_alert(LEDGER_BREACH, severity="critical",
                                  message=f"ledger verify found a breach: {first}{more}",
                                  details=report.as_dict(), fingerprint=sorted(report.breaches))
    counts["alert_id"] = alert.id
    return counts


def verify_audit() -> dict[str, Any]:
    """Recompute the audit log's hash chain; a break raises a critical alert."""
    report = audit.verify_chain(db.session)
    counts: dict[str, Any] = {"checked": report.checked, "broken": 0 if report.ok else 1}
    if report.ok:
        if alerts.resolve(AUDIT_CHAIN_BROKEN) is not None:
            log.warning("the audit chain verifies again; alert %s resolved", AUDIT_CHAIN_BROKEN)
        return counts
    log.error("AUDIT CHAIN BROKEN at entry %s: %s (%s entries verified before it)",
              report.broken_at, report.problem, report.checked)
    details = {"broken_at": report.broken_at, "problem": report.problem, "checked": report.checked}
    # Appending still works on a broken chain and records when the break was found.
    audit.record("audit.verify_breach", "audit_log", report.broken_at, actor=None, after=details)
    alert, _ = alerts.raise_alert(AUDIT_CHAIN_BROKEN, severity="critical",
                                  message=f"the audit chain is broken at entry {report.broken_at}: {report.problem}",
                                  details=details, fingerprint=[report.broken_at, report.problem])
    counts["alert_id"] = alert.id
    return counts


def review_ageing(now: datetime | None = None) -> dict[str, Any]:
    """Count the review queue by age; raise (or refresh) one alert while anything is past the SLA.

    The alert is a warning while the oldest waits under ``REVIEW_CRITICAL``, critical after; an
    acknowledged warning is raised again when it turns critical. An empty or timely queue resolves it.
    """
    now = now or utcnow()
    pending = Activity.status == "pending_review"
    # Grouped by its label: PostgreSQL would not match two renderings of the CASE (their bind parameters differ).
    bucket = case(*[(Activity.created_at > now - age, name) for name, age in AGE_BUCKETS],
                  else_=OLDEST_BUCKET).label("bucket")
    buckets = {name: 0 for name, _ in AGE_BUCKETS} | {OLDEST_BUCKET: 0}
    for name, count in db.session.execute(select(bucket, func.count()).where(pending).group_by(bucket)):
        buckets[name] = int(count)
    total = sum(buckets.values())
    overdue_filter = pending & (Activity.created_at <= now - REVIEW_SLA)
    overdue = buckets["72h_to_7d"] + buckets[OLDEST_BUCKET]
    counts: dict[str, Any] = {"pending": total, "overdue": overdue}
    if not overdue:
        if alerts.resolve(REVIEW_BACKLOG) is not None:
            log.info("no activity waits in review past the SLA; alert %s resolved", REVIEW_BACKLOG)
        return counts
    by_region = {region: int(count) for region, count in db.session.execute(
        select(Activity.region_code, func.count()).where(overdue_filter).group_by(Activity.region_code)
        .order_by(Activity.region_code))}
    oldest_id, oldest_at = db.session.execute(select(Activity.id, Activity.created_at).where(pending)
                                              .order_by(Activity.created_at, Activity.id).limit(1)).one()
    waited_hours = int((now - oldest_at).total_seconds() // 3600)
    severity = "critical" if buckets[OLDEST_BUCKET] else "warning"
    details = {"sla_hours": int(REVIEW_SLA.total_seconds() // 3600), "pending": total, "overdue": overdue,
               "by_age": buckets, "overdue_by_region": by_region,
               "oldest": {"activity_id": oldest_id, "created_at": oldest_at, "hours_waiting": waited_hours}}
    message = (f"{overdue} activit{'y has' if overdue == 1 else 'ies have'} waited in review longer than "
               f"{details['sla_hours']} h (oldest: activity {oldest_id}, {waited_hours} h)")
    log.warning("review backlog: %s", message)
    alert, _ = alerts.raise_alert(REVIEW_BACKLOG, severity=severity, message=message, details=details,
                                  fingerprint=severity)
    counts["alert_id"] = alert.id
    return counts


def job_outcome(job_id: str, *, outcome: str, run_id: int, error: str | None) -> None:
    """A failed run flags its job (one alert per job, refreshed while it keeps failing, so a job
    that fails every minute is one line for the admins, not a thousand); a run that succeeds
    resolves the flag."""
    if outcome == "ok":
        alerts.resolve(JOB_FAILED, job_id)
        return
    if outcome != "failed":
        return
    last_line = (error or "").strip().splitlines()[-1:] or ["no error text"]
    alerts.raise_alert(JOB_FAILED, subject=job_id, severity="warning",
                       message=f"job {job_id} failed: {last_line[0]}"[:alerts.MESSAGE_MAX],
                       details={"run_id": run_id, "error": (error or "")[-2000:]}, fingerprint=job_id)
