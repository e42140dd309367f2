"""The scheduler (issue #7 point 1): a Redis lock per run, the database deciding which runner runs a
scheduled run, run records, failures, retries, misfires and catch-up, two schedulers against one Redis,
and the admin endpoints and commands for jobs."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from backend.app import create_app
from backend.cli import main
from backend.db import db, utcnow
from backend.jobs import runner
from backend.jobs import scheduler as jobs
from backend.jobs.lock import JobLock
from backend.jobs.scheduler import JobSpec
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import Alert, AuditLog, JobRun, Region
from backend.services import jobruns
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, Api, make_settings, run_together

AT = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


class Calls:
    """A job function that counts its calls, optionally sleeping or failing."""

    def __init__(self, *, sleep: float = 0.0, fail: int = 0, during: Callable[[], None] | None = None) -> None:
        self.count = 0
        self.sleep = sleep
        self.fail = fail  # the first this-many calls raise
        self.during = during
        self.lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        """A test job"""
        with self.lock:
            self.count += 1
            number = self.count
        if self.during is not None:
            self.during()
        time.sleep(self.sleep)
        if number <= self.fail:
            raise RuntimeError(f"boom {number}")
        return {"call": number}


def _spec(func: Callable[[], dict[str, Any]], job_id: str = "tick", **kw: Any) -> JobSpec:
    kw.setdefault("misfire_grace_time", 30)
    return JobSpec(job_id, func, {"second": "*"}, **kw)


def _runs(app: Flask, job_id: str | None = "tick") -> list[JobRun]:
    with app.app_context():
        query = select(JobRun).order_by(JobRun.id)
        rows = list(db.session.scalars(query if job_id is None else query.where(JobRun.job_id == job_id)))
        db.session.expunge_all()
        return rows


def _client(app: Flask) -> Any:
    return app.extensions["redis_store"].client


def _key(job_id: str = "tick") -> str:
    return f"carbon:job-lock:{job_id}"


# --- the lock --------------------------------------------------------------------------------------


def test_the_lock_is_taken_once_and_released_only_by_its_owner(app: Flask) -> None:
    owner, other = JobLock(_client(app), "tick", 30), JobLock(_client(app), "tick", 30)
    assert owner.acquire() is True
    assert other.acquire() is False
    other.held = True  # even a confused runner that believes it holds the lock cannot free it
    assert other.release() is False
    assert other.extend() is False
    assert _client(app).get(_key()) == owner.token
    assert 0 < _client(app).pttl(_key()) <= 30_000
    assert owner.release() is True
    assert _client(app).get(_key()) is None
    assert other.acquire() is True


def test_a_lock_whose_owner_died_expires(app: Flask) -> None:
    crashed = JobLock(_client(app), "tick", 0.3)
    assert crashed.acquire()
    # The owner is gone: nothing extends or releases its lock.
    assert JobLock(_client(app), "tick", 30).acquire() is False
    time.sleep(0.45)
    assert JobLock(_client(app), "tick", 30).acquire() is True


def test_the_watchdog_extends_the_lock_while_the_job_runs_and_notices_losing_it(app: Flask) -> None:
    lock = JobLock(_client(app), "tick", 0.3)
    assert lock.acquire()
    with lock.kept_alive():
        time.sleep(1.0)  # more than three TTLs
        assert _client(app).get(_key()) == lock.token
        assert lock.lost is False
    time.sleep(0.45)  # the watchdog stopped with the block: the lock now expires
    assert _client(app).get(_key()) is None

    lock = JobLock(_client(app), "tick", 0.3)
    assert lock.acquire()
    with lock.kept_alive():
        _client(app).delete(_key())  # e.g. Redis restarted without persistence
        time.sleep(0.3)
        assert lock.lost is True


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs a Redis shared between processes (TEST_REDIS_URL)")
def test_a_crashed_process_leaves_a_lock_that_expires(app: Flask) -> None:
    code = ("import os, redis, sys; from backend.jobs.lock import JobLock; "
            "lock = JobLock(redis.Redis.from_url(sys.argv[1], decode_responses=True), 'tick', 1.0); "
            "assert lock.acquire(); print(lock.token, flush=True); os._exit(9)")
    done = subprocess.run([sys.executable, "-c", code, TEST_REDIS_URL],  # noqa: S603 (our own code)
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert done.returncode == 9, done.stderr
    assert _client(app).get(_key()) == done.stdout.strip()
    assert JobLock(_client(app), "tick", 30).acquire() is False
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _client(app).get(_key()) is not None:
        time.sleep(0.05)
    assert JobLock(_client(app), "tick", 30).acquire() is True


# --- one run ---------------------------------------------------------------------------------------


def test_a_run_is_recorded_with_its_outcome_counts_and_runner(app: Flask) -> None:
    calls = Calls()
    result = runner.run(app, _spec(calls), AT)
    assert (result.outcome, result.counts, calls.count) == ("ok", {"call": 1}, 1)
    [row] = _runs(app)
    assert (row.id, row.outcome, row.trigger, row.attempt, row.counts, row.error) == \
        (result.run_id, "ok", "schedule", 1, {"call": 1}, None)
    assert row.scheduled_for == AT and row.runner == runner.runner_name()
    assert row.started_at is not None and row.finished_at is not None and row.started_at <= row.finished_at
    assert _client(app).get(_key()) is None  # released


def test_a_replica_that_arrives_after_the_run_finished_does_not_run_it_again(app: Flask) -> None:
    """The subtle case: A ran the 01:00 run and released the lock before B (slow start, clock skew)
    even tried. B gets the lock, but the database says the run is done."""
    calls = Calls()
    assert runner.run(app, _spec(calls), AT).outcome == "ok"
    late = JobLock(_client(app), "tick", 30)
    assert late.acquire() and late.release()  # the lock alone would not have stopped B
    assert runner.run(app, _spec(calls), AT).outcome == runner.TAKEN
    assert calls.count == 1
    assert [r.outcome for r in _runs(app)] == ["ok"]
    assert runner.run(app, _spec(calls), AT + timedelta(seconds=1)).outcome == "ok"  # the next fire time runs
    assert calls.count == 2


def test_replicas_firing_the_same_run_together_run_it_once(app: Flask) -> None:
    calls = Calls(sleep=0.3)
    results = run_together(runner.run, [(app, _spec(calls), AT)] * 4)
    outcomes = Counter(r.outcome for r in results)
    assert outcomes["ok"] == 1 and outcomes["failed"] == 0, results
    assert outcomes["skipped"] + outcomes[runner.TAKEN] == 3
    assert calls.count == 1
    assert [r.outcome for r in _runs(app)] == ["ok"]


def test_a_failing_job_is_rolled_back_recorded_releases_its_lock_and_runs_next_time(app: Flask) -> None:
    def writes() -> None:
        db.session.add(Region(code="439999", name="写了一半", name_en="half-written", level="district",
                              parent_code="430600"))
        db.session.flush()

    calls = Calls(fail=1, during=writes)
    spec = _spec(calls)
    failed = runner.run(app, spec, AT)
    assert failed.outcome == "failed" and "RuntimeError: boom 1" in failed.error
    [row] = _runs(app)
    assert row.outcome == "failed" and "boom 1" in row.error and row.finished_at is not None
    assert _client(app).get(_key()) is None  # released: nothing waits for it to expire
    with app.app_context():
        assert db.session.get(Region, "439999") is None  # nothing half-written
    with app.app_context():  # the admins are told
        flag = db.session.scalars(select(Alert).where(Alert.kind == "job_failed")).one()
        assert (flag.subject, flag.severity, flag.resolved_at) == ("tick", "warning", None)
        assert flag.message == "job tick failed: RuntimeError: boom 1" and flag.details["run_id"] == row.id
        flag_id = flag.id
    assert runner.run(app, spec, AT).outcome == runner.TAKEN  # a failed run is not run again under its key…
    assert runner.run(app, spec, AT + timedelta(seconds=1)).outcome == "ok"  # …the next fire time runs it
    assert calls.count == 2
    with app.app_context():
        assert db.session.get(Region, "439999") is not None
        assert db.session.get(Alert, flag_id).resolved_at is not None  # and the flag goes once it works again


def test_a_failed_job_with_retries_is_tried_again_soon_as_its_own_run(app: Flask) -> None:
    calls = Calls(fail=1)
    spec = _spec(calls, "flaky", retry_delays=(60,), misfire_grace_time=None)
    sched = jobs.build(app, blocking=False, jobs=(spec,))
    before = utcnow()
    assert jobs._fire(app, spec, sched, AT).outcome == "failed"
    retry = sched.get_job("flaky:retry")
    assert retry is not None
    run_date = retry.trigger.run_date
    assert before + timedelta(seconds=59) <= run_date <= utcnow() + timedelta(seconds=61)
    result = retry.func(run_date)
    assert result.outcome == "ok" and calls.count == 2
    first, second = _runs(app, "flaky")
    assert (first.outcome, first.attempt, first.trigger) == ("failed", 1, "schedule")
    assert (second.outcome, second.attempt, second.trigger) == ("ok", 2, "retry")
    assert second.scheduled_for == run_date.astimezone(UTC)
    # The last attempt failing schedules no more.
    calls.fail, calls.count = 10, 0
    sched.remove_job("flaky:retry")
    assert jobs._fire(app, spec, sched, AT + timedelta(hours=1), trigger="retry", attempt=2).outcome == "failed"
    assert sched.get_job("flaky:retry") is None


def test_a_run_skipped_because_the_lock_was_busy_is_taken_over_by_whoever_runs_it(app: Flask) -> None:
    holder = JobLock(_client(app), "tick", 30)
    assert holder.acquire()
    calls = Calls()
    skipped = runner.run(app, _spec(calls), AT)
    assert (skipped.outcome, skipped.reason, calls.count) == ("skipped", runner.LOCK_BUSY, 0)
    [row] = _runs(app)
    assert row.outcome == "skipped" and "holds this job's lock" in row.error and row.started_at is None
    holder.release()
    assert runner.run(app, _spec(calls), AT).outcome == "ok"
    [row] = _runs(app)
    assert (row.outcome, row.error, calls.count) == ("ok", None, 1)


def test_redis_unreachable_means_no_run_recorded_as_skipped(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    store = app.extensions["redis_store"]
    real = store.client
    store.client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        calls = Calls()
        result = runner.run(app, _spec(calls), AT)
        assert (result.outcome, result.reason, calls.count) == ("skipped", runner.REDIS_DOWN, 0)
        [row] = _runs(app)
        assert row.outcome == "skipped" and "Redis is unreachable" in row.error
        manual = staff["admin1"].post("/api/v1/admin/jobs/housekeeping/run")
        assert manual.status_code == 503 and manual.get_json()["error"] == "lock_unavailable"
    finally:
        store.client = real
    assert runner.run(app, _spec(calls), AT + timedelta(seconds=1)).outcome == "ok"


def test_a_daily_run_stopped_by_an_outage_is_tried_again_soon(app: Flask) -> None:
    store = app.extensions["redis_store"]
    real = store.client
    calls = Calls()
    spec = _spec(calls, "daily", retry_delays=(60,), misfire_grace_time=None)
    sched = jobs.build(app, blocking=False, jobs=(spec,))
    store.client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    try:
        assert jobs._fire(app, spec, sched, AT).reason == runner.REDIS_DOWN
    finally:
        store.client = real
    retry = sched.get_job("daily:retry")
    assert retry is not None and retry.func(retry.trigger.run_date).outcome == "ok"
    assert calls.count == 1
    assert [(r.outcome, r.trigger, r.attempt) for r in _runs(app, "daily")] == [("skipped", "schedule", 1),
                                                                                 ("ok", "retry", 2)]


def test_each_run_is_counted_in_the_metrics(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    observability = pytest.importorskip("backend.observability")
    counted: list[tuple[str, str]] = []
    monkeypatch.setattr(observability, "record_job", lambda job, outcome, seconds: counted.append((job, outcome)))
    runner.run(app, _spec(Calls()), AT)
    runner.run(app, _spec(Calls()), AT)
    runner.run(app, _spec(Calls(fail=1)), AT + timedelta(seconds=1))
    holder = JobLock(_client(app), "tick", 30)
    assert holder.acquire()
    runner.run(app, _spec(Calls()), AT + timedelta(seconds=2))
    assert counted == [("tick", "success"), ("tick", "skipped"), ("tick", "failure"), ("tick", "skipped")]


def test_a_crashed_runners_row_is_marked_abandoned_by_the_next_lock_holder(app: Flask) -> None:
    crashed = JobLock(_client(app), "tick", 0.3)
    assert crashed.acquire()
    with app.app_context():
        assert jobruns.claim("tick", AT, trigger="schedule", attempt=1, runner="gone:1") is not None
        db.session.commit()
    calls = Calls()
    assert runner.run(app, _spec(calls), AT + timedelta(seconds=1)).reason == runner.LOCK_BUSY
    time.sleep(0.45)
    assert runner.run(app, _spec(calls), AT + timedelta(seconds=2)).outcome == "ok"
    rows = {r.scheduled_for: r for r in _runs(app)}
    assert rows[AT].outcome == "failed" and rows[AT].error == jobruns.ABANDONED
    assert rows[AT + timedelta(seconds=1)].outcome == "skipped"
    assert rows[AT + timedelta(seconds=2)].outcome == "ok"


def test_the_lock_is_extended_while_a_long_run_goes_on(app: Flask) -> None:
    seen: dict[str, Any] = {}

    def meanwhile() -> None:
        time.sleep(0.7)  # past two TTLs: without the watchdog the lock would be gone
        seen["other"] = runner.run(app, _spec(Calls(), lock_ttl=0.3), AT + timedelta(seconds=1))

    calls = Calls(sleep=1.0)
    thread = threading.Thread(target=meanwhile)
    thread.start()
    result = runner.run(app, _spec(calls, lock_ttl=0.3), AT)
    thread.join()
    assert result.outcome == "ok" and result.error is None
    assert seen["other"].reason == runner.LOCK_BUSY


# --- misfires and catch-up -------------------------------------------------------------------------


def test_a_run_later_than_its_grace_is_skipped(app: Flask) -> None:
    calls = Calls()
    spec = _spec(calls, misfire_grace_time=30)
    sched = jobs.build(app, blocking=False, jobs=(spec,))
    fired = utcnow() - timedelta(seconds=120)
    result = jobs._fire(app, spec, sched, fired)
    assert (result.outcome, result.reason, calls.count) == ("skipped", runner.LATE, 0)
    [row] = _runs(app)
    assert "after its fire time" in row.error
    daily = JobSpec("daily", calls, {"hour": 0, "minute": 5}, misfire_grace_time=None)
    assert jobs._fire(app, daily, sched, fired).outcome == "ok"  # no grace: late is better than never


def test_a_first_start_runs_the_daily_jobs_without_calling_them_missed(app: Flask,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A fresh database never had a scheduler: its first start runs each catch-up job once and says
    so quietly; a later start that finds a fire time nobody ran warns."""
    daily = JobSpec("daily", Calls(), {"hour": 0, "minute": 5}, misfire_grace_time=None, catch_up=True)
    other = JobSpec("other", Calls(), {"hour": 0, "minute": 10}, misfire_grace_time=None, catch_up=True)
    with caplog.at_level(logging.INFO, logger="backend.jobs.scheduler"):
        sched = jobs.build(app, blocking=False, jobs=(daily,))
        assert jobs._catch_up(app, sched, (daily,)) == ["daily"]
        job = sched.get_job("daily:catch-up")
        job.func(job.trigger.run_date)
        assert jobs._catch_up(app, jobs.build(app, blocking=False, jobs=(daily, other)), (daily, other)) == ["other"]
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "daily job" in r.getMessage()
            or "catching up" in r.getMessage()]
    assert said == [(logging.INFO, "first start on this database: running each daily job once now: daily"),
                    (logging.WARNING, "catching up runs missed while no scheduler ran: other")]


