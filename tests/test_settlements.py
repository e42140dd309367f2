"""Settlement, the money leg: monthly statements per merchant at the region's rate, payment, the
operator's liability, and the database's refusal to change an issued statement."""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from backend.db import db, utcnow
from backend.errors import Unprocessable
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import (
    JournalEntry,
    LedgerAccount,
    Offer,
    PolicyVersion,
    Redemption,
    SettlementStatement,
    User,
)
from backend.services import ledger, rules, settlements
from tests.conftest import PASSWORD, Api, login, make_staff, on_postgres, run_together, sign_up


def _month(months_back: int) -> tuple[str, datetime]:
    """A past month ``YYYY-MM`` (China time) and a moment on its 10th, noon China time."""
    today = datetime.now(CHINA_STANDARD_TIME)
    year, month = today.year, today.month - months_back
    while month < 1:
        year, month = year - 1, month + 12
    return f"{year}-{month:02d}", datetime(year, month, 10, 12, tzinfo=CHINA_STANDARD_TIME)


PERIOD, IN_PERIOD = _month(2)         # safely over, whatever the day (the grace is minutes)
EARLIER, IN_EARLIER = _month(3)
CURRENT = datetime.now(CHINA_STANDARD_TIME).strftime("%Y-%m")
YUEYANG_RATE = "0.0075"               # yuan per point: a rate where rounding down shows
_codes = itertools.count(1)


@dataclass
class World:
    admin: Api
    operator: Api                      # Yueyang (430600)
    auditor: Api
    resident_id: int
    merchants: dict[str, int] = field(default_factory=dict)
    offers: dict[str, int] = field(default_factory=dict)
    shops: dict[str, Api] = field(default_factory=dict)


def _user_id(app: Flask, username: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == username))


def _yueyang_rate(app: Flask, rate: str) -> None:
    """An approved rules version for Yueyanglou district (430602), in force since 2021, with ``rate``."""
    with app.app_context():
        inherited = ledger.rules_in_force("430602", utcnow())
        payload = {**inherited.payload, "settlement": {"yuan_per_point": rate}}
        latest = db.session.scalar(select(func.max(PolicyVersion.version)).where(
            PolicyVersion.kind == rules.KIND, PolicyVersion.subject == rules.SUBJECT))
        now = utcnow()
        db.session.add(PolicyVersion(
            kind=rules.KIND, subject=rules.SUBJECT, version=latest + 1, region_code="430602", payload=payload,
            payload_sha256="0" * 64, effective_from=datetime(2021, 1, 1, tzinfo=UTC), status="approved",
            note="test rate", submitted_at=now, decided_at=now))
        db.session.commit()


def _give_points(app: Flask, resident_id: int, points: int) -> None:
    """Points into the resident's wallet as one lot (an adjustment from the region's issuance)."""
    with app.app_context():
        version = ledger.rules_in_force("430602", utcnow())
        wallet = ledger.wallet_of_resident(resident_id)
        issuance = ledger.accounts_for("issuance", [version.region_code])[version.region_code]
        ledger.post([ledger.EntryDraft(key=f"test-grant:{resident_id}", kind="adjust", rule_version=version,
                                       postings=[(issuance, -points), (wallet, points)], memo="test grant",
                                       lot=(wallet, points, None))])
        db.session.commit()


def _merchant(app: Flask, world: World, name: str, region: str) -> None:
    response = world.admin.post("/api/v1/admin/merchants", {"name": name, "region": region})
    assert response.status_code == 201, response.get_json()
    merchant_id = response.get_json()["id"]
    world.merchants[name] = merchant_id
    staff = world.admin.post(f"/api/v1/admin/merchants/{merchant_id}/staff",
                             {"username": f"till-{name}", "password": PASSWORD})
    assert staff.status_code == 201, staff.get_json()
    world.shops[name] = login(world.admin, f"till-{name}")
    with app.app_context():
        now = utcnow()
        offer = Offer(merchant_id=merchant_id, title=f"{name} voucher", description="", points_price=10,
                      stock_total=100, stock_left=100, per_user_limit=100, valid_from=datetime(2020, 1, 1, tzinfo=UTC),
                      valid_until=now + timedelta(days=365), status="active",
                      created_by_user_id=_user_id(app, "admin1"), created_at=now, updated_at=now)
        db.session.add(offer)
        db.session.commit()
        world.offers[name] = offer.id


