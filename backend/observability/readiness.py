"""Readiness: can this instance serve? The database answers, Redis answers, the schema is at head.

Each check is one round trip on its own connection, outside any unit of work (no transaction is
left open, no SQLite write lock is taken), so ``/readyz`` stays fast and read-only.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from redis.exceptions import RedisError

from backend import migrate

log = logging.getLogger(__name__)


@dataclass
class Check:
    ok: bool
    detail: str
    ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "ms": round(self.ms, 1), **self.extra}


@dataclass
class Readiness:
    checks: dict[str, Check]
    required: tuple[str, ...]

    @property
    def failed(self) -> list[str]:
        return [name for name in self.required if not self.checks[name].ok]

    @property
    def ready(self) -> bool:
        return not self.failed

    @property
    def status(self) -> str:
        if not self.ready:
            return "not_ready"
        return "ready" if all(c.ok for c in self.checks.values()) else "degraded"


@functools.cache
def script_heads() -> frozenset[str]:
    """The migration heads shipped with this code: read once, they never change in a running process."""
    return frozenset(migrate.heads())


def check(app: Flask) -> Readiness:
    database, migrations = _database(app)
    checks = {"database": database, "migrations": migrations, "redis": _redis(app)}
    required = ("database", "migrations", "redis") if app.extensions["settings"].readyz_requires_redis \
        else ("database", "migrations")
    return Readiness(checks, required)


def _timed(probe: Callable[[], Any]) -> tuple[Any, float, BaseException | None]:
    started = time.perf_counter()
    try:
        return probe(), (time.perf_counter() - started) * 1000, None
    except Exception as exc:  # any failure is an answer: "not reachable", named
        return None, (time.perf_counter() - started) * 1000, exc


def _database(app: Flask) -> tuple[Check, Check]:
    engine = app.extensions["database"].engine

    def probe() -> set[str]:
        # The DBAPI connection itself: an SQLAlchemy one would BEGIN (IMMEDIATE on SQLite).
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            try:
                cursor.execute("SELECT version_num FROM alembic_version")
                return {row[0] for row in cursor.fetchall()}
            except Exception:
                return set()  # never migrated: no version table
            finally:
                cursor.close()
        finally:
            raw.rollback()
            raw.close()

    current, ms, error = _timed(probe)
    if error is not None:
        return (Check(False, f"unreachable: {_describe(error)}", ms),
                Check(False, "not checked: the database is unreachable"))
    heads = script_heads()
    at_head = current == set(heads)
    detail = "at head" if at_head else ("not migrated" if not current else "behind or ahead of this code's head")
    migrations = Check(at_head, detail, extra={"current": sorted(current), "head": sorted(heads)})
    read_only = app.extensions["database"].read_only_engine
    if read_only is None:
        return Check(True, "reachable", ms), migrations
    # The read-only pool (PostgreSQL) connects with its own startup option: a pooler may refuse it
    # (every read-only request would fail) or drop it (writes there would no longer be refused).
    setting, more_ms, error = _timed(lambda: _read_only_setting(read_only))
    if error is not None:
        return Check(False, f"read-only pool unreachable: {_describe(error)}", ms + more_ms), migrations
    if setting != "on":
        return Check(False, "read-only pool connections accept writes (default_transaction_read_only is off)",
                     ms + more_ms), migrations
    return Check(True, "reachable", ms + more_ms), migrations


def _read_only_setting(engine: Any) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("SHOW default_transaction_read_only").scalar())


def _redis(app: Flask) -> Check:
    from backend.extensions import limiter

    store = app.extensions["redis_store"]
    answered, ms, error = _timed(store.ping)
    extra = {"rate_limits": "per-process fallback" if limiter.on_fallback else "shared"}
    if store.embedded:
        extra["mode"] = "in-process store"
    if error is not None or not answered:
        reason = _describe(error) if isinstance(error, RedisError) else "no answer"
        return Check(False, f"unreachable: {reason}", ms, extra)
    return Check(True, "reachable", ms, extra)


def _describe(error: BaseException | None) -> str:
    """The kind of failure only: /readyz is unauthenticated, so host names and messages go to the log."""
    if error is None:
        return "unknown error"
    log.info("readiness check failed: %s: %s", type(error).__name__, error)
    return type(error).__name__
