"""The hot reads (benchmarks/read.py): balance, ledger, boards. Fewer statements, the same answers.

Every figure is read from the database at request time: a spend shows at once. Statement counts
are asserted instead of timings (timings do not belong in tests): a balance read is the token's
check and one statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.exc import DBAPIError

from backend import db as db_module
from backend.app import create_app
from backend.db import db
from backend.models import LedgerAccount, Posting, QueuedCredit, Reduction
from backend.security import tokens
from tests.conftest import SECRET, Api, login, make_settings, make_staff, on_postgres, sign_up
from tests.test_ledger import _credit, _resident, _spend, _trip, _wallet, _zhuzhou_auditor


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """The SQL statements sent to the database meanwhile (transaction control left out)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            seen.append(statement)

    database = app.extensions["database"]
    engines = [e for e in (database.engine, database.read_only_engine) if e is not None]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def _recount(app: Flask, rid: int) -> dict[str, int]:
    """The balance as the tables have it, computed another way: postings, registry, queue."""
    with app.app_context():
        account = db.session.scalar(select(LedgerAccount.id).where(LedgerAccount.kind == "resident_wallet",
                                                                  LedgerAccount.resident_id == rid))
        points = db.session.scalar(select(func.coalesce(func.sum(Posting.amount), 0))
                                   .where(Posting.account_id == account))
        grams = db.session.scalar(select(func.coalesce(func.sum(Reduction.grams), 0))
                                  .where(Reduction.resident_id == rid, Reduction.status == "certified"))
        queued = db.session.scalar(select(func.coalesce(func.sum(QueuedCredit.points), 0)).where(
            QueuedCredit.account_id == account, QueuedCredit.released_entry_id.is_(None)))
        return {"points": int(points), "reduction_g": int(grams), "queued_points": int(queued)}