def test_the_previous_fire_time_is_found_in_china_time() -> None:
    spec = JobSpec("x", Calls(), {"hour": 0, "minute": 5})
    ten_am_china = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    assert jobs.previous_fire_time(spec, ten_am_china) == datetime(2026, 3, 9, 16, 5, tzinfo=UTC)
    hourly = JobSpec("y", Calls(), {"minute": 15})
    assert jobs.previous_fire_time(hourly, ten_am_china) == datetime(2026, 3, 10, 1, 15, tzinfo=UTC)


def test_at_start_a_missed_fire_time_is_caught_up_once(app: Flask) -> None:
    calls = Calls()
    daily = JobSpec("daily", calls, {"hour": 0, "minute": 5}, misfire_grace_time=None, catch_up=True)
    frequent = JobSpec("frequent", calls, {"minute": "*"}, misfire_grace_time=30)
    sched = jobs.build(app, blocking=False, jobs=(daily, frequent))
    assert jobs._catch_up(app, sched, (daily, frequent)) == ["daily"]
    job = sched.get_job("daily:catch-up")
    result = job.func(job.trigger.run_date)
    missed = jobs.previous_fire_time(daily, utcnow())
    assert result.outcome == "ok" and calls.count == 1
    [row] = _runs(app, "daily")
    assert (row.trigger, row.scheduled_for) == ("catch_up", missed)
    # A second start (or a replica starting too) finds it done.
    assert jobs._catch_up(app, jobs.build(app, blocking=False, jobs=(daily,)), (daily,)) == []


