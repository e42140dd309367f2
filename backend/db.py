"""Engine, session and declarative base.

A thin layer instead of Flask-SQLAlchemy: services, the CLI, the scheduler and the benchmarks all
need the same session outside a request, and bulk paths need the Core engine directly. One session
per application context; the request boundary (``backend.app``) commits, services only flush.
"""

from __future__ import annotations

import time
import weakref
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_app_context
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, MetaData, create_engine, event, exc
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


# A pooled PostgreSQL connection idle this long is pinged before it is handed out; one in steady
# use is not. See ``_ping_when_idle``.
PING_AFTER_IDLE = 1.0  # seconds


# Execution option: prepare this statement on the server (PostgreSQL), see ``_prepare_when_asked``.
PREPARE = "carbon_prepare"


def make_engine(url: str, *, read_only: bool = False, prepare: bool = True, **kwargs: Any) -> Engine:
    """An engine for ``url``. ``read_only`` (PostgreSQL only): autocommit connections on which
    PostgreSQL itself refuses every write (``default_transaction_read_only``), for requests that
    only read: no BEGIN and COMMIT round trips, and a write there is an error, never a commit.
    ``prepare``: statements marked with the ``PREPARE`` execution option are prepared."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # Hand out the most recently used connection: under load a few stay hot (and are never
    # pinged), the rest idle and are pinged or closed.
    kwargs.setdefault("pool_use_lifo", True)
    # No server-side prepared statements: psycopg prepares a statement after its fifth run, and
    # PostgreSQL may then reuse a generic plan, which for the bulk paths' ``column = ANY(:ids)``
    # searches the array row by row instead of hashing it (a 1,000-id lookup went from 7 to 68 ms).
    connect_args = kwargs.setdefault("connect_args", {})
    connect_args.setdefault("prepare_threshold", None)
    if read_only:
        kwargs["isolation_level"] = "AUTOCOMMIT"
        connect_args["options"] = (connect_args.get("options", "") + " -c default_transaction_read_only=on").strip()
    engine = create_engine(url, **kwargs)
    _arrays_in_binary(engine)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    if prepare:
        _prepare_when_asked(engine)
    return engine


def _arrays_in_binary(engine: Engine) -> None:
    """Lists go to the server as binary arrays. psycopg's default for a list is its text form,
    built in Python with a regular expression per element: for the bulk paths' 1,000-element
    ``= ANY(:ids)`` and ``unnest`` parameters that was three times the cost of the binary form
    (1.2 against 0.4 ms per array, round trip included). The one thing lost is a list of mixed
    types, which nothing here sends."""

    @event.listens_for(engine, "connect")
    def _binary_lists(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)


def _prepare_when_asked(engine: Engine) -> None:
    """Server-side prepared statements for the statements marked ``PREPARE`` only.

    Every request runs the token check, and the hottest read its one statement; PostgreSQL spends
    more on parsing and planning them than on running them (prepared: 0.15 ms of its CPU for
    both instead of 0.42). Their generic plans are the right ones (primary-key and index lookups).
    Everything else stays unprepared (see ``make_engine``: a bulk path's generic plan can be far
    worse). psycopg keeps the prepared statements per connection, by SQL text.
    """

    @event.listens_for(engine, "before_cursor_execute")
    def _mark(_conn: Any, cursor: Any, _statement: str, _parameters: Any, context: Any, _many: bool) -> None:
        cursor.connection.prepare_threshold = 0 if context.execution_options.get(PREPARE) else None


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections that sat idle, without a round trip on a
    connection in steady use (``pool_pre_ping`` pings on every checkout: one of the five round
    trips of a balance read).

    A connection goes stale while idle: the server restarted, a proxy or firewall dropped it. One
    idle for ``PING_AFTER_IDLE`` seconds or more is pinged when checked out and, if dead, replaced
    (the pool retries the checkout). A restart takes longer than that, so a connection checked in
    before a restart is always pinged after it. One that fails while in use is a disconnect
    SQLAlchemy detects: it invalidates the whole pool, as it would with ``pool_pre_ping``.
    """

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_AFTER_IDLE:
            return
        if not ping(dbapi_conn):
            raise exc.DisconnectionError("a pooled connection was closed while it was idle")


def ping(dbapi_conn: Any) -> bool:
    """One round trip on a DBAPI connection; False when it is dead (outside any transaction:
    an autocommit query, restoring the connection's mode after)."""
    autocommit = dbapi_conn.autocommit
    try:
        dbapi_conn.autocommit = True
        dbapi_conn.execute("SELECT 1")
        dbapi_conn.autocommit = autocommit
        return True
    except Exception:  # any failure means: do not hand this connection out
        return False


class Database:
    """Holds the engine and hands out one session per application context."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.read_only_engine: Engine | None = None  # PostgreSQL only
        self._factory: sessionmaker[Session] | None = None
        self._read_only_factory: sessionmaker[Session] | None = None

    def init_app(self, app: Flask) -> None:
        url = app.config["DATABASE_URL"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            # Relative SQLite paths are relative to where the service runs; make the folder.
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        prepare = bool(app.config.get("DATABASE_PREPARED_STATEMENTS", True))
        self.engine = make_engine(url, prepare=prepare)
        self.read_only_engine, self._read_only_factory = None, None
        self._factory = sessionmaker(bind=self.engine, expire_on_commit=False, autoflush=True)
        from backend.models.ledger import check_balanced_flush

        event.listen(self._factory, "before_flush", check_balanced_flush)
        if self.engine.dialect.name == "postgresql":
            # Its own small pool: connections are checked out one per read-only request.
            self.read_only_engine = make_engine(url, read_only=True, prepare=prepare, pool_size=5, max_overflow=20)
            self._read_only_factory = sessionmaker(bind=self.read_only_engine, expire_on_commit=False,
                                                   autoflush=False)
            event.listen(self._read_only_factory, "before_flush", _refuse_flush)
        app.extensions["database"] = self
        app.teardown_request(self._end_read_only)
        app.teardown_appcontext(self._teardown)

    def dispose(self) -> None:
        for engine in (self.engine, self.read_only_engine):
            if engine is not None:
                engine.dispose()

    @property
    def session(self) -> Session:
        if not has_app_context():
            raise RuntimeError("database session used outside an application context")
        session = g.get("_db_session")
        if session is None:
            assert self._factory is not None, "Database.init_app was not called"
            read_only_factory = self._read_only_factory if g.get("_db_read_only") else None
            read_only = read_only_factory is not None
            session = g._db_session = (read_only_factory or self._factory)()
            session.info["read_only"] = read_only
        return session

    def read_only(self) -> None:
        """This application context only reads: its session, when it starts, uses the read-only
        pool (PostgreSQL: autocommit, every write refused by the server; SQLite: the usual one).
        Called before anything touches the session; once one has started it is kept."""
        if g.get("_db_session") is None:
            g._db_read_only = True

    def session_started(self) -> bool:
        return has_app_context() and g.get("_db_session") is not None

    def _end_read_only(self, _exc: BaseException | None) -> None:
        """A read-only session ends with its request, even when the app context goes on (a test
        that sends requests inside ``app.app_context()``): what comes next may write."""
        g.pop("_db_read_only", None)
        session = g.get("_db_session")
        if session is not None and session.info.get("read_only"):
            self._teardown(None)

    def _teardown(self, _exc: BaseException | None) -> None:
        session = g.pop("_db_session", None)
        if session is not None:
            session.rollback()
            session.close()


def _refuse_flush(session: Session, *_args: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a read-only request tried to write")


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