def test_balance_is_the_ledger_and_the_registry_at_every_step(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    assert person.get("/api/v1/me/balance").get_json() == {"points": 0, "reduction_g": 0, "queued_points": 0}
    reductions = [_trip(app, rid, km=km) for km in ("10", "20", "5")]
    _credit(app, *reductions)
    before = person.get("/api/v1/me/balance").get_json()
    assert before == _recount(app, rid) and before["points"] > 40
    _spend(app, _wallet(app, rid), 40, "shop-1")                     # a spend shows at once
    after_spend = person.get("/api/v1/me/balance").get_json()
    assert after_spend == _recount(app, rid) and after_spend["points"] == before["points"] - 40
    reversed_ = _zhuzhou_auditor(app, api).post(f"/api/v1/admin/reductions/{reductions[2]}/reverse",
                                                {"reason": "fraud"})
    assert reversed_.status_code == 200, reversed_.get_json()
    final = person.get("/api/v1/me/balance").get_json()              # a reversed reduction's grams leave
    assert final == _recount(app, rid) and final["reduction_g"] < after_spend["reduction_g"]


def test_a_balance_read_is_the_token_check_and_one_statement(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    _credit(app, _trip(app, rid))
    person.get("/api/v1/me/balance")                                 # warm: nothing first-time counted
    with statements(app) as seen:
        assert person.get("/api/v1/me/balance").status_code == 200
    assert len(seen) == 2, seen


def test_a_ledger_page_is_the_token_check_and_one_statement(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    _credit(app, *[_trip(app, rid, kind="walk", km="1", at=datetime(2026, 1, d, 1, tzinfo=UTC)) for d in (5, 6, 7)])
    with statements(app) as seen:
        page = person.get("/api/v1/me/ledger?limit=2").get_json()
    assert len(seen) == 2, seen
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = person.get(f"/api/v1/me/ledger?limit=2&cursor={page['next_cursor']}").get_json()
    ids = [p["id"] for p in page["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3 and rest["next_cursor"] is None
    assert all(p["reason"].startswith("Points for 步行 walking") for p in page["items"] + rest["items"])


def test_a_resident_with_no_wallet_yet_has_an_empty_ledger(api: Api) -> None:
    person, _ = _resident(api)
    assert person.get("/api/v1/me/ledger").get_json() == {"items": [], "next_cursor": None}


def test_roles_are_the_databases_not_the_tokens(app: Flask, api: Api) -> None:
    make_staff(app, "op-zz", "operator", scope="430200")
    operator = login(api, "op-zz")
    claims = tokens.decode_access_token(SECRET, operator.token or "")
    forged_roles = tokens.issue_access_token(SECRET, user_id=claims.user_id, token_version=claims.token_version,
                                             roles=frozenset({"admin"}), now=datetime.now(UTC), ttl=600)
    assert api.as_token(forged_roles).get("/api/v1/admin/users").status_code == 403
    assert operator.post("/api/v1/admin/partners", {}).status_code == 422  # an operator: to the validation
    with app.app_context():  # the rows changed under a live token (set_roles would also revoke it)
        db.session.execute(text("UPDATE user_roles SET role = 'auditor' WHERE user_id = :id"), {"id": claims.user_id})
        db.session.commit()
    assert operator.post("/api/v1/admin/partners", {}).status_code == 403  # operators only
    assert operator.get("/api/v1/admin/audit-log?limit=1").status_code == 200


def test_no_session_cookie_is_read_or_written(app: Flask, api: Api) -> None:
    person, _ = _resident(api)
    response = person.get("/api/v1/me/balance", headers={"Cookie": "session=forged"})
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    with app.test_request_context("/"):
        app.preprocess_request()
        with pytest.raises(RuntimeError):
            session["x"] = 1


# --- the read-only pool (PostgreSQL) -------------------------------------------------------------------


@on_postgres
def test_read_only_requests_run_without_a_transaction_and_cannot_write(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    with app.test_request_context("/"):
        db.read_only()
        connection = db.session.connection()
        assert connection.connection.driver_connection.autocommit is True
        assert db.session.scalar(text("SHOW default_transaction_read_only")) == "on"
        with pytest.raises(DBAPIError, match="read-only transaction"):
            db.session.execute(text("UPDATE residents SET display_name = 'x' WHERE id = :id"), {"id": rid})
        db.session.rollback()
        db.session.add(LedgerAccount(kind="resident_wallet", resident_id=rid, balance=0))
        with pytest.raises(RuntimeError, match="read-only request tried to write"):
            db.session.flush()


@on_postgres
def test_a_session_already_started_stays_on_the_writing_pool(app: Flask) -> None:
    with app.test_request_context("/"):
        db.session.execute(text("SELECT 1"))
        db.read_only()
        assert db.session.connection().connection.driver_connection.autocommit is False


@on_postgres
def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(app: Flask, api: Api,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    person, rid = _resident(api)
    _credit(app, _trip(app, rid))
    pings: list[bool] = []
    real_ping = db_module.ping
    monkeypatch.setattr(db_module, "ping", lambda conn: pings.append(real_ping(conn)) or pings[-1])
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE", 3600.0)         # in steady use: never pinged
    for _ in range(3):
        assert person.get("/api/v1/me/balance").status_code == 200
    assert pings == []
    with app.app_context():                                          # the server drops every pooled connection
        url = app.extensions["database"].engine.url
        killer = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with killer.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": url.database})
        killer.dispose()
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE", 0.0)            # idle long enough: pinged, replaced
    assert person.get("/api/v1/me/balance").get_json()["points"] == 52
    assert person.get("/api/v1/me/ledger").status_code == 200
    assert False in pings                                            # a dead one was found and not used


def test_sqlite_reads_stay_on_the_one_engine(app: Flask) -> None:
    if app.extensions["database"].engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    assert app.extensions["database"].read_only_engine is None
    with app.test_request_context("/"):
        db.read_only()
        assert db.session.scalar(text("SELECT 1")) == 1


@on_postgres
def test_only_the_marked_statements_are_prepared(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    _credit(app, _trip(app, rid))
    for _ in range(2):
        assert person.get("/api/v1/me/balance").status_code == 200
        assert person.get("/api/v1/me/ledger").status_code == 200
    with app.test_request_context("/"):
        db.read_only()
        db.session.execute(text("SELECT count(*) FROM residents"))  # unmarked: never prepared
        prepared = list(db.session.scalars(text("SELECT statement FROM pg_prepared_statements")))
    assert any("FROM users u" in s for s in prepared), prepared        # the token check
    assert any("FROM reductions WHERE resident_id" in s for s in prepared), prepared  # the balance
    assert any("FROM postings" in s for s in prepared), prepared         # the ledger page
    assert not any("count(*) FROM residents" in s for s in prepared), prepared


@on_postgres
def test_prepared_statements_can_be_switched_off(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path, database_prepared_statements=False))
    try:
        person = sign_up(Api(app.test_client()), "wang")
        for _ in range(2):
            assert person.get("/api/v1/me/balance").status_code == 200
        with app.test_request_context("/"):
            db.read_only()
            assert list(db.session.scalars(text("SELECT statement FROM pg_prepared_statements"))) == []
    finally:
        app.extensions["database"].dispose()


@on_postgres
def test_a_read_only_request_inside_a_longer_app_context_leaves_it_writable(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    with app.app_context():
        assert person.get("/api/v1/me/balance").status_code == 200          # read-only, in this context
        db.session.execute(text("UPDATE residents SET display_name = 'after' WHERE id = :id"), {"id": rid})
        db.session.commit()
    assert person.get("/api/v1/me").get_json()["display_name"] == "after"


@on_postgres
def test_an_app_on_sqlite_made_after_one_on_postgres_has_no_read_only_pool(database_url: str, tmp_path: Path) -> None:
    """One Database object serves every app a process makes (the test suite makes many)."""
    on_postgres_app = create_app(make_settings(database_url, tmp_path / "pg"))
    assert on_postgres_app.extensions["database"].read_only_engine is not None
    on_postgres_app.extensions["database"].dispose()
    on_sqlite = create_app(make_settings(f"sqlite:///{tmp_path / 'embedded.db'}", tmp_path / "lite"))
    try:
        assert on_sqlite.extensions["database"].read_only_engine is None
        with on_sqlite.test_request_context("/"):
            db.read_only()
            assert db.session.get_bind().dialect.name == "sqlite"
    finally:
        on_sqlite.extensions["database"].dispose()