def _redeem(app: Flask, world: World, name: str, points: int, closed_at: datetime | None,
            status: str = "fulfilled") -> int:
    """A redemption written the way the redemption flow writes it: hold, then (fulfilled) settle."""
    n = next(_codes)
    merchant_id, rid = world.merchants[name], world.resident_id
    with app.app_context():
        version = ledger.rules_in_force("430602", utcnow())
        wallet = ledger.wallet_of_resident(rid)
        holds = ledger.accounts_for("redemption_holds", [merchant_id])[merchant_id]
        settle = ledger.accounts_for("merchant_settlement", [merchant_id])[merchant_id]
        hold = ledger.spend(wallet, points, holds, kind="spend", key=f"hold:{n}", rule_version=version,
                            memo="test hold")
        close = None
        if status == "fulfilled":
            close = ledger.transfer(holds, settle, points, kind="settle", key=f"redeem:{n}", rule_version=version,
                                    memo="test settle")
        reserved = (closed_at or utcnow()) - timedelta(minutes=5)
        redemption = Redemption(offer_id=world.offers[name], merchant_id=merchant_id, resident_id=rid,
                                account_id=wallet, points=points, code=f"TST{n:05d}WXYZ", idempotency_key=f"key-{n}",
                                status=status, hold_entry_id=hold, close_entry_id=close, reserved_at=reserved,
                                expires_at=reserved + timedelta(minutes=30), closed_at=closed_at)
        db.session.add(redemption)
        db.session.commit()
        return redemption.id


@pytest.fixture
def world(app: Flask, api: Api, staff: dict[str, Api]) -> World:
    """Two Yueyanglou merchants and one in Shifeng (Zhuzhou); one resident with 1000 points; redemptions:
    tea 30 + 45 + 26 in PERIOD, 20 in EARLIER, 15 this month, 12 reserved; noodles 77 in PERIOD;
    shifeng 50 in PERIOD."""
    _yueyang_rate(app, YUEYANG_RATE)
    resident = sign_up(api, "lihua", region="430602")
    w = World(admin=staff["admin1"], operator=staff["operator1"], auditor=staff["auditor1"],
              resident_id=resident.get("/api/v1/me").get_json()["id"])
    _give_points(app, w.resident_id, 1000)
    for name, region in (("tea", "430602"), ("noodles", "430602"), ("shifeng", "430204")):
        _merchant(app, w, name, region)
    for points in (30, 45, 26):
        _redeem(app, w, "tea", points, IN_PERIOD + timedelta(days=points % 7))
    _redeem(app, w, "tea", 20, IN_EARLIER)
    _redeem(app, w, "tea", 15, utcnow() - timedelta(seconds=1))
    _redeem(app, w, "tea", 12, None, status="reserved")
    _redeem(app, w, "noodles", 77, IN_PERIOD)
    _redeem(app, w, "shifeng", 50, IN_PERIOD)
    return w


def _issue(who: Api, period: str = PERIOD, **extra: Any) -> Any:
    return who.post("/api/v1/admin/settlements", {"period": period, **extra})


def _by_merchant(statements: list[dict[str, Any]], world: World) -> dict[str, dict[str, Any]]:
    names = {merchant_id: name for name, merchant_id in world.merchants.items()}
    return {names[s["merchant_id"]]: s for s in statements}