def test_the_scheduler_declares_every_job_with_a_cron_schedule(app: Flask) -> None:
    sched = jobs.build(app, blocking=False)
    declared = {job.id: job for job in sched.get_jobs()}
    assert set(declared) == {spec.id for spec in jobs.JOBS} >= {
        "housekeeping", "expire_points", "release_queued", "expire_holds", "expire_grants", "stats_rollup",
        "verify_ledger", "verify_audit", "review_ageing", "prune_job_runs", "rebuild_leaderboards"}
    assert str(declared["expire_points"].trigger) == "cron[hour='0', minute='5']"
    assert str(declared["expire_points"].trigger.timezone) == "Asia/Shanghai"
    for spec in jobs.JOBS:
        assert declared[spec.id].coalesce is True and declared[spec.id].max_instances == 1
        assert spec.description and spec.description != spec.id


def test_every_job_runs_on_an_empty_platform(app: Flask) -> None:
    for spec in jobs.JOBS:
        result = runner.run(app, spec, AT)
        assert result.outcome == "ok", (spec.id, result.error)
    assert {r.job_id for r in _runs(app, None)} == {spec.id for spec in jobs.JOBS}


# --- two schedulers against one Redis ---------------------------------------------------------------


@pytest.fixture
def second_app(database_url: str, tmp_path: Path, app: Flask) -> Iterator[Flask]:
    """Another instance on the same database and the same Redis (its own engine and connections)."""
    other = create_app(make_settings(database_url, tmp_path / "second"))
    if not TEST_REDIS_URL:  # the in-process store is per process: share the first one's, as one Redis
        other.extensions["redis_store"].client = _client(app)
    yield other
    other.extensions["database"].engine.dispose()


