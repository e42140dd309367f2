"""A hypothesis state machine drives the ledger and checks every invariant after every step.

Credits, spends, expiries, reversals and (on PostgreSQL) concurrent writers on one wallet; after
each step `ledger verify` must find nothing, and no wallet may ever be below zero. Each example
starts from a fresh database cloned from the migrated template.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import select

from backend.app import create_app
from backend.db import db, utcnow
from backend.errors import Conflict
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import LedgerAccount, Merchant, Reduction, User
from backend.services import activities, ledger, residents, users
from backend.services.ledger_verify import verify
from tests.conftest import PASSWORD, TEST_DATABASE_URL, clone_database, make_settings, run_together

ON_POSTGRES = (TEST_DATABASE_URL or "").startswith("postgres")
MODES = {"bus_ride": 20, "bike_ride": 14, "walk": 4.5, "metro_ride": 35}


class LedgerMachine(RuleBasedStateMachine):
    template: str
    workdir: Path

    def __init__(self) -> None:
        super().__init__()
        self.url, self.cleanup = clone_database(self.template, self.workdir)
        self.app = create_app(make_settings(self.url, self.workdir / uuid.uuid4().hex))
        self.residents: list[int] = []
        self.wallets: dict[int, int] = {}
        self.credited: list[int] = []
        self.spends = 0
        with self.app.app_context():
            auditor = users.create_staff_user(f"sm-auditor-{uuid.uuid4().hex[:6]}", PASSWORD, ["auditor"],
                                              scope_region=None, actor=None)
            self.auditor_id = auditor.id
            db.session.commit()

    def teardown(self) -> None:
        self.app.extensions["database"].engine.dispose()
        self.cleanup()

    @initialize(count=st.integers(min_value=1, max_value=3))
    def people(self, count: int) -> None:
        with self.app.app_context():
            for _ in range(count):
                person = residents.sign_up(f"r{uuid.uuid4().hex[:10]}", PASSWORD, "居民", "430611")
                self.residents.append(person.id)
            db.session.commit()

    @rule(who=st.integers(min_value=0, max_value=2), kind=st.sampled_from(sorted(MODES)),
          km=st.decimals(min_value="0.5", max_value="15", places=2), days_ago=st.integers(min_value=0, max_value=40))
    def credit(self, who: int, kind: str, km: Any, days_ago: int) -> None:
        resident = self.residents[who % len(self.residents)]
        if kind == "walk":
            km = min(km, 3)
        minutes = max(5, int(float(km) / MODES[kind] * 60) + 1)
        at = datetime.now(CHINA_STANDARD_TIME) - timedelta(days=days_ago, hours=1)
        with self.app.app_context():
            _, reduction = activities.record_one(activity_type=kind, occurred_at=at, region="430611", source="demo",
                                                 data={"distance_km": str(km), "duration_min": minutes},
                                                 resident_id=resident)
            assert reduction is not None
            [result] = ledger.credit([reduction.id])
            db.session.commit()
            if result.status == "credited":
                self.credited.append(reduction.id)
                self.wallets[resident] = ledger.wallet_of_resident(resident)

    @precondition(lambda self: bool(self.wallets))
    @rule(pick=st.integers(min_value=0, max_value=10), points=st.integers(min_value=1, max_value=400))
    def spend(self, pick: int, points: int) -> None:
        account = sorted(self.wallets.values())[pick % len(self.wallets)]
        with self.app.app_context():
            before = ledger.balance_of(account)
            self.spends += 1
            try:
                _spend(account, points, f"sm-spend-{self.spends}")
                db.session.commit()
                assert points <= before
            except Conflict as exc:
                db.session.rollback()
                assert exc.error == "insufficient_points" and points > before

    @rule(days_ahead=st.integers(min_value=0, max_value=900))
    def expire(self, days_ahead: int) -> None:
        with self.app.app_context():
            ledger.expire(ledger.china_day(utcnow()) + timedelta(days=days_ahead))
            db.session.commit()

    @precondition(lambda self: bool(self.credited))
    @rule(pick=st.integers(min_value=0, max_value=50))
    def reverse(self, pick: int) -> None:
        reduction_id = self.credited.pop(pick % len(self.credited))
        with self.app.app_context():
            auditor = db.session.get(User, self.auditor_id)
            ledger.reverse_reduction(reduction_id, actor=auditor, reason="state machine")
            db.session.commit()
            assert db.session.get(Reduction, reduction_id).status == "reversed"

    @precondition(lambda self: ON_POSTGRES and bool(self.wallets))
    @rule(points=st.integers(min_value=1, max_value=60), writers=st.integers(min_value=2, max_value=4))
    def concurrent_spends(self, points: int, writers: int) -> None:
        account = sorted(self.wallets.values())[0]
        self.spends += 1
        base = self.spends

        def writer(i: int) -> None:
            with self.app.app_context():
                try:
                    _spend(account, points, f"sm-race-{base}-{i}")
                    db.session.commit()
                except Conflict:
                    db.session.rollback()

        outcomes = run_together(writer, [(i,) for i in range(writers)])
        assert all(o is None for o in outcomes), outcomes

    @invariant()
    def ledger_holds(self) -> None:
        with self.app.app_context():
            report = verify()
            assert report.breaches == [], report.breaches
            lowest = db.session.scalar(select(LedgerAccount.balance).order_by(LedgerAccount.balance).limit(1))
            assert lowest is None or lowest >= 0


def _merchant(region: str) -> int:
    """A shop to spend at (points at a merchant's settlement account are spent, for the ledger)."""
    found = db.session.scalar(select(Merchant.id).where(Merchant.region_code == region))
    if found is None:
        merchant = Merchant(name="测试商户", region_code=region)
        db.session.add(merchant)
        db.session.flush()
        found = merchant.id
    return found


def _spend(account: int, points: int, key: str) -> None:
    rules = ledger.rules_in_force("430611", utcnow())
    merchant = _merchant("430600")  # once: concurrent writers may each create one, and see the other's next
    holds = ledger.accounts_for("merchant_settlement", [merchant])[merchant]
    ledger.spend(account, points, holds, kind="spend", key=key, rule_version=rules, memo="state machine")


def test_the_ledger_holds_under_any_sequence(template_db: str, tmp_path: Path) -> None:
    LedgerMachine.template = template_db
    LedgerMachine.workdir = tmp_path
    machine = LedgerMachine.TestCase
    machine.settings = settings(max_examples=12 if ON_POSTGRES else 6, stateful_step_count=12, deadline=None,
                                database=None, suppress_health_check=[HealthCheck.too_slow])
    machine().runTest()


def test_expiry_date_of_points_earned_on_new_years_eve() -> None:
    from backend.rules.schema import expiry_date

    rules = {"expiry": {"policy": "end_of_next_year"}}
    assert expiry_date(rules, date(2026, 12, 31)) == date(2027, 12, 31)
    assert expiry_date({"expiry": {"policy": "days_after", "days": 30}}, date(2026, 1, 1)) == date(2026, 1, 31)
    assert expiry_date({"expiry": {"policy": "never"}}, date(2026, 1, 1)) is None