def test_a_past_month_gets_one_exact_statement_per_merchant(app: Flask, world: World) -> None:
    response = _issue(world.admin)
    assert response.status_code == 201, response.get_json()
    found = _by_merchant(response.get_json()["statements"], world)
    assert set(found) == {"tea", "noodles", "shifeng"}
    tea, noodles, shifeng = found["tea"], found["noodles"], found["shifeng"]
    # 101 points × 0.0075 yuan = 0.7575 yuan: 75 fen, rounded down; 77 × 0.0075 = 0.5775: 57 fen.
    assert (tea["redemptions"], tea["points"], tea["yuan_per_point"], tea["amount_fen"], tea["amount_yuan"]) == \
        (3, 101, YUEYANG_RATE, 75, "0.75")
    assert (noodles["points"], noodles["amount_fen"]) == (77, 57)
    assert (shifeng["points"], shifeng["yuan_per_point"], shifeng["amount_fen"]) == (50, "0.01", 50)
    assert {s["period"] for s in found.values()} == {PERIOD}
    assert {s["status"] for s in found.values()} == {"issued"}
    assert tea["region"] == "430602" and shifeng["region"] == "430204"
    with app.app_context():
        on_tea = db.session.scalars(select(Redemption.points).where(Redemption.statement_id == tea["id"]))
        assert sorted(on_tea) == [26, 30, 45]     # not the earlier month's, this month's or the reserved one
        version = db.session.get(PolicyVersion, tea["rules_version_id"])
        assert version.region_code == "430602" and version.payload["settlement"]["yuan_per_point"] == YUEYANG_RATE
        rules_ref = version.ref
        actions = db.session.execute(text("SELECT count(*) FROM audit_log WHERE action = 'settlement.issue'"))
        assert actions.scalar() == 3

    detail = world.auditor.get(f"/api/v1/admin/settlements/{tea['id']}").get_json()
    assert detail["merchant_name"] == "tea" and detail["rules_version"] == rules_ref
    assert [line["points"] for line in detail["lines"]] == [30, 45, 26]          # in the order fulfilled
    assert {line["offer_title"] for line in detail["lines"]} == {"tea voucher"}
    for line in detail["lines"]:
        assert line["code"].endswith("WXYZ") and line["code"].startswith("****") and "TST" not in line["code"]

    # The earlier month is settled on its own statement, later.
    earlier = _issue(world.admin, EARLIER).get_json()["statements"]
    assert [(s["merchant_id"], s["points"], s["amount_fen"]) for s in earlier] == [(world.merchants["tea"], 20, 15)]


def test_issuing_again_creates_nothing(app: Flask, world: World) -> None:
    first = _issue(world.admin).get_json()["statements"]
    again = _issue(world.admin)
    assert again.status_code == 201 and again.get_json() == {"statements": []}
    listed = world.admin.get(f"/api/v1/admin/settlements?period={PERIOD}").get_json()
    assert sorted(s["id"] for s in listed["items"]) == sorted(s["id"] for s in first)
    # A redemption that lands in the month afterwards (a late commit) is left for the liability
    # report, never put on a second statement for the same month.
    _redeem(app, world, "tea", 9, IN_PERIOD + timedelta(hours=1))
    assert _issue(world.admin).get_json() == {"statements": []}
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SettlementStatement)) == 3


def test_a_month_not_over_or_not_a_month_is_refused(world: World) -> None:
    response = _issue(world.admin, CURRENT)
    assert response.status_code == 409 and response.get_json()["error"] == "period_not_over"
    future = _issue(world.admin, f"{datetime.now(CHINA_STANDARD_TIME).year + 1}-01")
    assert future.status_code == 409
    for bad in ("2025-13", "2025-1", "May", "1999-12", ""):
        response = _issue(world.admin, bad)
        assert response.status_code == 422, bad
        assert "period" in response.get_json()["errors"]["json"], bad
    missing = world.admin.post("/api/v1/admin/settlements", {})
    assert missing.status_code == 422 and "period" in missing.get_json()["errors"]["json"]
    assert world.admin.get("/api/v1/admin/settlements?period=2025-13").status_code == 422
    assert world.admin.get("/api/v1/admin/settlements?status=void").status_code == 422


def test_the_csv_lists_every_redemption_and_the_total(world: World) -> None:
    tea = _by_merchant(_issue(world.admin).get_json()["statements"], world)["tea"]
    response = world.auditor.get(f"/api/v1/admin/settlements/{tea['id']}/csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert f"statement-{world.merchants['tea']}-{PERIOD}.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0] == ["redemption_id", "fulfilled_at", "offer", "code", "points", "amount_fen"]
    lines, total = rows[1:-1], rows[-1]
    assert len(lines) == 3
    assert sorted(int(line[4]) for line in lines) == [26, 30, 45]
    assert all(line[2] == "tea voucher" and line[3].endswith("WXYZ") and "TST" not in line[3] for line in lines)
    assert all(line[1].endswith("+08:00") and line[1].startswith(PERIOD) for line in lines)
    assert total[0] == "total" and total[4:] == ["101", "75"]
    assert "3 redemptions" in total[2]