def test_two_scheduler_instances_run_each_scheduled_run_once(app: Flask, second_app: Flask,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, datetime, str]] = []
    real_run = runner.run

    def observed(an_app: Flask, spec: JobSpec, scheduled_for: datetime, **kw: Any) -> runner.RunResult:
        result = real_run(an_app, spec, scheduled_for, **kw)
        seen.append(("first" if an_app is app else "second", scheduled_for, result.outcome))
        return result

    monkeypatch.setattr(runner, "run", observed)
    calls = Calls(sleep=0.2)
    spec = _spec(calls)
    schedulers = [jobs.build(a, blocking=False, jobs=(spec,), catch_up=False) for a in (app, second_app)]
    for sched in schedulers:
        sched.start()
    time.sleep(4.2)
    for sched in schedulers:
        sched.shutdown(wait=True)

    by_key: dict[datetime, list[tuple[str, str]]] = {}
    for who, key, outcome in seen:
        by_key.setdefault(key, []).append((who, outcome))
    assert len(by_key) >= 3
    for key, fires in by_key.items():
        assert [outcome for _, outcome in fires].count("ok") == 1, (key, fires)
    assert sum(len(f) == 2 for f in by_key.values()) >= 2  # both fired the same runs
    rows = _runs(app)
    assert calls.count == len(by_key) == sum(r.outcome == "ok" for r in rows)
    assert sorted(r.scheduled_for for r in rows) == sorted(by_key)


