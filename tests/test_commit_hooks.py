"""What runs "after the commit" runs after the real commit, never when a savepoint is released.

SQLAlchemy sends ``before_commit`` and ``after_commit`` for a savepoint too; the crediting path
uses one (an optimistic budget reservation), so every hook that must wait for the commit checks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from backend.db import db
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import LedgerAccount
from backend.services import activities, id_cache, leaderboards, ledger
from tests.conftest import Api, sign_up


def test_an_account_created_in_a_savepoint_that_rolls_back_is_not_remembered(app: Flask) -> None:
    with app.app_context():
        savepoint = db.session.begin_nested()
        phantom = ledger.accounts_for("issuance", ["430204"])["430204"]   # created inside the savepoint
        savepoint.rollback()
        db.session.commit()
        assert db.session.get(LedgerAccount, phantom) is None
        assert id_cache.get_many([("issuance", "430204")]) == {}            # not remembered
        real = ledger.accounts_for("issuance", ["430204"])["430204"]
        db.session.commit()
        assert db.session.get(LedgerAccount, real) is not None
        assert id_cache.get_many([("issuance", "430204")]) == {("issuance", "430204"): real}


def test_an_account_created_in_a_released_savepoint_of_a_rolled_back_transaction_is_not_remembered(
        app: Flask) -> None:
    with app.app_context():
        savepoint = db.session.begin_nested()
        phantom = ledger.accounts_for("issuance", ["430611"])["430611"]
        savepoint.commit()                                                   # released, not committed
        db.session.rollback()
        assert db.session.get(LedgerAccount, phantom) is None
        assert id_cache.get_many([("issuance", "430611")]) == {}


def test_an_account_found_before_a_savepoint_rolls_back_is_remembered(app: Flask) -> None:
    with app.app_context():
        found = ledger.accounts_for("issuance", ["430600"])["430600"]
        savepoint = db.session.begin_nested()
        ledger.accounts_for("issuance", ["430602"])
        savepoint.rollback()
        db.session.commit()
        assert id_cache.get_many([("issuance", "430600"), ("issuance", "430602")]) == {("issuance", "430600"): found}
        assert db.session.scalar(select(LedgerAccount.id).where(LedgerAccount.region_code == "430602",
                                                                LedgerAccount.kind == "issuance")) is None


def test_leaderboard_marks_wait_for_the_real_commit(app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    person = sign_up(api, "marker", region="430204")
    resident_id = person.get("/api/v1/me").get_json()["id"]
    marked: list[Any] = []
    real_apply = leaderboards._apply_marks
    monkeypatch.setattr(leaderboards, "_apply_marks", lambda boards, tx: (marked.append(boards),
                                                                          real_apply(boards, tx)))
    with app.app_context():
        savepoint = db.session.begin_nested()
        activities.record_one(activity_type="bus_ride", source="demo", region="430204", resident_id=resident_id,
                              occurred_at=datetime.now(CHINA_STANDARD_TIME) - timedelta(hours=2),
                              data={"distance_km": "5", "duration_min": 20})
        savepoint.commit()
        assert marked == []  # the outer transaction may still roll back, and a reader must not recount yet
        db.session.commit()
        assert len(marked) == 1 and all(resident_id in residents for residents in marked[0].values())