def test_marking_paid_once(app: Flask, world: World) -> None:
    tea = _by_merchant(_issue(world.admin).get_json()["statements"], world)["tea"]
    url = f"/api/v1/admin/settlements/{tea['id']}/paid"
    assert world.auditor.post(url, {"reference": "BANK-1"}).status_code == 403
    for bad in ({"reference": "   "}, {"reference": "x" * 121}, {}):
        response = world.operator.post(url, bad)
        assert response.status_code == 422 and "reference" in response.get_json()["errors"]["json"], bad
    with app.app_context():
        before = db.session.scalar(select(func.count()).select_from(JournalEntry))
    paid = world.operator.post(url, {"reference": "  ICBC 2025-0042 "})
    assert paid.status_code == 200, paid.get_json()
    body = paid.get_json()
    assert body["status"] == "paid" and body["payment_reference"] == "ICBC 2025-0042"
    assert body["paid_by_user_id"] == _user_id(app, "operator1") and body["paid_at"]
    again = world.admin.post(url, {"reference": "BANK-2"})
    assert again.status_code == 409 and again.get_json()["error"] == "already_paid"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(JournalEntry)) == before  # the ledger did not move
    paid_list = world.auditor.get("/api/v1/admin/settlements?status=paid").get_json()["items"]
    assert [s["id"] for s in paid_list] == [tea["id"]]
    issued = world.admin.get("/api/v1/admin/settlements?status=issued").get_json()["items"]
    assert len(issued) == 2 and tea["id"] not in {s["id"] for s in issued}
    noodles_id = world.merchants["noodles"]
    by_merchant = world.auditor.get(f"/api/v1/admin/settlements?merchant_id={noodles_id}&period={PERIOD}")
    assert [s["merchant_id"] for s in by_merchant.get_json()["items"]] == [noodles_id]


def test_the_database_refuses_to_change_a_statement(app: Flask, world: World) -> None:
    statements = _by_merchant(_issue(world.admin).get_json()["statements"], world)
    tea, noodles = statements["tea"]["id"], statements["noodles"]["id"]
    world.admin.post(f"/api/v1/admin/settlements/{noodles}/paid", {"reference": "PAID-1"})
    refused = [
        f"UPDATE settlement_statements SET points = points + 1 WHERE id = {tea}",
        f"UPDATE settlement_statements SET amount_fen = 1 WHERE id = {tea}",
        f"UPDATE settlement_statements SET period = '2000-01' WHERE id = {tea}",
        f"DELETE FROM settlement_statements WHERE id = {tea}",
        f"UPDATE settlement_statements SET status = 'issued', payment_reference = NULL WHERE id = {noodles}",
        f"UPDATE settlement_statements SET payment_reference = 'other' WHERE id = {noodles}",
    ]
    for sql in refused:
        with app.app_context():
            with pytest.raises(DatabaseError, match="immutable"):
                db.session.execute(text(sql))
                db.session.flush()
            db.session.rollback()
    with app.app_context():
        statement = db.session.get(SettlementStatement, tea)
        assert (statement.points, statement.amount_fen, statement.period) == (101, 75, PERIOD)