WORKER_SECONDS = 7


def _worker(database_url: str, out: str, delay: str) -> None:
    """A scheduler process with a one-second test job (run by the test below)."""
    import backend.jobs.lock as lock_module

    app = create_app(make_settings(database_url, Path(out).parent / f"instance-{os.getpid()}"))
    pause = float(delay)
    real_acquire, real_run = lock_module.JobLock.acquire, runner.run
    log = open(out, "a", buffering=1)  # noqa: SIM115 (open for the life of the process)

    def slow_acquire(self: JobLock) -> bool:
        time.sleep(pause)  # a replica whose clock or start lags: it tries when the other has finished
        return real_acquire(self)

    def observed(an_app: Flask, spec: JobSpec, scheduled_for: datetime, **kw: Any) -> runner.RunResult:
        result = real_run(an_app, spec, scheduled_for, **kw)
        log.write(f"fire {scheduled_for.isoformat()} {result.outcome}\n")
        return result

    def tick() -> dict[str, int]:
        """The test job"""
        log.write(f"exec {os.getpid()}\n")
        time.sleep(0.2)
        return {"pid": os.getpid()}

    lock_module.JobLock.acquire = slow_acquire  # type: ignore[method-assign]
    runner.run = observed  # type: ignore[assignment]
    sched = jobs.build(app, blocking=True, jobs=(JobSpec("tick", tick, {"second": "*"}, misfire_grace_time=30),),
                       catch_up=False)
    signal.signal(signal.SIGTERM, lambda *_: sched.shutdown(wait=True))
    print("ready", flush=True)
    sched.start()


