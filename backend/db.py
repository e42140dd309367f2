"""Engine, session and declarative base.

A thin layer instead of Flask-SQLAlchemy: services, the CLI, the scheduler and the benchmarks all
need the same session outside a request, and bulk paths need the Core engine directly. One session
per application context; the request boundary (``backend.app``) commits, services only flush.
"""

from __future__ import annotations

import weakref
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_app_context
from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


BIGINT_MAX = 2**63 - 1  # the largest id a BIGINT column holds


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes stored in UTC; naive input is a programming error."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def statement_checked(target: str) -> ForeignKey:
    """A reference that PostgreSQL checks once per INSERT statement (``carbon_check_references``,
    migrations 0004 and 0009) rather than per row: for the bulk ledger and ingestion tables, whose
    rows name rows the database never lets be deleted or renumbered. SQLite keeps it as an
    ordinary foreign key."""
    return ForeignKey(target, info={"checked_per_statement": True})


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _configure_sqlite(engine: Engine) -> None:
    """Foreign keys on, WAL, and BEGIN IMMEDIATE so writers queue instead of deadlocking.

    SQLite has no row locks; taking the write lock at BEGIN is what makes
    read-check-write sequences safe in the embedded mode.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=15000")
        if ":memory:" not in str(engine.url):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # No server-side prepared statements: psycopg prepares a statement after its fifth run, and
    # PostgreSQL may then reuse a generic plan, which for the bulk paths' ``column = ANY(:ids)``
    # searches the array row by row instead of hashing it (a 1,000-id lookup went from 7 to 68 ms).
    connect_args = kwargs.setdefault("connect_args", {})
    connect_args.setdefault("prepare_threshold", None)
    return create_engine(url, **kwargs)


class Database:
    """Holds the engine and hands out one session per application context."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._factory: sessionmaker[Session] | None = None

    def init_app(self, app: Flask) -> None:
        url = app.config["DATABASE_URL"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            # Relative SQLite paths are relative to where the service runs; make the folder.
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(url)
        self._factory = sessionmaker(bind=self.engine, expire_on_commit=False, autoflush=True)
        from backend.models.ledger import check_balanced_flush

        event.listen(self._factory, "before_flush", check_balanced_flush)
        app.extensions["database"] = self
        app.teardown_appcontext(self._teardown)

    @property
    def session(self) -> Session:
        if not has_app_context():
            raise RuntimeError("database session used outside an application context")
        session = g.get("_db_session")
        if session is None:
            assert self._factory is not None, "Database.init_app was not called"
            session = g._db_session = self._factory()
        return session

    def session_started(self) -> bool:
        return has_app_context() and g.get("_db_session") is not None

    def _teardown(self, _exc: BaseException | None) -> None:
        session = g.pop("_db_session", None)
        if session is not None:
            session.rollback()
            session.close()


db = Database()


_DATABASE_KEYS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def database_key() -> str:
    """The current session's database, for per-process caches keyed by database (one process may
    serve several: the test suite). Rendering an engine's URL each time cost more than the lookups."""
    bind = db.session.get_bind()
    key = _DATABASE_KEYS.get(bind)
    if key is None:
        key = _DATABASE_KEYS[bind] = str(bind.url)
    return key