def test_a_merchant_sees_only_its_own_statements(api: Api, world: World) -> None:
    found = _by_merchant(_issue(world.admin).get_json()["statements"], world)
    tea_till = world.shops["tea"]
    listed = tea_till.get("/api/v1/merchant/statements")
    assert listed.status_code == 200
    assert [s["id"] for s in listed.get_json()["items"]] == [found["tea"]["id"]]
    mine = tea_till.get(f"/api/v1/merchant/statements/{found['tea']['id']}")
    assert mine.status_code == 200 and mine.get_json()["points"] == 101 and len(mine.get_json()["lines"]) == 3
    csv_body = tea_till.get(f"/api/v1/merchant/statements/{found['tea']['id']}/csv")
    assert csv_body.status_code == 200 and csv_body.headers["Content-Type"] == "text/csv; charset=utf-8"
    for other in ("noodles", "shifeng"):
        statement_id = found[other]["id"]
        assert tea_till.get(f"/api/v1/merchant/statements/{statement_id}").status_code == 404
        assert tea_till.get(f"/api/v1/merchant/statements/{statement_id}/csv").status_code == 404
    assert tea_till.get("/api/v1/merchant/statements/999999").status_code == 404
    # Till logins are not operators; residents are not tills.
    assert tea_till.get("/api/v1/admin/settlements").status_code == 403
    assert tea_till.get(f"/api/v1/admin/settlements/{found['tea']['id']}/csv").status_code == 403
    resident = login(api, "lihua")
    assert resident.get("/api/v1/merchant/statements").status_code == 403
    assert api.as_token(None).get("/api/v1/merchant/statements").status_code == 401


def test_an_operator_sees_and_settles_only_their_region(app: Flask, api: Api, world: World) -> None:
    make_staff(app, "zz-operator", "operator", scope="430200")
    zhuzhou = login(api, "zz-operator")
    # Yueyang's operator issues Yueyang's statements only; Zhuzhou's issues Shifeng's.
    yueyang = _by_merchant(_issue(world.operator).get_json()["statements"], world)
    assert set(yueyang) == {"tea", "noodles"}
    assert _issue(zhuzhou, region="430600").status_code == 403
    shifeng = _by_merchant(_issue(zhuzhou).get_json()["statements"], world)
    assert set(shifeng) == {"shifeng"}
    assert _issue(world.admin).get_json() == {"statements": []}

    listed = zhuzhou.get("/api/v1/admin/settlements").get_json()["items"]
    assert [s["id"] for s in listed] == [shifeng["shifeng"]["id"]]
    tea = yueyang["tea"]["id"]
    assert zhuzhou.get(f"/api/v1/admin/settlements/{tea}").status_code == 403
    assert zhuzhou.get(f"/api/v1/admin/settlements/{tea}/csv").status_code == 403
    assert zhuzhou.post(f"/api/v1/admin/settlements/{tea}/paid", {"reference": "X"}).status_code == 403
    assert zhuzhou.get("/api/v1/admin/liability?region=430600").status_code == 403
    liability = zhuzhou.get("/api/v1/admin/liability").get_json()
    assert [r["region"] for r in liability["regions"]] == ["430204"]
    assert len(world.admin.get("/api/v1/admin/settlements").get_json()["items"]) == 3


