"""The record of scheduled job runs, and the database's say on which runner runs a scheduled run.

``claim`` is the arbiter: a run is keyed by ``(job_id, scheduled_for)`` and only the runner whose
INSERT makes the row (or which takes over a row that only says "skipped") runs it. A replica that
arrives late, even after another finished and released the Redis lock, finds the row and does
nothing. Services flush; the runner commits around the claim, the job and the outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from backend.db import db, utcnow
from backend.models import JobRun
from backend.services.pagination import keyset_page

ERROR_MAX = 4000  # the end of a traceback is what names the fault
ABANDONED = ("abandoned: the runner stopped before recording an outcome (its process died or lost the "
             "database); the lock it held has expired")


def _insert(table: Any) -> Any:
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= ERROR_MAX:
        return text
    return "…" + text[-(ERROR_MAX - 1):]


def record_skip(job_id: str, scheduled_for: datetime, *, trigger: str, attempt: int, reason: str,
                runner: str) -> bool:
    """Note that nobody ran a scheduled run, unless a row for it exists already; True if noted.

    A replica that could take the lock later may still take the row over (see ``claim``).
    """
    now = utcnow()
    row = {"job_id": job_id, "scheduled_for": scheduled_for, "trigger": trigger, "attempt": attempt,
           "outcome": "skipped", "finished_at": now, "error": _clip(reason), "runner": runner, "created_at": now}
    table = JobRun.__table__
    inserted = db.session.execute(_insert(table).values(**row)
                                  .on_conflict_do_nothing(index_elements=["job_id", "scheduled_for"])
                                  .returning(table.c.id)).scalar()
    return inserted is not None


def claim(job_id: str, scheduled_for: datetime, *, trigger: str, attempt: int, runner: str,
          requested_by: int | None = None) -> int | None:
    """Claim a run for this runner, which must hold the job's lock; its id, or None if the run is
    someone else's (running or done)."""
    abandon_running(job_id)
    now = utcnow()
    table = JobRun.__table__
    values = {"trigger": trigger, "attempt": attempt, "outcome": "running", "started_at": now, "finished_at": None,
              "error": None, "counts": None, "runner": runner, "requested_by_user_id": requested_by}
    run_id = db.session.execute(
        _insert(table).values(job_id=job_id, scheduled_for=scheduled_for, created_at=now, **values)
        .on_conflict_do_nothing(index_elements=["job_id", "scheduled_for"]).returning(table.c.id)).scalar()
    if run_id is None:
        # A replica that could not take the lock said "skipped"; the run is still to be done.
        run_id = db.session.execute(
            update(table).where(table.c.job_id == job_id, table.c.scheduled_for == scheduled_for,
                                table.c.outcome == "skipped").values(**values).returning(table.c.id)).scalar()
    return run_id


def abandon_running(job_id: str) -> int:
    """Runs of a job still marked running while the caller holds its lock are dead: mark them failed."""
    result = db.session.execute(
        update(JobRun).where(JobRun.job_id == job_id, JobRun.outcome == "running")
        .values(outcome="failed", finished_at=utcnow(), error=ABANDONED)
        .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)


def finish(run_id: int, *, outcome: str, counts: dict[str, Any] | None, error: str | None) -> None:
    db.session.execute(update(JobRun).where(JobRun.id == run_id)
                       .values(outcome=outcome, finished_at=utcnow(), counts=counts, error=_clip(error))
                       .execution_options(synchronize_session=False))
    db.session.flush()


def get(run_id: int) -> JobRun | None:
    return db.session.get(JobRun, run_id, populate_existing=True)


def done(job_id: str, scheduled_for: datetime) -> bool:
    """Whether a scheduled run was run (or is running) by anyone; a skipped one was not."""
    return db.session.scalar(select(func.count()).select_from(JobRun).where(
        JobRun.job_id == job_id, JobRun.scheduled_for == scheduled_for, JobRun.outcome != "skipped")) > 0


def latest(job_ids: list[str]) -> dict[str, JobRun]:
    """Each job's most recent run (the highest id)."""
    newest = select(func.max(JobRun.id)).where(JobRun.job_id.in_(job_ids)).group_by(JobRun.job_id)
    return {run.job_id: run for run in db.session.scalars(select(JobRun).where(JobRun.id.in_(newest)))}


def last_success(job_ids: list[str]) -> dict[str, datetime]:
    rows = db.session.execute(select(JobRun.job_id, func.max(JobRun.finished_at))
                              .where(JobRun.job_id.in_(job_ids), JobRun.outcome == "ok").group_by(JobRun.job_id))
    return {job_id: finished for job_id, finished in rows if finished is not None}


def browse(*, job_id: str | None, outcome: str | None, before: int | None,
           limit: int) -> tuple[list[JobRun], int | None]:
    query = select(JobRun)
    if job_id is not None:
        query = query.where(JobRun.job_id == job_id)
    if outcome is not None:
        query = query.where(JobRun.outcome == outcome)
    return keyset_page(query, JobRun.id, before=before, limit=limit)


RETENTION = timedelta(days=90)


def prune(now: datetime | None = None) -> int:
    """Forget finished runs older than ``RETENTION`` (a job each minute writes half a million rows
    a year); each job's latest run stays, so its status is never lost."""
    cutoff = (now or utcnow()) - RETENTION
    keep = select(func.max(JobRun.id)).group_by(JobRun.job_id)
    result = db.session.execute(delete(JobRun).where(JobRun.created_at < cutoff, JobRun.outcome != "running",
                                                     JobRun.id.not_in(keep)))
    return int(result.rowcount or 0)
