"""One run of one job: take its Redis lock, claim the run in the database, run, record the outcome.

Order matters. The lock comes first (Redis unreachable or lock held: no run, recorded as
skipped); then the claim in ``job_runs`` (the database decides whether this scheduled run is still
to be done: a replica that arrives after another finished finds its row and stops); then the job,
with a watchdog extending the lock; then the outcome is committed, and only then is the lock
released, so whoever takes the lock next sees the finished row. A run that raises is rolled back,
recorded as failed with the end of its traceback, and retried by its next scheduled run (or an
earlier retry, where the job declares one). A runner that dies leaves its lock to expire and its
row "running"; the next runner to take the lock marks that row failed (abandoned).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Flask
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from backend.db import db
from backend.jobs.lock import JobLock
from backend.services import checks, jobruns

if TYPE_CHECKING:
    from backend.jobs.scheduler import JobSpec

log = logging.getLogger(__name__)

REDIS_DOWN = "redis_down"
LOCK_BUSY = "lock_busy"
LATE = "late"
DATABASE_DOWN = "database_down"
TAKEN = "taken"


@dataclass(frozen=True)
class RunResult:
    job_id: str
    scheduled_for: datetime
    outcome: str  # ok | failed | skipped | taken (another runner has this scheduled run)
    run_id: int | None = None
    counts: dict[str, Any] | None = None
    error: str | None = None
    reason: str | None = None  # why skipped: redis_down | lock_busy | late | database_down


def runner_name() -> str:
    """Which process wrote a run: host and pid (read each time: a forked worker has its own pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"[:255]


def skip(app: Flask, spec: JobSpec, scheduled_for: datetime, *, reason: str, message: str,
         trigger: str = "schedule", attempt: int = 1) -> RunResult:
    """Record that this runner did not run a scheduled run (unless it is already recorded)."""
    log.warning("job %s (scheduled for %s) skipped: %s", spec.id, scheduled_for.isoformat(), message)
    with app.app_context():
        try:
            jobruns.record_skip(spec.id, scheduled_for, trigger=trigger, attempt=attempt, reason=message,
                                runner=runner_name())
            db.session.commit()
        except SQLAlchemyError:
            db.session.rollback()
            log.exception("could not record the skipped run of job %s", spec.id)
    _observe(spec.id, "skipped", 0.0)
    return RunResult(spec.id, scheduled_for, "skipped", error=message, reason=reason)


def run(app: Flask, spec: JobSpec, scheduled_for: datetime, *, trigger: str = "schedule", attempt: int = 1,
        requested_by: int | None = None) -> RunResult:
    """Run ``spec`` for ``scheduled_for`` if this runner gets its lock and its claim; never without the lock.

    Manual runs record nothing when they cannot run: the person who asked is told instead.
    """
    manual = trigger == "manual"
    lock = JobLock(app.extensions["redis_store"].client, spec.id, spec.lock_ttl)
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        message = f"Redis is unreachable, so the job's lock could not be taken: {exc}"
        if manual:
            return RunResult(spec.id, scheduled_for, "skipped", error=message, reason=REDIS_DOWN)
        return skip(app, spec, scheduled_for, reason=REDIS_DOWN, message=message, trigger=trigger, attempt=attempt)
    if not acquired:
        message = "another runner holds this job's lock (a run of it is still going)"
        if manual:
            return RunResult(spec.id, scheduled_for, "skipped", error=message, reason=LOCK_BUSY)
        return skip(app, spec, scheduled_for, reason=LOCK_BUSY, message=message, trigger=trigger, attempt=attempt)
    try:
        return _run_locked(app, spec, lock, scheduled_for, trigger=trigger, attempt=attempt,
                           requested_by=requested_by)
    finally:
        try:
            if not lock.release() and not lock.lost:
                log.warning("job lock of %s had expired before it was released", spec.id)
        except RedisError as exc:
            log.warning("could not release the lock of job %s (it expires by itself): %s", spec.id, exc)


def _run_locked(app: Flask, spec: JobSpec, lock: JobLock, scheduled_for: datetime, *, trigger: str, attempt: int,
                requested_by: int | None) -> RunResult:
    with app.app_context():
        try:
            run_id = jobruns.claim(spec.id, scheduled_for, trigger=trigger, attempt=attempt, runner=runner_name(),
                                   requested_by=requested_by)
            db.session.commit()
        except SQLAlchemyError as exc:
            db.session.rollback()
            log.exception("job %s not run: its run could not be claimed in the database", spec.id)
            return RunResult(spec.id, scheduled_for, "skipped", error=f"the database is unreachable: {exc}",
                             reason=DATABASE_DOWN)
        if run_id is None:
            log.info("job %s (scheduled for %s) was already run by another runner", spec.id,
                     scheduled_for.isoformat())
            _observe(spec.id, TAKEN, 0.0)
            return RunResult(spec.id, scheduled_for, TAKEN)
        started = time.monotonic()
        counts: dict[str, Any] | None = None
        error: str | None = None
        with lock.kept_alive():
            try:
                counts = spec.func()
                db.session.commit()
                outcome = "ok"
            except Exception:
                db.session.rollback()
                outcome, error = "failed", traceback.format_exc()
                log.exception("job %s (scheduled for %s) failed", spec.id, scheduled_for.isoformat())
        seconds = time.monotonic() - started
        if lock.lost:
            warning = ("the job's lock expired while it ran (Redis unreachable or the run stalled past the "
                       "lock's TTL): another runner may have run the job meanwhile")
            error = f"{error}\n{warning}" if error else warning
        try:
            jobruns.finish(run_id, outcome=outcome, counts=_jsonable(counts), error=error)
            checks.job_outcome(spec.id, outcome=outcome, run_id=run_id, error=error)
            db.session.commit()
        except SQLAlchemyError:
            # The row stays "running"; the next runner to take the lock marks it abandoned.
            db.session.rollback()
            log.exception("job %s ran (%s) but its outcome could not be recorded", spec.id, outcome)
    if outcome == "ok":
        log.info("job %s done in %.1f s: %s", spec.id, seconds, counts)
    _observe(spec.id, outcome, seconds)
    return RunResult(spec.id, scheduled_for, outcome, run_id, counts, error)


def _jsonable(counts: Any) -> dict[str, Any] | None:
    if counts is None:
        return None
    if not isinstance(counts, dict):
        return {"result": str(counts)}
    return {str(k): v if isinstance(v, int | str | bool | type(None)) else str(v) for k, v in counts.items()}


# The metrics' words for outcomes: a run another runner has is, for this one, skipped.
_METRIC_OUTCOMES = {"ok": "success", "failed": "failure", "skipped": "skipped", TAKEN: "skipped"}


def _observe(job_id: str, outcome: str, seconds: float) -> None:
    """Count the run in the metrics, when the observability module is installed."""
    if importlib.util.find_spec("backend.observability") is None:
        return
    try:
        from backend import observability

        # METRICS HOOK: the one call site for job metrics.
        observability.record_job(job_id, _METRIC_OUTCOMES[outcome], seconds)
    except Exception:
        log.exception("could not record the metrics of job %s", job_id)
