"""The audit log: hash-chained, append-only in the database itself, breaks detected and located."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from backend.db import db
from backend.services import audit
from tests.conftest import Api, on_postgres, run_together


def _record(app: Flask, n: int) -> list[int]:
    """Append n entries after whatever the install wrote; their ids."""
    with app.app_context():
        ids = [audit.record("test.action", "thing", i, actor=None, after={"n": i, "name": "岳阳"}).id
               for i in range(n)]
        db.session.commit()
    return ids


def _verify(app: Flask) -> audit.ChainReport:
    with app.app_context():
        return audit.verify_chain(db.session)


def test_admin_actions_are_chained(app: Flask, staff: dict[str, Api]) -> None:
    staff["operator1"].post("/api/v1/admin/merchants", {"name": "店", "region": "430602"})
    entries = staff["auditor1"].get("/api/v1/admin/audit-log").get_json()["items"]
    assert entries[0]["action"] == "merchant.create" and entries[0]["actor"] == "operator1"
    assert entries[0]["prev_hash"] == entries[1]["hash"]
    report = staff["auditor1"].get("/api/v1/admin/audit-log/verify").get_json()
    assert report == {"ok": True, "checked": len(entries), "broken_at": None, "problem": None}


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'mallory' WHERE id = {id}",
                                       "DELETE FROM audit_log WHERE id = {id}"])
def test_the_database_refuses_to_change_the_log(app: Flask, statement: str) -> None:
    ids = _record(app, 3)
    with app.app_context(), pytest.raises(DatabaseError, match="append-only"):
        db.session.execute(text(statement.format(id=ids[1])))
    assert _verify(app).ok


@on_postgres
def test_postgres_refuses_truncate(app: Flask) -> None:
    _record(app, 1)
    with app.app_context(), pytest.raises(DatabaseError, match="append-only"):
        db.session.execute(text("TRUNCATE audit_log"))


def _bypass_triggers(app: Flask, statement: str) -> None:
    """What an attacker with DDL rights could do: the chain must still give them away."""
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            db.session.execute(text("DROP TRIGGER audit_log_no_update"))
            db.session.execute(text("DROP TRIGGER audit_log_no_delete"))
        db.session.execute(text(statement))
        db.session.commit()


def test_an_edited_row_is_found(app: Flask) -> None:
    ids = _record(app, 5)
    _bypass_triggers(app, f"UPDATE audit_log SET reason = 'nothing to see' WHERE id = {ids[2]}")
    report = _verify(app)
    assert (report.ok, report.broken_at, report.checked) == (False, ids[2], ids[2] - 1)
    assert "edited" in (report.problem or "")


def test_a_deleted_row_is_found(app: Flask) -> None:
    ids = _record(app, 5)
    _bypass_triggers(app, f"DELETE FROM audit_log WHERE id = {ids[3]}")
    report = _verify(app)
    assert (report.ok, report.broken_at) == (False, ids[3])


def test_a_deleted_tail_is_found(app: Flask) -> None:
    ids = _record(app, 5)
    _bypass_triggers(app, f"DELETE FROM audit_log WHERE id = {ids[-1]}")
    report = _verify(app)
    assert (report.ok, report.broken_at) == (False, ids[-1])
    assert "head" in (report.problem or "")


def test_the_cli_exits_non_zero_on_a_break(app: Flask) -> None:
    from click.testing import CliRunner

    from backend.cli import main

    ids = _record(app, 3)
    runner = CliRunner()
    assert f"audit chain ok: {ids[-1]} entries" in runner.invoke(main, ["audit", "verify"], obj={"app": app}).output
    _bypass_triggers(app, f"UPDATE audit_log SET actor = 'x' WHERE id = {ids[1]}")
    result = runner.invoke(main, ["audit", "verify"], obj={"app": app})
    assert result.exit_code == 1
    assert f"BROKEN at entry {ids[1]}" in result.output


@on_postgres
def test_concurrent_writers_never_fork_the_chain(app: Flask) -> None:
    before = _verify(app).checked

    def writer() -> None:
        with app.app_context():
            for i in range(10):
                audit.record("test.concurrent", "thing", i, actor=None)
                db.session.commit()

    assert run_together(writer, [()] * 8) == [None] * 8
    report = _verify(app)
    assert report.ok and report.checked == before + 80