@pytest.mark.skipif(not (TEST_REDIS_URL and (TEST_DATABASE_URL or "").startswith("postgres")),
                    reason="needs PostgreSQL and Redis shared between processes")
def test_two_scheduler_processes_against_one_redis_run_each_scheduled_run_once(app: Flask, database_url: str,
                                                                               tmp_path: Path) -> None:
    outs = [tmp_path / "fast.log", tmp_path / "slow.log"]
    procs = [subprocess.Popen([sys.executable, "-m", "tests.test_scheduler", "worker",  # noqa: S603 (this file)
                               database_url, str(out), delay],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for out, delay in zip(outs, ("0", "0.5"), strict=True)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr
        time.sleep(WORKER_SECONDS)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    fast, slow = ([line.split() for line in out.read_text().splitlines()] for out in outs)
    fires: dict[str, list[str]] = {}
    for _, key, outcome in (line for line in fast + slow if line[0] == "fire"):
        fires.setdefault(key, []).append(outcome)
    assert len(fires) >= 4
    for key, outcomes in fires.items():
        assert outcomes.count("ok") == 1, (key, outcomes)
    executions = [line for line in fast + slow if line[0] == "exec"]
    rows = _runs(app)
    assert len(executions) == len(fires) == sum(r.outcome == "ok" for r in rows)
    assert {r.runner.split(":")[1] for r in rows if r.outcome == "ok"} <= {str(p.pid) for p in procs}
    # The slow replica took the lock after the fast one had released it, and the database stopped it.
    assert any(line[2] == runner.TAKEN for line in slow if line[0] == "fire"), slow
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(JobRun).where(JobRun.outcome == "running")) == 0


def test_the_scheduler_command_catches_up_at_start_and_stops_on_sigterm(app: Flask, database_url: str,
                                                                         tmp_path: Path) -> None:
    """`carbon-points scheduler` on a platform that never ran a job: every catch-up job runs once at
    start, keyed by its latest fire time; SIGTERM lets the runs finish and exits cleanly."""
    env = {**os.environ, "CARBON_ENV": "testing", "DATABASE_URL": database_url,
           "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
           "CARBON_INSTANCE_PATH": str(tmp_path / "instance")}
    env.pop("REDIS_URL", None)
    if TEST_REDIS_URL:
        env["REDIS_URL"] = TEST_REDIS_URL
    with socket.socket() as probe:  # a free port for the scheduler's own metrics
        probe.bind(("127.0.0.1", 0))
        env["SCHEDULER_METRICS_PORT"] = str(probe.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "scheduler"],
                            cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    catching_up = {spec.id for spec in jobs.JOBS if spec.catch_up}
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("scheduler running; jobs: ")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = {r.job_id for r in _runs(app, None) if r.trigger == "catch_up" and r.outcome != "running"}
            if done >= catching_up:
                break
            time.sleep(0.2)
        # The job outcomes are in the scheduler process: it serves them itself (no web worker can).
        # A run is counted just after its row is written: ask until every one is there.
        wanted = {f'carbon_job_runs_total{{job="{job_id}",outcome="success"}} 1.0' for job_id in catching_up}
        while True:
            exposed = urllib.request.urlopen(f"http://127.0.0.1:{env['SCHEDULER_METRICS_PORT']}/metrics",
                                             timeout=10).read().decode()
            if all(line in exposed for line in wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "scheduler stopped" in out
    assert all(line in exposed for line in wanted), exposed
    runs = [r for r in _runs(app, None) if r.trigger == "catch_up"]
    assert sorted(r.job_id for r in runs) == sorted(catching_up)  # once each
    assert all(r.outcome == "ok" for r in runs), [(r.job_id, r.error) for r in runs]
    now = utcnow()
    for r in runs:
        assert r.scheduled_for == jobs.previous_fire_time(jobs.find(r.job_id), now)


# --- admins: the jobs, their runs, a run on demand ---------------------------------------------------


def test_admins_see_the_jobs_with_their_schedule_next_and_last_run(app: Flask, staff: dict[str, Api]) -> None:
    admin = staff["admin1"]
    listed = admin.get("/api/v1/admin/jobs")
    assert listed.status_code == 200
    by_id = {job["id"]: job for job in listed.get_json()["jobs"]}
    assert set(by_id) == {spec.id for spec in jobs.JOBS}
    expire = by_id["expire_points"]
    assert expire["schedule"] == "cron[hour='0', minute='5']" and expire["timezone"] == "Asia/Shanghai"
    assert expire["catch_up"] is True and expire["misfire_grace_seconds"] is None
    assert expire["last_run"] is None and expire["last_success_at"] is None
    next_run = datetime.fromisoformat(expire["next_run_at"])
    assert utcnow() < next_run <= utcnow() + timedelta(days=1)
    assert next_run.astimezone(CHINA_STANDARD_TIME).strftime("%H:%M") == "00:05"

    ran = admin.post("/api/v1/admin/jobs/expire_points/run")
    assert ran.status_code == 200, ran.get_json()
    body = ran.get_json()
    assert (body["job"], body["outcome"], body["trigger"], body["counts"]) == \
        ("expire_points", "ok", "manual", {"entries": 0, "points": 0, "lots": 0})
    again = admin.get("/api/v1/admin/jobs").get_json()["jobs"]
    expire = next(job for job in again if job["id"] == "expire_points")
    assert expire["last_run"]["id"] == body["id"] and expire["last_success_at"] == body["finished_at"]
    with app.app_context():
        entry = db.session.scalars(select(AuditLog).where(AuditLog.action == "job.run")).one()
        assert entry.actor == "admin1" and entry.target_id == "expire_points" and entry.after["run_id"] == body["id"]


def test_a_run_on_demand_answers_what_happened(app: Flask, staff: dict[str, Api]) -> None:
    admin = staff["admin1"]
    assert admin.post("/api/v1/admin/jobs/nope/run").status_code == 404
    holder = JobLock(_client(app), "housekeeping", 30)
    assert holder.acquire()
    busy = admin.post("/api/v1/admin/jobs/housekeeping/run")
    assert busy.status_code == 409 and busy.get_json()["error"] == "job_running"
    holder.release()
    assert _runs(app, "housekeeping") == []  # nobody was scheduled: a refused manual run leaves no row
    for who in ("operator1", "auditor1"):
        assert staff[who].post("/api/v1/admin/jobs/housekeeping/run").status_code == 403
        assert staff[who].get("/api/v1/admin/jobs").status_code == 403
        assert staff[who].get("/api/v1/admin/jobs/runs").status_code == 403


def test_job_runs_are_paged_newest_first_and_filtered(app: Flask, staff: dict[str, Api]) -> None:
    calls = Calls(fail=1)
    for second in range(5):
        runner.run(app, _spec(calls), AT + timedelta(seconds=second))
    runner.run(app, _spec(Calls(), "other"), AT)
    admin = staff["admin1"]
    first = admin.get("/api/v1/admin/jobs/runs?limit=4").get_json()
    assert [r["job"] for r in first["items"]] == ["other", "tick", "tick", "tick"]
    rest = admin.get(f"/api/v1/admin/jobs/runs?limit=4&cursor={first['next_cursor']}").get_json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    failed = admin.get("/api/v1/admin/jobs/runs?outcome=failed").get_json()["items"]
    assert [(r["job"], r["scheduled_for"]) for r in failed] == [("tick", AT.isoformat())]
    assert "boom 1" in failed[0]["error"] and failed[0]["runner"] == runner.runner_name()
    bad = admin.get("/api/v1/admin/jobs/runs?outcome=great")
    assert bad.status_code == 422 and "outcome" in bad.get_json()["errors"]["query"]
    unknown = admin.get("/api/v1/admin/jobs/runs?job=tick")  # not a declared job
    assert unknown.status_code == 422 and "job" in unknown.get_json()["errors"]["query"]
    declared = admin.get("/api/v1/admin/jobs/runs?job=housekeeping")
    assert declared.status_code == 200 and declared.get_json()["items"] == []
    assert admin.get("/api/v1/admin/jobs/runs?limit=0").status_code == 422


def test_jobs_run_and_list_commands(app: Flask) -> None:
    def cli(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), obj={"app": app})

    ran = cli("jobs", "run", "expire_holds")
    assert ran.exit_code == 0, ran.output
    assert "job expire_holds: ok (expired 0)" in ran.output
    missing = cli("jobs", "run", "nope")
    assert missing.exit_code != 0 and "No job 'nope'" in missing.output
    listed = cli("jobs", "list")
    assert listed.exit_code == 0
    lines = {line.split()[0]: line for line in listed.output.splitlines()}
    assert set(lines) == {spec.id for spec in jobs.JOBS}
    assert "last: ok at" in lines["expire_holds"] and "never run" in lines["expire_points"]


def test_old_runs_are_pruned_but_each_jobs_latest_stays(app: Flask) -> None:
    for second in range(3):
        runner.run(app, _spec(Calls()), AT + timedelta(seconds=second))
    runner.run(app, _spec(Calls(), "other"), AT)
    with app.app_context():
        assert jobruns.prune(utcnow() + jobruns.RETENTION + timedelta(days=1)) == 2
        db.session.commit()
    assert [r.scheduled_for for r in _runs(app)] == [AT + timedelta(seconds=2)]
    assert len(_runs(app, "other")) == 1


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "worker":
    _worker(*sys.argv[2:])
