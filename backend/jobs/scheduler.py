"""The scheduler: jobs declared as data, run by APScheduler 3 in Asia/Shanghai wall-clock time.

Production runs it as its own process (``carbon-points scheduler``), as many replicas as wanted;
the embedded single-process mode runs it inside ``carbon-points serve``. Every run goes through
``runner.run``: a Redis lock per job, then a claim of ``(job_id, scheduled_for)`` in ``job_runs``,
so each scheduled run happens once however many replicas fire it, and never without the lock.

Every trigger is a cron expression, so all replicas compute the same fire times (an interval
trigger would count from each process's start, and each would run its own series).

Misfire policy (what happens to runs that were due while no scheduler could run them):

- **Coalesce**: a job never runs once per missed fire time; at most one run makes up for them.
- **Grace** (``misfire_grace_time``): a run that starts later than this after its fire time (the
  machine was suspended, the process stalled) is recorded as skipped instead; the next fire time
  runs as usual. Frequent jobs have short graces: a minute-old hold timeout is caught by the next
  minute's run anyway. Daily jobs have none: late is better than not at all.
- **Catch-up after downtime** (``catch_up``): the in-memory job store forgets fire times that passed
  while no scheduler was running, so at start each catch-up job looks up its latest fire time of
  the last eight days in ``job_runs``; if nobody ran it, it runs once now, keyed by that fire time
  (replicas starting together still run it once). The jobs do whole catch-up work in one run:
  points expiry expires every lot whose last day is before today however many midnights were missed
  (each lot exactly once, the ledger keys its entries per day); the statistics roll-up rolls every
  missed day, oldest first, one transaction each; the verifications check the whole ledger and
  chain as they are now; the review ageing counts the queue as it is now. Frequent jobs
  (every minute or ten) just resume.
- **Retries**: a failed run is retried by the next fire time; daily jobs also declare retries a few
  minutes later (``retry_delays``) rather than waiting a day, each its own recorded run. A run that
  an outage stopped (Redis or the database unreachable) is retried the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    JobSubmissionEvent,
    SchedulerEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from backend.db import db, utcnow
from backend.errors import ApiError, Conflict, NotFound
from backend.jobs import housekeeping, points, runner, stats
from backend.models import User
from backend.services import audit, checks, jobruns, leaderboards

log = logging.getLogger(__name__)
TIMEZONE = "Asia/Shanghai"
CATCH_UP_LOOKBACK = timedelta(days=8)
RETRY_SOON = (300, 1800)  # five minutes, then half an hour


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: Callable[[], dict[str, Any]]
    cron: dict[str, Any]  # CronTrigger fields, Asia/Shanghai wall clock
    # Seconds a run may start after its fire time and still run (None: however late).
    misfire_grace_time: int | None = 3600
    # At start, run the latest fire time of the last days if nobody ran it (see the module docstring).
    catch_up: bool = False
    # Seconds the lock outlives a runner that died; the watchdog extends it every third of this.
    lock_ttl: float = 60
    # Seconds after a failure to try again, one per further attempt, before the next fire time.
    retry_delays: tuple[int, ...] = field(default=())

    def trigger(self) -> CronTrigger:
        return CronTrigger(timezone=TIMEZONE, **self.cron)

    @property
    def description(self) -> str:
        return (self.func.__doc__ or "").strip().splitlines()[0] if self.func.__doc__ else self.id


JOBS: tuple[JobSpec, ...] = (
    JobSpec("housekeeping", housekeeping.run, {"minute": "*/10"}, misfire_grace_time=300),
    JobSpec("prune_job_runs", housekeeping.prune_job_runs, {"hour": 4, "minute": 10}, catch_up=True),
    # Lots are spendable through their last day: expire just after midnight in China.
    JobSpec("expire_points", points.expire_points, {"hour": 0, "minute": 5}, misfire_grace_time=None,
            catch_up=True, lock_ttl=120, retry_delays=RETRY_SOON),
    # A new budget period starts at midnight too; releasing is cheap when nothing waits.
    JobSpec("release_queued", points.release_queued, {"minute": 15}, misfire_grace_time=1800, catch_up=True),
    # A reservation nobody confirmed gives its points back within a minute of its hold ending.
    JobSpec("expire_holds", points.expire_holds, {"minute": "*"}, misfire_grace_time=30),
    JobSpec("expire_grants", points.expire_grants, {"minute": 20}, misfire_grace_time=1800, catch_up=True),
    # Yesterday is over (plus the roll-up's grace) by half past midnight.
    JobSpec("stats_rollup", stats.rollup, {"hour": 0, "minute": 30}, misfire_grace_time=None, catch_up=True,
            lock_ttl=120, retry_delays=RETRY_SOON),
    # Nightly, when little is written: the whole ledger and the whole chain are read.
    JobSpec("verify_ledger", checks.verify_ledger, {"hour": 2, "minute": 0}, misfire_grace_time=None,
            catch_up=True, lock_ttl=120, retry_delays=RETRY_SOON),
    JobSpec("verify_audit", checks.verify_audit, {"hour": 2, "minute": 30}, misfire_grace_time=None,
            catch_up=True, lock_ttl=120, retry_delays=RETRY_SOON),
    JobSpec("review_ageing", checks.review_ageing, {"minute": 40}, misfire_grace_time=1800, catch_up=True),
    # The backstop behind the boards' marks: every cached board, and each region's current ones,
    # recounted from the database hourly (readers rebuild a missing or stale board on demand).
    JobSpec("rebuild_leaderboards", leaderboards.rebuild_all, {"minute": 45}, misfire_grace_time=1800,
            lock_ttl=120),
)


def find(job_id: str, jobs: tuple[JobSpec, ...] = JOBS) -> JobSpec:
    for spec in jobs:
        if spec.id == job_id:
            return spec
    raise NotFound(f"No job {job_id!r}; the jobs are: {', '.join(s.id for s in jobs)}.")


def previous_fire_time(spec: JobSpec, now: datetime) -> datetime | None:
    """The latest fire time at or before ``now`` within the catch-up lookback (cron has no reverse)."""
    trigger = spec.trigger()
    latest = None
    moment = trigger.get_next_fire_time(None, now - CATCH_UP_LOOKBACK)
    while moment is not None and moment <= now:
        latest = moment
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return latest


# --- firing ----------------------------------------------------------------------------------------


class _FireTimeExecutor(ThreadPoolExecutor):
    """A thread pool that calls each job with the fire time it runs for: the key of its run record.

    (APScheduler's own executor calls jobs without it.) The runner records its own failures and
    lateness, so APScheduler's misfire handling is not used.
    """

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def done(future: Any) -> None:
            exc = future.exception()
            if exc is not None:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(_call, job, run_times).add_done_callback(done)


def _call(job: Any, run_times: list[datetime]) -> list[SchedulerEvent]:
    events: list[SchedulerEvent] = []
    for run_time in run_times:
        try:
            retval = job.func(run_time)
            events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, job._jobstore_alias, run_time, retval=retval))
        except Exception as exc:  # the runner records job failures itself: this is a fault in the runner
            log.exception("the scheduler could not run job %s", job.id)
            events.append(JobExecutionEvent(EVENT_JOB_ERROR, job.id, job._jobstore_alias, run_time, exception=exc))
    return events


def _fire(app: Flask, spec: JobSpec, scheduler: BaseScheduler, run_time: datetime | None = None, *,
          trigger: str = "schedule", attempt: int = 1, key: datetime | None = None) -> runner.RunResult:
    """Run a fire of ``spec``: ``run_time`` is when it fired (the executor passes it; APScheduler's
    signature check wants it optional), ``key`` the fire time it stands for (default: ``run_time``)."""
    run_time = run_time or utcnow()
    scheduled_for = (key or run_time).astimezone(UTC)
    late = (utcnow() - run_time).total_seconds()
    if spec.misfire_grace_time is not None and late > spec.misfire_grace_time:
        return runner.skip(app, spec, scheduled_for, reason=runner.LATE, trigger=trigger, attempt=attempt,
                           message=f"started {late:.0f} s after its fire time, past its grace of "
                                   f"{spec.misfire_grace_time} s; the next fire time runs as usual")
    result = runner.run(app, spec, scheduled_for, trigger=trigger, attempt=attempt)
    # A failure, or an outage that stopped the run, is tried again soon (a busy lock means it is running).
    unlucky = result.outcome == "failed" or result.reason in (runner.REDIS_DOWN, runner.DATABASE_DOWN)
    if unlucky and attempt <= len(spec.retry_delays):
        when = utcnow() + timedelta(seconds=spec.retry_delays[attempt - 1])
        scheduler.add_job(partial(_fire, app, spec, scheduler, trigger="retry", attempt=attempt + 1), "date",
                          run_date=when, id=f"{spec.id}:retry", replace_existing=True, misfire_grace_time=None)
        log.warning("job %s %s; attempt %d at %s", spec.id, result.outcome, attempt + 1, when.isoformat())
    return result


def _catch_up(app: Flask, scheduler: BaseScheduler, jobs: tuple[JobSpec, ...]) -> list[str]:
    """Queue one run for each catch-up job whose latest fire time nobody ran (see the docstring)."""
    now = utcnow()
    queued = []
    with app.app_context():
        try:
            first_start = not jobruns.latest([spec.id for spec in jobs])
        except SQLAlchemyError:
            db.session.rollback()
            first_start = False
        for spec in jobs:
            if not spec.catch_up:
                continue
            missed = previous_fire_time(spec, now)
            try:
                if missed is None or jobruns.done(spec.id, missed.astimezone(UTC)):
                    continue
            except SQLAlchemyError:
                db.session.rollback()
                log.exception("could not check whether job %s missed a run; no catch-up for it", spec.id)
                continue
            scheduler.add_job(partial(_fire, app, spec, scheduler, trigger="catch_up", key=missed), "date",
                              run_date=now, id=f"{spec.id}:catch-up", replace_existing=True, misfire_grace_time=None)
            queued.append(spec.id)
    if queued and first_start:  # nothing was missed: this database never had a scheduler
        log.info("first start on this database: running each daily job once now: %s", ", ".join(queued))
    elif queued:
        log.warning("catching up runs missed while no scheduler ran: %s", ", ".join(queued))
    return queued


def build(app: Flask, *, blocking: bool, jobs: tuple[JobSpec, ...] = JOBS, catch_up: bool = True,
          max_workers: int = 10) -> BaseScheduler:
    """A scheduler with ``jobs``; on start it queues the catch-up runs."""
    kind = BlockingScheduler if blocking else BackgroundScheduler
    scheduler: BaseScheduler = kind(timezone=TIMEZONE, executors={"default": _FireTimeExecutor(max_workers)})
    for spec in jobs:
        # Coalesced, one at a time per process; lateness is judged by the runner (misfire_grace_time).
        scheduler.add_job(partial(_fire, app, spec, scheduler), spec.trigger(), id=spec.id, name=spec.id,
                          replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=None)

    def on_event(event: SchedulerEvent) -> None:
        if event.code == EVENT_SCHEDULER_STARTED and catch_up:
            _catch_up(app, scheduler, jobs)
        elif isinstance(event, JobSubmissionEvent) and event.code == EVENT_JOB_MAX_INSTANCES:
            spec = next((s for s in jobs if s.id == event.job_id), None)
            if spec is not None:
                runner.skip(app, spec, event.scheduled_run_times[-1].astimezone(UTC), reason=runner.LOCK_BUSY,
                            message="the previous run of this job in this process is still going")

    scheduler.add_listener(on_event, EVENT_SCHEDULER_STARTED | EVENT_JOB_MAX_INSTANCES)
    return scheduler


# --- for people: the jobs at a glance, a run on demand ----------------------------------------------


def overview(jobs: tuple[JobSpec, ...] = JOBS, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each job: its schedule, its next fire time, its latest run and when it last succeeded."""
    now = now or utcnow()
    ids = [spec.id for spec in jobs]
    latest, succeeded = jobruns.latest(ids), jobruns.last_success(ids)
    return [{"id": spec.id, "description": spec.description, "schedule": str(spec.trigger()), "timezone": TIMEZONE,
             "misfire_grace_seconds": spec.misfire_grace_time, "catch_up": spec.catch_up,
             "lock_ttl_seconds": spec.lock_ttl, "retry_delays_seconds": list(spec.retry_delays),
             "next_run_at": spec.trigger().get_next_fire_time(None, now), "last_run": latest.get(spec.id),
             "last_success_at": succeeded.get(spec.id)} for spec in jobs]


class LockUnavailable(ApiError):
    status_code = 503
    error = "lock_unavailable"


def run_now(app: Flask, job_id: str, *, actor: User | None, jobs: tuple[JobSpec, ...] = JOBS) -> runner.RunResult:
    """Run a job at once, under its lock like any run (a manual run); recorded, and audited when a
    person asked. Raises 409 while another run holds the lock, 503 when Redis is unreachable."""
    spec = find(job_id, jobs)
    if db.session_started():
        # The run is its own unit of work, in its own session: end the caller's transaction first
        # (SQLite's BEGIN IMMEDIATE would otherwise hold the write lock the run needs).
        db.session.commit()
    result = runner.run(app, spec, utcnow(), trigger="manual", requested_by=actor.id if actor else None)
    if result.reason == runner.LOCK_BUSY:
        raise Conflict(f"Job {job_id} is running now; try again when it has finished.", error="job_running")
    if result.reason in (runner.REDIS_DOWN, runner.DATABASE_DOWN):
        raise LockUnavailable(f"Job {job_id} was not run: {result.error}")
    if actor is not None and result.run_id is not None:
        audit.record("job.run", "job", job_id, actor=actor,
                     after={"run_id": result.run_id, "outcome": result.outcome})
    return result
