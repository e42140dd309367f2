"""The scheduler: jobs as data, run in-process (embedded mode) or as its own process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from backend.jobs import housekeeping, points

log = logging.getLogger(__name__)
TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: Callable[[], dict[str, Any]]
    trigger: str
    trigger_args: dict[str, Any] = field(default_factory=dict)
    # A run missed while the scheduler was down runs once on start, if within this many seconds.
    misfire_grace_time: int = 3600


JOBS: tuple[JobSpec, ...] = (
    JobSpec("housekeeping", housekeeping.run, "interval", {"minutes": 10}),
    # Lots are spendable through their last day: expire just after midnight in China.
    JobSpec("expire_points", points.expire_points, "cron", {"hour": 0, "minute": 5}),
    # A new budget period starts at midnight too; releasing is cheap when nothing waits.
    JobSpec("release_queued", points.release_queued, "cron", {"minute": 15}),
    # A reservation nobody confirmed gives its points back within a minute of its hold ending.
    JobSpec("expire_holds", points.expire_holds, "interval", {"minutes": 1}, misfire_grace_time=60),
    JobSpec("expire_grants", points.expire_grants, "cron", {"minute": 20}),
)


def _runner(app: Flask, spec: JobSpec) -> Callable[[], None]:
    def run() -> None:
        with app.app_context():
            try:
                counts = spec.func()
                log.info("job %s done: %s", spec.id, counts)
            except Exception:
                log.exception("job %s failed", spec.id)

    return run


def build(app: Flask, *, blocking: bool) -> BaseScheduler:
    scheduler: BaseScheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone=TIMEZONE)
    for spec in JOBS:
        scheduler.add_job(
            _runner(app, spec), spec.trigger, id=spec.id, replace_existing=True, coalesce=True,
            max_instances=1, misfire_grace_time=spec.misfire_grace_time, **spec.trigger_args,
        )
    return scheduler
