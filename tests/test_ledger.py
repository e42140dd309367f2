"""The points ledger: credit, caps, budgets, lots and expiry, spending, reversal, the database's guards."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError, IntegrityError

from backend.db import db, utcnow
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import (
    Clawback,
    JournalEntry,
    LedgerAccount,
    Lot,
    Merchant,
    Posting,
    QueuedCredit,
    Reduction,
    ReductionEvaluation,
)
from backend.services import activities, ledger
from backend.services.ledger_verify import verify
from tests.conftest import Api, on_postgres, run_together, sign_up

MORNING = datetime.now(CHINA_STANDARD_TIME).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=1)


def _trip(app: Flask, resident_id: int, kind: str = "bus_ride", km: str = "10", at: datetime = MORNING,
          region: str = "430204", **data: Any) -> int:
    """Record one activity (Shifeng by default: the Shifeng rules) and return its reduction id."""
    with app.app_context():
        evidence = data or {"distance_km": km, "duration_min": 30}
        _, reduction = activities.record_one(activity_type=kind, occurred_at=at, data=evidence, region=region,
                                             source="demo", resident_id=resident_id,
                                             household_id=data.pop("household_id", None) if data else None)
        db.session.commit()
        assert reduction is not None
        return reduction.id


def _credit(app: Flask, *reduction_ids: int) -> list[ledger.CreditResult]:
    with app.app_context():
        results = ledger.credit(list(reduction_ids))
        db.session.commit()
        return results


def _resident(api: Api, name: str = "lihua", region: str = "430204") -> tuple[Api, int]:
    person = sign_up(api, name, region=region)
    return person, person.get("/api/v1/me").get_json()["id"]


def _ok(app: Flask) -> dict[str, int]:
    with app.app_context():
        report = verify()
        assert report.breaches == []
        return report.totals


def test_a_credit_posts_points_with_its_rules(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    reduction = _trip(app, rid)                                                   # 10 km bus: 520 g
    [result] = _credit(app, reduction)
    assert (result.status, result.points, result.capped_grams) == ("credited", 52, 0)
    assert person.get("/api/v1/me/balance").get_json() == {"points": 52, "reduction_g": 520, "queued_points": 0}
    with app.app_context():
        entry = db.session.get(JournalEntry, result.entry_id)
        assert entry.idempotency_key == f"credit:{reduction}" and len(entry.rule_sha256) == 64
        lot = db.session.scalar(select(Lot).where(Lot.entry_id == entry.id))
        assert (lot.amount, lot.remaining) == (52, 52)
        assert lot.expires_on == date(date.today().year + 1, 12, 31) or lot.expires_on.month == 12
    posting = person.get("/api/v1/me/ledger").get_json()["items"][0]
    assert posting["amount"] == 52 and posting["reason"].startswith("Points for 公交出行 bus ride (exchange@")
    mine = person.get("/api/v1/me/reductions").get_json()["items"][0]
    assert (mine["methodology"], mine["points"], mine["capped_grams"]) == ("travel@1", 52, 0)
    _ok(app)


@pytest.mark.parametrize("size", [1, ledger.COPY_FROM])  # one statement, and the bulk path (COPY on PostgreSQL)
def test_each_entry_keeps_its_rule_trace_as_a_json_object(app: Flask, api: Api, size: int) -> None:
    _, rid = _resident(api)
    reductions = [_trip(app, rid, km="1", at=MORNING - timedelta(days=i % 20, minutes=i)) for i in range(size)]
    results = _credit(app, *reductions)
    assert {r.status for r in results} == {"credited"}
    with app.app_context():
        entries = db.session.scalars(select(JournalEntry).where(JournalEntry.reduction_id.in_(reductions))).all()
        assert len(entries) == size
        for entry in entries:
            assert isinstance(entry.trace, dict) and entry.trace["points"] == "5" and entry.trace["grams"] == "52"
            assert entry.trace["rules"].startswith("exchange@")
            query = (select(func.json_extract(JournalEntry.trace, "$.points")).where(JournalEntry.id == entry.id)
                     if db.session.get_bind().dialect.name == "sqlite" else
                     text("SELECT trace->>'points' FROM journal_entries WHERE id = :id").bindparams(id=entry.id))
            as_text = db.session.scalar(query)
            assert as_text in ("5", 5)  # the database sees an object, not a JSON string


def test_crediting_twice_posts_once(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    reduction = _trip(app, rid)
    _credit(app, reduction)
    assert [r.status for r in _credit(app, reduction)] == ["already_evaluated"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(JournalEntry)) == 1
    assert _ok(app)["issued"] == 52


def test_caps_hold_across_batches_and_capped_grams_stay_certified(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    first = [_trip(app, rid, km="20", at=MORNING + timedelta(minutes=i * 60)) for i in range(2)]  # 1040 g each
    _credit(app, *first)
    third = _trip(app, rid, kind="metro_ride", km="20", at=MORNING + timedelta(hours=5))       # 1440 g
    [capped] = _credit(app, third)
    assert (capped.points, capped.capped_grams) == (92, 520)                  # 3000 − 2080 = 920 g creditable
    tomorrow = _trip(app, rid, km="20", at=MORNING + timedelta(days=1))
    assert _credit(app, tomorrow)[0].points == 104                            # a new day, a new cap
    assert person.get("/api/v1/me/balance").get_json()["reduction_g"] == 1040 * 3 + 1440
    with app.app_context():
        assert db.session.get(ReductionEvaluation, third).capped_grams == 520
    _ok(app)


def test_household_electricity_credits_the_household_wallet(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    household = person.post("/api/v1/households", {"name": "李华家"}).get_json()["id"]
    reduction = _trip(app, rid, kind="household_electricity", at=MORNING, household_id=household,
                      period_start="2026-06-01", period_end="2026-06-30", kwh="150", household_size=3)
    assert _credit(app, reduction)[0].points == 1618                           # 16185 g, no cap
    assert person.get(f"/api/v1/households/{household}").get_json()["balance"] == {
        "points": 1618, "reduction_g": 16185, "queued_points": 0}
    assert person.get("/api/v1/me/balance").get_json()["points"] == 0
    _ok(app)


def test_quiz_points_once_a_day(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    quizzes = [_trip(app, rid, kind="quiz", at=MORNING + timedelta(minutes=i), quiz_id=f"q{i}", score=90)
               for i in range(2)]
    assert [r.points for r in _credit(app, *quizzes)] == [10, 0]               # Shifeng: 10 points a quiz


def _small_budget(app: Flask, staff: dict[str, Api], api: Api, points: int) -> None:
    rules = api.get("/api/v1/public/rules?region=430204").get_json()["regions"][0]["rules"]
    payload = {k: rules[k] for k in ("name", "points", "caps", "engagement", "campaigns", "expiry", "budget",
                                     "settlement")}
    payload["budget"]["points"] = points
    make = staff["admin1"]  # unscoped staff drafting for Shifeng needs an author with scope: use a fresh one
    from tests.conftest import login, make_staff

    make_staff(app, "zz-op", "operator", scope="430200")
    make_staff(app, "zz-aud", "auditor", scope="430200")
    author, auditor = login(make, "zz-op"), login(make, "zz-aud")
    number = author.post("/api/v1/admin/rules/versions", {"region": "430204", "rules": payload}).get_json()["version"]
    author.post(f"/api/v1/admin/rules/versions/{number}/submit")
    assert auditor.post(f"/api/v1/admin/rules/versions/{number}/approve").status_code == 200


def test_over_budget_credits_are_queued_then_released_next_period(app: Flask, api: Api, staff: dict[str, Api],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _small_budget(app, staff, api, 90)
    person, rid = _resident(api)
    later = utcnow() + timedelta(seconds=1)
    trips = [_trip(app, rid, kind=kind, km=km, at=later + timedelta(minutes=i))
             for i, (kind, km) in enumerate([("bus_ride", "5"), ("bike_ride", "5"), ("walk", "2"), ("bus_ride", "5")])]
    results = _credit(app, *trips)
    assert [(r.status, r.points) for r in results] == [("credited", 26), ("credited", 47), ("queued", 20),
                                                       ("queued", 26)]   # 26 + 47 fit in 90; 20 more does not
    assert person.get("/api/v1/me/balance").get_json() == {"points": 73, "reduction_g": 1204, "queued_points": 46}
    with app.app_context():
        assert ledger.release_queued() == {"released": 0, "still_queued": 2}    # same month: still no budget
        db.session.commit()
    next_month = (utcnow().replace(day=1) + timedelta(days=40))
    monkeypatch.setattr(ledger, "utcnow", lambda: next_month)
    with app.app_context():
        assert ledger.release_queued() == {"released": 2, "still_queued": 0}
        db.session.commit()
    assert person.get("/api/v1/me/balance").get_json()["points"] == 119
    reasons = [p["reason"] for p in person.get("/api/v1/me/ledger").get_json()["items"]]
    assert reasons[0].endswith("released after waiting for the issuance budget")
    _ok(app)


def test_a_released_credit_repays_a_clawback_first(app: Flask, api: Api, staff: dict[str, Api],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _small_budget(app, staff, api, 110)
    person, rid = _resident(api)
    later = utcnow() + timedelta(seconds=1)
    fraud = _trip(app, rid, km="20", at=later)                                  # 104 points
    _credit(app, fraud)
    _spend(app, _wallet(app, rid), 80, "spent")
    _zhuzhou_auditor(app, api).post(f"/api/v1/admin/reductions/{fraud}/reverse", {"reason": "a car"})
    honest = _trip(app, rid, km="10", at=later + timedelta(hours=1))            # 52: over the month's budget
    assert _credit(app, honest)[0].status == "queued"
    next_month = (utcnow().replace(day=1) + timedelta(days=40))
    monkeypatch.setattr(ledger, "utcnow", lambda: next_month)
    with app.app_context():
        assert ledger.release_queued() == {"released": 1, "still_queued": 0}
        db.session.commit()
        assert db.session.scalar(select(func.sum(Clawback.outstanding))) == 28  # 80 owed, 52 repaid
    assert person.get("/api/v1/me/balance").get_json()["points"] == 0
    _ok(app)


def _zhuzhou_auditor(app: Flask, api: Api) -> Api:
    from tests.conftest import login, make_staff

    make_staff(app, "zz-reviewer", "auditor", scope="430200")
    return login(api, "zz-reviewer")


def _wallet(app: Flask, rid: int) -> int:
    with app.app_context():
        return ledger.wallet_of_resident(rid)


def _merchant(region: str) -> int:
    """A shop to spend at (points at a merchant's settlement account are spent, for the ledger)."""
    found = db.session.scalar(select(Merchant.id).where(Merchant.region_code == region))
    if found is None:
        merchant = Merchant(name="测试商户", region_code=region)
        db.session.add(merchant)
        db.session.flush()
        found = merchant.id
    return found


def _spend(app: Flask, account: int, points: int, key: str) -> int:
    with app.app_context():
        rules = ledger.rules_in_force("430204", utcnow())
        shop = _merchant("430204")
        merchant = ledger.accounts_for("merchant_settlement", [shop])[shop]
        entry = ledger.spend(account, points, merchant, kind="spend", key=key, rule_version=rules, memo="test")
        db.session.commit()
        return entry


def test_spending_takes_the_oldest_expiring_lots_first(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    _credit(app, _trip(app, rid))
    account = _wallet(app, rid)
    with app.app_context():  # make the first lot expire sooner than a second, later lot
        first = db.session.scalar(select(Lot).where(Lot.account_id == account))
        db.session.execute(text(f"UPDATE lots SET expires_on = '2026-12-31' WHERE id = {first.id}"))
        db.session.commit()
    _credit(app, _trip(app, rid, km="12", at=MORNING + timedelta(days=1)))      # 62 points, expiring later
    _spend(app, account, 60, "spend-1")
    with app.app_context():
        lots = {lot.amount: lot.remaining for lot in db.session.scalars(select(Lot).where(Lot.account_id == account))}
    assert lots == {52: 0, 62: 54}
    assert _spend(app, account, 60, "spend-1") == _spend(app, account, 60, "spend-1")  # idempotent
    with app.app_context(), pytest.raises(Exception, match="Not enough points"):
        rules = ledger.rules_in_force("430204", utcnow())
        ledger.spend(account, 55, account, kind="spend", key="too-much", rule_version=rules, memo="x")
    _ok(app)


def test_expiry_is_exact_and_idempotent(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    _credit(app, _trip(app, rid), _trip(app, rid, kind="walk", km="2", at=MORNING + timedelta(hours=1)))
    account = _wallet(app, rid)
    _spend(app, account, 30, "spend")
    forecast = person.get("/api/v1/me/expiring").get_json()
    assert forecast["within_30_days"] == 0 and forecast["next"][0]["points"] == 42
    assert forecast["within_90_days"] == 0  # the default rules keep points to the end of next year
    with app.app_context():
        year = ledger.china_day(utcnow()).year
        assert ledger.expire(date(year + 2, 1, 1)) == {"entries": 1, "points": 42, "lots": 2}
        assert ledger.expire(date(year + 2, 1, 1)) == {"entries": 0, "points": 0, "lots": 0}
    from click.testing import CliRunner

    from backend.cli import main

    again = CliRunner().invoke(main, ["ledger", "expire", "--as-of", f"{year + 2}-01-01"], obj={"app": app})
    assert again.exit_code == 0
    assert f"expired 0 points from 0 lots in 0 entries (as of {year + 2}-01-01)" in again.output
    assert person.get("/api/v1/me/balance").get_json()["points"] == 0
    totals = _ok(app)
    assert (totals["issued"], totals["expired"], totals["spent"]) == (72, 42, 30)  # 30 spent at a merchant


def test_reversal_takes_back_what_is_left_and_claws_back_the_rest(app: Flask, api: Api,
                                                                  staff: dict[str, Api]) -> None:
    person, rid = _resident(api)
    fraud = _trip(app, rid, km="20")                                            # 104 points
    _credit(app, fraud)
    account = _wallet(app, rid)
    _spend(app, account, 80, "spent-before-found-out")
    outsider = staff["auditor1"].post(f"/api/v1/admin/reductions/{fraud}/reverse", {"reason": "x"})
    assert (outsider.status_code, outsider.get_json()["error"]) == (403, "out_of_scope")  # a Yueyang auditor
    auditor = _zhuzhou_auditor(app, api)
    assert auditor.post(f"/api/v1/admin/reductions/{fraud}/reverse", {"reason": ""}).status_code == 422
    assert staff["operator1"].post(f"/api/v1/admin/reductions/{fraud}/reverse", {"reason": "x"}).status_code == 403
    result = auditor.post(f"/api/v1/admin/reductions/{fraud}/reverse", {"reason": "GPS trace shows a car"})
    assert result.get_json() == {"reduction_id": fraud, "points_taken_back": 24, "clawback_outstanding": 80,
                                 "queued_credit_cancelled": False}
    again = auditor.post(f"/api/v1/admin/reductions/{fraud}/reverse", {"reason": "again"})
    assert (again.status_code, again.get_json()["error"]) == (409, "already_reversed")
    assert person.get("/api/v1/me/balance").get_json()["points"] == 0
    honest = _trip(app, rid, km="10", at=MORNING + timedelta(days=1))           # 52 points, all owed
    _credit(app, honest)
    assert person.get("/api/v1/me/balance").get_json()["points"] == 0
    more = _trip(app, rid, km="10", at=MORNING + timedelta(days=2))             # 52: 28 still owed, 24 kept
    _credit(app, more)
    assert person.get("/api/v1/me/balance").get_json()["points"] == 24
    with app.app_context():
        assert db.session.get(Reduction, fraud).status == "reversed"
        credit = db.session.scalar(select(JournalEntry).where(JournalEntry.idempotency_key == f"credit:{fraud}"))
        reversal = db.session.scalar(select(JournalEntry).where(JournalEntry.reverses_id == credit.id))
        assert (reversal.kind, reversal.idempotency_key) == ("reverse", f"reverse:{fraud}")
        assert reversal.reduction_id == fraud
        assert reversal.rule_sha256 == credit.rule_sha256 and reversal.memo == "GPS trace shows a car"
        assert sorted(db.session.scalars(select(Posting.amount).where(Posting.entry_id == reversal.id))) == [-24, 24]
        clawback = db.session.scalar(select(Clawback).where(Clawback.reduction_id == fraud))
        assert (clawback.entry_id, clawback.shortfall, clawback.outstanding) == (reversal.id, 80, 0)
    totals = _ok(app)
    assert (totals["issued"], totals["reversed"], totals["spent"] + totals["held"]) == (208, 104, 104)


def _credited_wallet(app: Flask, api: Api) -> int:
    """A resident's wallet after one credit (so an entry and its rule version exist to copy)."""
    _, rid = _resident(api)
    _credit(app, _trip(app, rid))
    return _wallet(app, rid)


def _raw_entry(key: str) -> int:
    """A bare journal entry written by SQL in this transaction, for raw postings to join."""
    rules_id, sha = db.session.execute(select(JournalEntry.rule_version_id, JournalEntry.rule_sha256)).first()
    return int(db.session.execute(text(
        "INSERT INTO journal_entries (idempotency_key, kind, posted_at, rule_version_id, rule_sha256, memo) "
        f"VALUES ('{key}', 'adjust', CURRENT_TIMESTAMP, {rules_id}, '{sha}', 'x') RETURNING id")).scalar_one())


@pytest.mark.parametrize(("amount", "refusal"), [(500, "balance_non_negative"), (0, "amount_not_zero")],
                         ids=["overdraft", "posting-of-nothing"])
def test_the_database_refuses_an_overdraft_and_a_posting_of_nothing(app: Flask, api: Api, amount: int,
                                                                     refusal: str) -> None:
    """A wallet never goes below zero; postings are signed and never 0 (DESIGN §7): a zero line would
    balance and say nothing. Refused by the database itself, not only by ``ledger.post``."""
    account = _credited_wallet(app, api)
    with app.app_context():
        entry = _raw_entry("raw")
        issuance = db.session.scalar(select(LedgerAccount.id).where(LedgerAccount.kind == "issuance"))
        with pytest.raises(IntegrityError, match=refusal):
            db.session.execute(text(f"INSERT INTO postings (entry_id, account_id, amount) VALUES "
                                    f"({entry}, {account}, {-amount}), ({entry}, {issuance}, {amount})"))


@pytest.mark.parametrize("statement", [
    "INSERT INTO postings (entry_id, account_id, amount) VALUES ({entry}, 999999, 5), ({entry}, {account}, -5)",
    "INSERT INTO postings (entry_id, account_id, amount) VALUES (999999, {account}, 5)",
    "INSERT INTO lots (account_id, entry_id, amount, remaining, created_at) VALUES (999999, {entry}, 1, 1, {now})",
    "INSERT INTO lots (account_id, entry_id, amount, remaining, created_at) VALUES ({account}, 999999, 1, 1, {now})",
    "INSERT INTO reduction_evaluations (reduction_id, account_id, rules_version_id, activity_type, occurred_at, "
    "grams, creditable_grams, points, bonus_points, created_at) VALUES (999999, {account}, {rules}, 'walk', {now}, "
    "1, 1, 0, 0, {now})",
    "INSERT INTO journal_entries (idempotency_key, kind, posted_at, rule_version_id, rule_sha256, memo, "
    "reduction_id) VALUES ('dangling', 'adjust', {now}, {rules}, 'x', 'x', 999999)",
    "INSERT INTO journal_entries (idempotency_key, kind, posted_at, rule_version_id, rule_sha256, memo) "
    "VALUES ('no-rules', 'adjust', {now}, 999999, 'x', 'x')",
    "INSERT INTO reduction_evaluations (reduction_id, account_id, rules_version_id, activity_type, occurred_at, "
    "grams, creditable_grams, points, bonus_points, created_at) VALUES ({reduction}, {account}, 999999, 'walk', "
    "{now}, 1, 1, 0, 0, {now})",
    "INSERT INTO activities (resident_id, source, type, occurred_at, region_code, data, status, created_at) "
    "VALUES (999999, 'demo', 'walk', {now}, '430204', '{{}}', 'credited', {now})",
    "INSERT INTO activities (source, type, occurred_at, region_code, data, status, created_at) "
    "VALUES ('demo', 'walk', {now}, '999999', '{{}}', 'credited', {now})",
    "INSERT INTO activities (partner_id, source, type, occurred_at, region_code, data, status, created_at) "
    "VALUES (999999, 'partner', 'walk', {now}, '430204', '{{}}', 'credited', {now})",
    "INSERT INTO reductions (activity_id, region_code, activity_type, occurred_at, methodology_id, "
    "methodology_version, version_id, formula_version, factors_sha256, grams, trace, facts, status, created_at) "
    "VALUES (999999, '430204', 'walk', {now}, 'travel', 1, {rules}, 1, 'x', 1, '{{}}', '{{}}', 'certified', {now})",
    "INSERT INTO reductions (activity_id, region_code, activity_type, occurred_at, methodology_id, "
    "methodology_version, version_id, formula_version, factors_sha256, grams, trace, facts, status, created_at) "
    "VALUES ({activity}, '430204', 'walk', {now}, 'travel', 1, 999999, 1, 'x', 1, '{{}}', '{{}}', 'certified', {now})",
])
def test_the_database_refuses_a_reference_to_nothing(app: Flask, api: Api, statement: str) -> None:
    """Row-level foreign keys on SQLite; checked once per statement on PostgreSQL (migrations 0004, 0009)."""
    _, rid = _resident(api)
    _credit(app, _trip(app, rid))
    reduction = _trip(app, rid, at=MORNING - timedelta(days=2))  # not evaluated yet
    account = _wallet(app, rid)
    with app.app_context():
        rules = db.session.scalar(select(JournalEntry.rule_version_id))
        activity = db.session.execute(text(  # an activity with no reduction yet
            "INSERT INTO activities (resident_id, source, type, occurred_at, region_code, data, status, created_at) "
            f"VALUES ({rid}, 'demo', 'walk', CURRENT_TIMESTAMP, '430204', '{{}}', 'rejected', CURRENT_TIMESTAMP) "
            "RETURNING id")).scalar_one()
        entry = _raw_entry("raw")
        with pytest.raises(IntegrityError, match=r"(?i)foreign key|names no row"):
            db.session.execute(text(statement.format(entry=entry, account=account, rules=rules, reduction=reduction,
                                                     activity=activity, now="CURRENT_TIMESTAMP")))
            db.session.flush()


@on_postgres
def test_ledger_accounts_are_never_deleted_or_repurposed(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    _credit(app, _trip(app, rid))
    account = _wallet(app, rid)
    for statement in (f"DELETE FROM ledger_accounts WHERE id = {account}",
                      f"UPDATE ledger_accounts SET resident_id = NULL, kind = 'expired', region_code = '430000' "
                      f"WHERE id = {account}", "UPDATE lots SET account_id = account_id + 1",
                      "TRUNCATE ledger_accounts CASCADE"):
        with app.app_context(), pytest.raises(DatabaseError, match="append-only"):
            db.session.execute(text(statement))


@on_postgres
@pytest.mark.parametrize("statement", [
    "DELETE FROM residents WHERE id = {resident}", "UPDATE residents SET id = id + 100000 WHERE id = {resident}",
    "DELETE FROM activities WHERE id = {activity}", "UPDATE activities SET id = id + 100000 WHERE id = {activity}",
    "DELETE FROM regions WHERE code = '430204'", "UPDATE regions SET code = '439999' WHERE code = '430204'",
    "UPDATE policy_versions SET id = id + 100000 WHERE id = {rules}",
])
def test_what_activities_and_entries_name_is_never_deleted_or_renumbered(app: Flask, api: Api, statement: str) -> None:
    """Their references are checked per statement (migration 0009), so the rows they name are guarded."""
    _, rid = _resident(api)
    reduction = _trip(app, rid)
    _credit(app, reduction)
    with app.app_context():
        activity, rules = db.session.execute(select(Reduction.activity_id, Reduction.version_id)
                                             .where(Reduction.id == reduction)).one()
        with pytest.raises(DatabaseError, match="append-only"):
            db.session.execute(text(statement.format(resident=rid, activity=activity, rules=rules)))


def test_posted_entries_cannot_be_edited(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    _credit(app, _trip(app, rid))
    for statement in ("UPDATE postings SET amount = amount * 2", "DELETE FROM postings",
                      "UPDATE journal_entries SET memo = 'x'", "DELETE FROM journal_entries"):
        with app.app_context(), pytest.raises(DatabaseError, match="append-only"):
            db.session.execute(text(statement))


@on_postgres
def test_postgres_refuses_an_unbalanced_entry_at_commit(app: Flask, api: Api) -> None:
    account = _credited_wallet(app, api)
    with app.app_context():
        entry = _raw_entry("raw")
        db.session.execute(text(f"INSERT INTO postings (entry_id, account_id, amount) VALUES ({entry}, {account}, 5)"))
        with pytest.raises(IntegrityError, match="does not balance"):
            db.session.commit()
        db.session.rollback()
        old = db.session.scalar(select(func.min(JournalEntry.id)))
        with pytest.raises(DatabaseError, match="same transaction"):
            db.session.execute(text(f"INSERT INTO postings (entry_id, account_id, amount) VALUES "
                                    f"({old}, {account}, 5), ({old}, {account}, -5)"))


def test_verify_names_a_breach(app: Flask, api: Api) -> None:
    from click.testing import CliRunner

    from backend.cli import main

    _, rid = _resident(api)
    _credit(app, _trip(app, rid))
    assert "ledger ok" in CliRunner().invoke(main, ["ledger", "verify"], obj={"app": app}).output
    with app.app_context():
        db.session.execute(text("UPDATE lots SET remaining = remaining - 1"))
        db.session.commit()
    result = CliRunner().invoke(main, ["ledger", "verify"], obj={"app": app})
    assert result.exit_code == 1 and "wallets whose lots do not add up to their balance" in result.output


def _tamper(app: Flask, statement: str) -> None:
    """Write past the database's own guards, as someone with direct table access could, so that
    `ledger verify` has something to find: PostgreSQL with its triggers off (session_replication_role,
    superuser only) and the range CHECKs dropped; SQLite with its triggers dropped and CHECKs ignored."""
    with app.app_context():
        s = db.session
        wallet = s.scalar(select(LedgerAccount.id).where(LedgerAccount.kind == "resident_wallet"))
        rules, sha, reduction = s.execute(select(JournalEntry.rule_version_id, JournalEntry.rule_sha256,
                                                 JournalEntry.reduction_id)).first()
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SET LOCAL session_replication_role = replica"))
            for table, check in (("ledger_accounts", "balance_non_negative"), ("lots", "remaining_within_amount")):
                s.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT ck_{table}_{check}"))
        else:
            for trigger in s.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).all():
                s.execute(text(f'DROP TRIGGER "{trigger}"'))
            s.execute(text("PRAGMA ignore_check_constraints = ON"))
        s.execute(text(statement.format(wallet=wallet, rules=rules, sha=sha, reduction=reduction)))
        s.commit()


ENTRY = "INSERT INTO journal_entries (idempotency_key, kind, posted_at, rule_version_id, rule_sha256, memo{extra}) " \
        "VALUES ('{key}', '{kind}', CURRENT_TIMESTAMP, {{rules}}, '{{sha}}', 'x'{value})"
UNBALANCED = "entries that do not sum to zero or have fewer than two postings"
DRIFT = "accounts whose balance differs from their postings"
LOTS = "wallets whose lots do not add up to their balance"


@pytest.mark.parametrize(("statement", "breaches"), [
    ("UPDATE postings SET amount = amount - 1 WHERE account_id IN "
     "(SELECT id FROM ledger_accounts WHERE kind = 'issuance')",
     [UNBALANCED, "issued", "credits whose points differ from the reduction's evaluation"]),
    ("DELETE FROM postings WHERE account_id = {wallet}", [UNBALANCED, DRIFT, "issued"]),
    ("UPDATE ledger_accounts SET balance = balance + 1 WHERE id = {wallet}", [DRIFT, LOTS]),
    ("UPDATE ledger_accounts SET balance = -1 WHERE id = {wallet}", [DRIFT, "accounts below zero", LOTS]),
    ("UPDATE ledger_accounts SET balance = 7 WHERE kind = 'issuance'", ["system accounts with a stored balance"]),
    ("UPDATE lots SET remaining = amount + 1", [LOTS, "lots with remaining outside 0..amount"]),
    ("UPDATE reduction_evaluations SET points = points + 1", ["credits whose points differ from the reduction's "
                                                               "evaluation"]),
    (ENTRY.format(key="empty", kind="adjust", extra="", value=""), ["entries without postings"]),
    (ENTRY.format(key="again", kind="credit", extra=", reduction_id", value=", {reduction}"),
     ["entries without postings", "reductions credited more than once"]),
], ids=["unbalanced", "posting-gone", "balance-drift", "negative", "system-balance", "lot-overflow",
        "evaluation-differs", "empty-entry", "credited-twice"])
def test_verify_names_each_breach_the_database_was_made_to_let_through(
        app: Flask, api: Api, statement: str, breaches: list[str]) -> None:
    """Each invariant of `ledger verify` fires on its own corruption, and only the ones it implies."""
    from click.testing import CliRunner

    from backend.cli import main

    _, rid = _resident(api)
    _credit(app, _trip(app, rid))
    _ok(app)
    _tamper(app, statement)
    with app.app_context():
        found = verify().breaches
    assert [b.split(":")[0].split(" ")[0] if b.startswith("issued ") else b.split(":")[0] for b in found] == breaches
    result = CliRunner().invoke(main, ["ledger", "verify"], obj={"app": app})
    assert result.exit_code == 1 and all(b in result.output for b in breaches)


def test_ledger_pages_newest_first(app: Flask, api: Api) -> None:
    person, rid = _resident(api)
    _credit(app, *[_trip(app, rid, kind="walk", km="1", at=MORNING + timedelta(days=-d)) for d in range(5)])
    first = person.get("/api/v1/me/ledger?limit=2").get_json()
    rest = person.get(f"/api/v1/me/ledger?limit=10&cursor={first['next_cursor']}").get_json()
    ids = [p["id"] for p in first["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5 and rest["next_cursor"] is None


@on_postgres
def test_concurrent_spends_never_overdraw(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    _credit(app, _trip(app, rid, km="20"))                                      # 104 points
    account = _wallet(app, rid)
    with app.app_context():  # the shop exists before the race: the race is for the wallet
        _merchant("430204")
        db.session.commit()
    outcomes = run_together(lambda i: _spend(app, account, 30, f"race-{i}"), [(i,) for i in range(8)])
    won = [o for o in outcomes if isinstance(o, int)]
    lost = [o for o in outcomes if not isinstance(o, int)]
    assert len(won) == 3                                                        # 3 × 30 ≤ 104 < 4 × 30
    assert all(getattr(o, "error", None) == "insufficient_points" for o in lost), lost
    with app.app_context():
        assert ledger.balance_of(account) == 14
    _ok(app)


@on_postgres
def test_concurrent_credits_respect_the_cap(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    trips = [_trip(app, rid, km="20", at=MORNING + timedelta(minutes=i)) for i in range(6)]   # 6 × 1040 g
    assert all(isinstance(r, list) for r in run_together(lambda r: _credit(app, r), [(r,) for r in trips]))
    with app.app_context():
        credited = db.session.scalar(select(func.sum(ReductionEvaluation.creditable_grams)))
        assert credited == 3000                                                 # the day's bus cap, exactly
        assert db.session.scalar(select(func.sum(Posting.amount)).where(Posting.account_id == _wallet(app, rid))) == 300
    _ok(app)


def test_queued_credit_is_cancelled_by_a_reversal(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    _small_budget(app, staff, api, 10)
    _, rid = _resident(api)
    reduction = _trip(app, rid, at=utcnow() + timedelta(seconds=1))
    assert _credit(app, reduction)[0].status == "queued"
    result = _zhuzhou_auditor(app, api).post(f"/api/v1/admin/reductions/{reduction}/reverse",
                                             {"reason": "fraud"}).get_json()
    assert result["queued_credit_cancelled"] is True
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(QueuedCredit)) == 0


@on_postgres
def test_concurrent_batches_never_overspend_the_budget(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    _small_budget(app, staff, api, 100)
    later = utcnow() + timedelta(seconds=1)
    batches = []
    for n in range(2):
        _, rid = _resident(api, f"rider{n}")
        batches.append([_trip(app, rid, km="5", at=later + timedelta(minutes=i)) for i in range(3)])  # 3 × 26
    outcomes = run_together(lambda batch: [r.status for r in _credit(app, *batch)], [(b,) for b in batches])
    statuses = sorted(s for batch in outcomes for s in batch)
    assert statuses == ["credited"] * 3 + ["queued"] * 3                        # 3 × 26 = 78 ≤ 100 < 4 × 26
    totals = _ok(app)
    assert (totals["issued"], totals["queued"]) == (78, 78)


def test_the_flush_guard_refuses_an_unbalanced_entry(app: Flask, api: Api) -> None:
    account = _credited_wallet(app, api)
    with app.app_context():
        rules_id, sha = db.session.execute(select(JournalEntry.rule_version_id, JournalEntry.rule_sha256)).first()
        entry = JournalEntry(idempotency_key="orm", kind="adjust", rule_version_id=rules_id, rule_sha256=sha)
        db.session.add(entry)
        db.session.flush()
        db.session.add_all([Posting(entry_id=entry.id, account_id=account, amount=10),
                            Posting(entry_id=entry.id, account_id=account, amount=-9)])
        with pytest.raises(ValueError, match="sum to zero"):
            db.session.flush()


def _month_start(days_back: int = 40) -> datetime:
    """8:00 China time on the 1st of a month that is fully in the past."""
    past = (datetime.now(CHINA_STANDARD_TIME) - timedelta(days=days_back)).replace(day=1)
    return past.replace(hour=8, minute=0, second=0, microsecond=0)


def test_a_monthly_cap_counts_the_whole_month_across_batches_and_no_other(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    first = _month_start()
    bag = {"material": "pet", "weight_kg": "5"}
    [opening] = _credit(app, _trip(app, rid, kind="recycling", at=first, **bag))
    with app.app_context():
        per_bag = db.session.get(ReductionEvaluation, opening.reduction_id).grams
    bags_in_cap = 20_000 // per_bag
    # Earlier in the month, other days, other batches: they all count against the one cap.
    for day in range(1, bags_in_cap):
        _credit(app, _trip(app, rid, kind="recycling", at=first + timedelta(days=day), **bag))
    [over] = _credit(app, _trip(app, rid, kind="recycling", at=first + timedelta(days=bags_in_cap), **bag))
    assert over.capped_grams == per_bag - (20_000 - bags_in_cap * per_bag)
    # The previous month is another cap: a bag on its last day is credited in full.
    [before] = _credit(app, _trip(app, rid, kind="recycling", at=first - timedelta(days=1), **bag))
    assert before.capped_grams == 0


def test_a_daily_cap_is_a_china_day(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    evening = MORNING.replace(hour=22, minute=0) - timedelta(days=3)
    # 3 × 1040 g bus rides before midnight China time: the third is capped at 3000 g for the day.
    _credit(app, *(_trip(app, rid, km="20", at=evening + timedelta(minutes=20 * i)) for i in range(2)))
    [third] = _credit(app, _trip(app, rid, km="20", at=evening + timedelta(minutes=100)))   # 23:40
    assert third.capped_grams == 1040 * 3 - 3000
    [after] = _credit(app, _trip(app, rid, km="20", at=evening + timedelta(minutes=130)))   # 00:10 next day
    assert after.capped_grams == 0


def test_quiz_points_once_a_day_across_batches(app: Flask, api: Api) -> None:
    _, rid = _resident(api)
    quiz = {"quiz_id": "low-carbon-101", "score": 90}
    [first] = _credit(app, _trip(app, rid, kind="quiz", at=MORNING, **quiz))
    [second] = _credit(app, _trip(app, rid, kind="quiz", at=MORNING + timedelta(hours=3), **quiz))
    [tomorrow] = _credit(app, _trip(app, rid, kind="quiz", at=MORNING + timedelta(days=1), **quiz))
    assert first.points > 0 and second.points == 0 and tomorrow.points == first.points


def test_crediting_a_batch_costs_the_same_statements_whatever_its_size(app: Flask, api: Api) -> None:
    """The credit service is set-based (issue #4, point 5): ingestion hands it up to 1,000 reductions
    at once, so its round trips must not grow with the batch."""
    from sqlalchemy import event

    warm, small, large = [], [], []
    for n in range(13):
        _, rid = _resident(api, f"walker{n}")
        trips = [_trip(app, rid, km=str(2 + d), at=MORNING - timedelta(days=d)) for d in range(4)]
        (warm if n == 0 else small if n < 3 else large).extend(trips if n > 2 else trips[:1])
    _credit(app, *warm)  # the first credit of a region opens its issuance account and caches its rules
    counts = []
    for batch in (small, large):
        with app.app_context():
            statements: list[str] = []

            def count(*args: Any, seen: list[str] = statements) -> None:
                seen.append(args[2])

            event.listen(db.engine, "before_cursor_execute", count)
            try:
                results = ledger.credit(batch)
                db.session.commit()
            finally:
                event.remove(db.engine, "before_cursor_execute", count)
            assert [r.status for r in results] == ["credited"] * len(batch)
            counts.append(len(statements))
    assert len(small) == 2 and len(large) == 40
    assert counts[1] == counts[0], counts
    _ok(app)


def test_an_enterprise_wallet_keeps_lots_and_counts_as_held(app: Flask, api: Api) -> None:
    """The third wallet kind (DESIGN §7) behaves as the other two: lots, oldest-expiring spent
    first, a balance the database keeps, and `ledger verify` counting it as held. (No methodology
    credits an enterprise yet: small-business energy saving is still to be specified.)"""
    from backend.models import Enterprise

    _, rid = _resident(api)
    with app.app_context():
        shop = Enterprise(name="石峰小微企业", uscc="91430204MA4L0000X1", region_code="430204",
                          manager_resident_id=rid, status="active")
        db.session.add(shop)
        db.session.flush()
        wallet = ledger.accounts_for("enterprise_wallet", [shop.id])[shop.id]
        assert ledger.accounts_for("enterprise_wallet", [shop.id]) == {shop.id: wallet}  # one per enterprise
        rules = ledger.rules_in_force("430204", utcnow())
        issuance = ledger.accounts_for("issuance", ["430204"])["430204"]
        ledger.post([ledger.EntryDraft(key=f"grant:{n}", kind="adjust", rule_version=rules, memo="test",
                                       postings=[(issuance, -points), (wallet, points)],
                                       lot=(wallet, points, date(2031 - n, 12, 31)))
                     for n, points in enumerate((30, 20))])
        merchant = ledger.accounts_for("merchant_settlement", [_merchant("430204")])[_merchant("430204")]
        ledger.spend(wallet, 25, merchant, kind="spend", key="enterprise-spend", rule_version=rules, memo="test")
        db.session.commit()
        assert ledger.balance_of(wallet) == 25
        lots = db.session.execute(select(Lot.expires_on, Lot.remaining).where(Lot.account_id == wallet)
                                  .order_by(Lot.expires_on)).all()
        assert [tuple(lot) for lot in lots] == [(date(2030, 12, 31), 0), (date(2031, 12, 31), 25)]
        with pytest.raises(IntegrityError, match="balance_non_negative"):
            ledger.transfer(wallet, merchant, 26, kind="spend", key="too-much", rule_version=rules, memo="test")
        db.session.rollback()
    totals = _ok(app)
    assert (totals["issued"], totals["held"], totals["spent"]) == (50, 25, 25)
