"""Prometheus metrics: what an operator graphs and alerts on.

Labels are closed vocabularies (Flask endpoint names, not raw paths; fixed statuses, sources and
job outcomes), so the number of series stays bounded whatever clients send.

Under gunicorn each worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics`` sums the files of every worker, live or dead (``backend/gunicorn_conf.py`` sets the
directory before any worker starts, empties it at start and marks exited workers). Without that
variable the values of this process are served, plus its CPU and memory.

Counts that describe written data (activities, points) are recorded when the transaction that
wrote them commits: a batch that rolls back counts nothing, so the metrics agree with the ledger.
"""

from __future__ import annotations

import functools
import hmac
import os
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

ACTIVITY_STATUSES = frozenset({"credited", "pending_review", "rejected", "duplicate"})
# Where points or activities come from: ingestion by reporter, and the other ways points are issued.
SOURCES = frozenset({"partner", "self", "import", "review", "release", "demo"})
JOB_OUTCOMES = frozenset({"success", "failure", "skipped"})
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_PENDING = "carbon_metrics_on_commit"


class Metrics:
    """The platform's metrics, registered in one registry per process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http_seconds = Histogram(
            "carbon_http_request_duration_seconds", "HTTP requests by Flask endpoint, method and status class",
            ["endpoint", "method", "status"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.activities = Counter(
            "carbon_activities", "Reported activities by outcome (committed batches only)",
            ["source", "status"], registry=registry)
        self.points = Counter(
            "carbon_points_issued", "Points credited to wallets (committed only)", ["source"], registry=registry)
        self.job_runs = Counter("carbon_job_runs", "Scheduled job runs by outcome", ["job", "outcome"],
                                registry=registry)
        self.job_seconds = Histogram(
            "carbon_job_duration_seconds", "Scheduled job run time", ["job"], registry=registry,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600))
        self.job_last_success = Gauge(
            "carbon_job_last_success_timestamp_seconds", "When each job last succeeded (unix time)", ["job"],
            registry=registry, multiprocess_mode="max")
        self.redis_outages = Counter(
            "carbon_redis_outages", "Times a process found Redis unreachable and switched to the database",
            registry=registry)


def multiprocess_dir() -> str | None:
    """The directory of multi-process mode, read as prometheus_client itself reads it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@functools.cache
def get() -> Metrics:
    """This process's metrics, created on first use (not at import)."""
    registry = CollectorRegistry()
    if multiprocess_dir() is None:
        from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR

        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return Metrics(registry)


def exposition() -> tuple[bytes, str]:
    """The text exposition format of every worker's metrics (or this process's)."""
    metrics = get()
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def refused(authorization: str, token: str) -> str | None:
    """Why an ``Authorization`` header does not open /metrics closed by ``token``
    (``token_missing``, ``token_invalid``), or None when it does."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "token_missing"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "token_invalid"
    return None


def serve(port: int, *, host: str = "0.0.0.0", token: str | None = None) -> Any:  # noqa: S104 (scraped from outside)
    """Serve ``/metrics`` of this process on ``host:port`` from a daemon thread: for the scheduler,
    whose job metrics no web worker can see. Returns the server (``shutdown()`` stops it). With
    ``token``, only ``Authorization: Bearer <token>`` reads it, as on the web's /metrics."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: metrics are at /metrics\n"]
        if token is not None and refused(environ.get("HTTP_AUTHORIZATION", ""), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"send Authorization: Bearer <METRICS_TOKEN>\n"]
        body, content_type = exposition()
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server(host, port, app, ThreadingWSGIServer, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True).start()
    return server


# --- recording ------------------------------------------------------------------------------------


def observe_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    get().http_seconds.labels(
        endpoint=endpoint or "unmatched",
        method=method if method in HTTP_METHODS else "other",
        status=f"{status // 100}xx" if 100 <= status <= 599 else "other",
    ).observe(seconds)


def activities_reported(source: str, results: Iterable[Mapping[str, Any]]) -> None:
    """Count a batch's per-item answers, and the points they credited, once its transaction commits."""
    _check(source, SOURCES, "source")
    statuses: Tally[str] = Tally()
    points = 0
    for item in results:
        status = item.get("status")
        if status in ACTIVITY_STATUSES:
            statuses[status] += 1
        if status == "credited":
            points += int(item.get("points") or 0)
    metrics = get()

    def apply() -> None:
        for status, count in statuses.items():
            metrics.activities.labels(source=source, status=status).inc(count)
        if points:
            metrics.points.labels(source=source).inc(points)

    on_commit(apply)


def points_issued(points: int, source: str) -> None:
    """Count points credited outside ingestion (review approvals, released queue), on commit."""
    _check(source, SOURCES, "source")
    if points < 0:
        raise ValueError("points issued cannot be negative")
    if points:
        counter = get().points.labels(source=source)
        on_commit(lambda: counter.inc(points))


def record_job(job_id: str, outcome: str, seconds: float) -> None:
    """One run of a scheduled job: ``outcome`` is success, failure or skipped (another scheduler
    held its lock). Called by the scheduler around every run."""
    _check(outcome, JOB_OUTCOMES, "outcome")
    if not job_id or len(job_id) > 64:
        raise ValueError("job_id must be a job's id")
    metrics = get()
    metrics.job_runs.labels(job=job_id, outcome=outcome).inc()
    metrics.job_seconds.labels(job=job_id).observe(max(seconds, 0.0))
    if outcome == "success":
        metrics.job_last_success.labels(job=job_id).set_to_current_time()


def redis_outage() -> None:
    get().redis_outages.inc()


def _check(value: str, allowed: frozenset[str], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(sorted(allowed))}, got {value!r}")


# --- counting on commit ---------------------------------------------------------------------------


def on_commit(apply: Callable[[], None]) -> None:
    """Run ``apply`` when the current unit of work commits; forget it if it rolls back.

    Outside an application context (a script) there is no unit of work: apply at once.
    """
    from flask import has_app_context

    from backend.db import db

    if not has_app_context():
        apply()
        return
    _listen()
    db.session.info.setdefault(_PENDING, []).append(apply)


@functools.cache
def _listen() -> None:
    event.listen(Session, "after_commit", _apply_pending)
    event.listen(Session, "after_transaction_end", _drop_pending)


def _apply_pending(session: Session) -> None:
    # SQLAlchemy also sends after_commit when a savepoint is released: only the outer commit counts.
    if session.in_nested_transaction():
        return
    for apply in session.info.pop(_PENDING, ()):
        apply()


def _drop_pending(session: Session, transaction: SessionTransaction) -> None:
    # A committed outer transaction has applied its list already (after_commit runs first);
    # whatever is left belongs to one that rolled back. Savepoints decide nothing.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