def test_liability_adds_up(app: Flask, world: World) -> None:
    # Before any statement: 1000 granted; 30+45+26+20+15+77+50 = 263 taken by merchants, 12 held.
    report = world.admin.get("/api/v1/admin/liability").get_json()
    regions = {r["region"]: r for r in report["regions"]}
    assert set(regions) == {"430602", "430204"}             # the resident's and merchants' regions
    scoped = world.auditor.get("/api/v1/admin/liability").get_json()    # a Yueyang auditor: Yueyang only
    assert [r["region"] for r in scoped["regions"]] == ["430602"]
    yueyang = regions["430602"]
    assert yueyang["resident_wallet_points"] == yueyang["outstanding_points"] == 1000 - 263 - 12
    assert (yueyang["held_points"], yueyang["unstated_points"]) == (12, 213)
    assert (regions["430204"]["unstated_points"], regions["430204"]["outstanding_points"]) == (50, 0)
    assert yueyang["yuan_per_point"] == YUEYANG_RATE and regions["430204"]["yuan_per_point"] == "0.01"
    assert yueyang["outstanding_value_fen"] == 543                # 725 × 0.75 fen = 543.75, rounded down
    assert yueyang["exposure_fen"] == 712                          # (725 + 12 + 213) × 0.75 = 712.5
    assert regions["430204"]["exposure_fen"] == 50

    statements = _by_merchant(_issue(world.admin).get_json()["statements"], world)
    world.admin.post(f"/api/v1/admin/settlements/{statements['noodles']['id']}/paid", {"reference": "PAID-1"})
    report = world.admin.get("/api/v1/admin/liability").get_json()
    regions, totals = {r["region"]: r for r in report["regions"]}, report["totals"]
    yueyang = regions["430602"]
    assert yueyang["unstated_points"] == 20 + 15                    # the earlier month and this month
    assert (yueyang["unpaid_statements"], yueyang["unpaid_points"], yueyang["unpaid_fen"]) == (1, 101, 75)
    assert (regions["430204"]["unpaid_points"], regions["430204"]["unpaid_fen"]) == (50, 50)
    assert totals["outstanding_points"] == 725 and totals["held_points"] == 12
    assert totals["unstated_points"] == 35 and totals["unpaid_fen"] == 125 and totals["unpaid_yuan"] == "1.25"
    assert totals["outstanding_value_fen"] == 543 and totals["outstanding_value_yuan"] == "5.43"
    # Every point granted is in a wallet, a hold, or at a merchant (stated and paid, stated, or not yet).
    paid_points = 77
    assert (totals["outstanding_points"] + totals["held_points"] + totals["unstated_points"]
            + totals["unpaid_points"] + paid_points) == 1000
    with app.app_context():
        at_merchants = db.session.scalar(select(func.sum(LedgerAccount.balance))
                                         .where(LedgerAccount.kind == "merchant_settlement"))
        assert at_merchants == totals["unstated_points"] + totals["unpaid_points"] + paid_points
    assert totals["exposure_fen"] == sum(r["exposure_fen"] for r in report["regions"])
    assert world.operator.get("/api/v1/admin/liability?region=430602").get_json()["totals"]["outstanding_points"] == 725
    assert world.operator.get("/api/v1/admin/liability?region=12").status_code == 422


def test_issuing_is_a_service_that_answers_for_direct_calls(app: Flask, world: World) -> None:
    with app.app_context():
        admin = db.session.scalar(select(User).where(User.username == "admin1"))
        with pytest.raises(Unprocessable, match="period"):
            settlements.issue_statements("2024/05", actor=admin)
        issued = settlements.issue_statements(PERIOD, actor=admin, region="430204")
        assert [s.points for s in issued] == [50]
        db.session.commit()
    assert settlements.amount_fen(101, "0.0075") == 75 and settlements.amount_fen(3, "0.333") == 99
    assert settlements.amount_fen(10**15, "0.01") == 10**15
    assert settlements.yuan(5) == "0.05" and settlements.yuan(123456) == "1234.56"
    assert settlements.mask_code("ABCD2345WXYZ") == "********WXYZ"


@on_postgres
def test_operators_issuing_at_once_put_each_redemption_on_one_statement(app: Flask, world: World) -> None:
    for name in ("tea", "noodles", "shifeng"):
        for points in (3, 4, 5):
            _redeem(app, world, name, points, IN_PERIOD + timedelta(hours=points))
    admin_id = _user_id(app, "admin1")

    def issue() -> list[int]:
        with app.app_context():
            actor = db.session.get(User, admin_id)
            issued = [s.id for s in settlements.issue_statements(PERIOD, actor=actor)]
            db.session.commit()
            return issued

    results = run_together(issue, [()] * 6)
    assert not [r for r in results if isinstance(r, Exception)], results
    created = sorted(itertools.chain.from_iterable(results))
    assert len(created) == 3 and len(set(created)) == 3
    with app.app_context():
        statements = list(db.session.scalars(select(SettlementStatement)))
        assert len(statements) == 3
        on_statements = dict(db.session.execute(
            select(Redemption.statement_id, func.sum(Redemption.points))
            .where(Redemption.statement_id.is_not(None)).group_by(Redemption.statement_id)).all())
        assert {s.id: s.points for s in statements} == on_statements
        assert sorted(s.points for s in statements) == [62, 89, 113]   # 50+12, 77+12, 101+12
        unstated = db.session.scalar(select(func.count()).select_from(Redemption).where(
            Redemption.status == "fulfilled", Redemption.closed_at >= _bounds()[0],
            Redemption.closed_at < _bounds()[1], Redemption.statement_id.is_(None)))
        assert unstated == 0


def _bounds() -> tuple[datetime, datetime]:
    return settlements.period_bounds(PERIOD)
