"""Opened rights (权益开放) and green levels: claims with points or by level, stock and limits,
partner check and consume, expiry, bad input, concurrent claims."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from backend.db import db, utcnow
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import JournalEntry, LedgerAccount, OpenedRight, Posting, RightGrant
from backend.services import activities, ledger, rights
from backend.services.ledger_verify import verify
from tests.conftest import Api, on_postgres, run_together, sign_up
from tests.partner_client import partner_call

MORNING = datetime.now(CHINA_STANDARD_TIME).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=1)
SPROUT, SEEDLING, TREE = "绿芽 Sprout", "绿苗 Seedling", "绿树 Tree"  # Yueyang: 0, 8 kg, 80 kg
ALPHABET = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _resident(api: Api, name: str, region: str = "430602") -> tuple[Api, int]:
    person = sign_up(api, name, region=region)
    return person, person.get("/api/v1/me").get_json()["id"]


def _earn(app: Flask, resident_id: int, rides: int = 1, region: str = "430602") -> None:
    """Certified bus rides of 80 km (4160 g each), a day apart, credited: 360 points each under the
    Yueyang rules (a 3000 g daily cap at 120 points per kg)."""
    with app.app_context():
        ids = []
        for day in range(rides):
            _, reduction = activities.record_one(
                activity_type="bus_ride", occurred_at=MORNING - timedelta(days=day),
                data={"distance_km": "80", "duration_min": 120}, region=region, source="demo",
                resident_id=resident_id)
            assert reduction is not None
            ids.append(reduction.id)
        db.session.commit()
        ledger.credit(ids)
        db.session.commit()


def _partner(operator: Api, name: str = "岳阳停车") -> dict[str, Any]:
    response = operator.post("/api/v1/admin/partners", {"name": name, "kind": "other", "activity_types": ["bus_ride"],
                                                        "region": "430600"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _right_body(partner: int, **overrides: Any) -> dict[str, Any]:
    return {"title": "2 小时免费停车 2 hours free parking", "description": "市区公共停车场", "kind": "parking",
            "region": "430600", "partner_id": partner, "points_price": 100, "per_user_limit": 1,
            "valid_until": (utcnow() + timedelta(days=60)).isoformat(), "code_valid_days": 30, **overrides}


def _right(operator: Api, partner_id: int, **overrides: Any) -> dict[str, Any]:
    response = operator.post("/api/v1/admin/rights", _right_body(partner_id, **overrides))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _claim(person: Api, right_id: int, key: str | None = None) -> Any:
    return person.post(f"/api/v1/me/rights/{right_id}/claim", headers={"Idempotency-Key": key} if key else None)


def _points(person: Api) -> int:
    return person.get("/api/v1/me/balance").get_json()["points"]


def _ok(app: Flask) -> dict[str, int]:
    with app.app_context():
        report = verify()
        assert report.breaches == [] and report.ok
        return report.totals


def _grants(app: Flask) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(RightGrant)))


_AGO = itertools.count()


def _call(client: FlaskClient, partner: dict[str, Any], action: str, code: str) -> Any:
    """A signed call; each one a second further back, so a repeated call is not refused as a replay."""
    return partner_call(client, partner["key_id"], partner["secret"], "POST", f"/api/v1/partner/rights/{action}",
                        {"code": code}, timestamp=int(time.time()) - next(_AGO) % 200)


# --- claims ----------------------------------------------------------------------------------------


def test_claim_with_points(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    person, rid = _resident(api, "lihua")
    _earn(app, rid)
    assert _points(person) == 360
    partner = _partner(staff["operator1"])
    right = _right(staff["operator1"], partner["id"], stock=5, per_user_limit=2)
    assert (right["stock_total"], right["stock_left"], right["status"]) == (5, 5, "active")

    response = _claim(person, right["id"], "claim-1")
    assert response.status_code == 201, response.get_json()
    grant = response.get_json()
    assert (grant["via"], grant["points"], grant["status"], grant["right_id"]) == ("points", 100, "issued", right["id"])
    assert len(grant["code"]) == 10 and set(grant["code"]) <= ALPHABET
    assert datetime.fromisoformat(grant["expires_at"]) > utcnow() + timedelta(days=29)
    assert _points(person) == 260

    again = _claim(person, right["id"], "claim-1")                               # a retry: the same grant
    assert (again.status_code, again.get_json()["id"], again.get_json()["code"]) == (200, grant["id"], grant["code"])
    assert _points(person) == 260
    other = _right(staff["operator1"], partner["id"], title="公交乘车券 bus voucher", kind="transit")
    reused = _claim(person, other["id"], "claim-1")
    assert (reused.status_code, reused.get_json()["error"]) == (409, "idempotency_key_reused")
    too_long = _claim(person, right["id"], "k" * 81)
    assert too_long.status_code == 422 and "Idempotency-Key" in too_long.get_json()["errors"]["headers"]

    listed = {r["id"]: r for r in person.get("/api/v1/rights").get_json()["items"]}
    assert listed[right["id"]]["stock_left"] == 4 and listed[right["id"]]["claimed"] == 1
    assert (listed[right["id"]]["can_claim"], listed[right["id"]]["claim_via"]) == (True, "points")
    mine = person.get("/api/v1/me/rights").get_json()
    assert [g["id"] for g in mine["items"]] == [grant["id"]] and mine["items"][0]["title"] == right["title"]

    with app.app_context():  # the points left circulation: to the issuance account of the rules' region
        entry = db.session.get(JournalEntry, db.session.get(RightGrant, grant["id"]).entry_id)
        postings = db.session.execute(select(LedgerAccount.kind, LedgerAccount.region_code, Posting.amount)
                                      .join(Posting, Posting.account_id == LedgerAccount.id)
                                      .where(Posting.entry_id == entry.id).order_by(Posting.amount)).all()
        assert [tuple(p) for p in postings] == [("resident_wallet", None, -100), ("issuance", "430600", 100)]
    assert _ok(app)["issued"] == 260


def test_claim_by_level_costs_no_points(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    person, rid = _resident(api, "lihua")
    assert person.get("/api/v1/me/level").get_json() == {
        "level": SPROUT, "lifetime_grams": 0, "next_level": SEEDLING, "grams_to_next": 8000,
        "levels": [{"name": SPROUT, "min_grams": 0}, {"name": SEEDLING, "min_grams": 8000},
                   {"name": TREE, "min_grams": 80000}, {"name": "绿林 Forest", "min_grams": 800000},
                   {"name": "洞庭卫士 Dongting Guardian", "min_grams": 2000000}]}
    _earn(app, rid, rides=2)                                                      # 8320 g: Seedling
    level = person.get("/api/v1/me/level").get_json()
    assert (level["level"], level["lifetime_grams"], level["next_level"], level["grams_to_next"]) == (
        SEEDLING, 8320, TREE, 71680)
    partner = _partner(staff["operator1"])
    right = _right(staff["operator1"], partner["id"], min_level=SEEDLING, points_price=100)
    before = _points(person)
    response = _claim(person, right["id"])
    assert response.status_code == 201, response.get_json()
    assert (response.get_json()["via"], response.get_json()["points"]) == ("level", 0)
    assert _points(person) == before
    with app.app_context():
        assert db.session.get(RightGrant, response.get_json()["id"]).entry_id is None
    _ok(app)


def test_level_not_reached_and_not_enough_points_move_nothing(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    person, _ = _resident(api, "lihua")
    partner = _partner(staff["operator1"])
    level_only = _right(staff["operator1"], partner["id"], min_level=TREE, points_price=None)
    for_points = _right(staff["operator1"], partner["id"], min_level=TREE, points_price=100)
    listed = {r["id"]: r for r in person.get("/api/v1/rights").get_json()["items"]}
    assert (listed[level_only["id"]]["can_claim"], listed[level_only["id"]]["reason"]) == (False, "level_not_reached")
    assert (listed[for_points["id"]]["can_claim"], listed[for_points["id"]]["reason"]) == (False, "insufficient_points")
    refused = _claim(person, level_only["id"])
    assert (refused.status_code, refused.get_json()["error"]) == (409, "level_not_reached")
    assert TREE in refused.get_json()["message"]
    poor = _claim(person, for_points["id"], "poor")
    assert (poor.status_code, poor.get_json()["error"]) == (409, "insufficient_points")
    assert _grants(app) == 0
    assert staff["operator1"].get("/api/v1/admin/rights").get_json()["items"][0]["stock_left"] is None
    _ok(app)


def test_out_of_stock(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    partner = _partner(staff["operator1"])
    right = _right(staff["operator1"], partner["id"], min_level=SPROUT, points_price=None, stock=1)
    first, _ = _resident(api, "lihua")
    second, _ = _resident(api, "wangfang")
    assert _claim(first, right["id"]).status_code == 201
    listed = {r["id"]: r for r in second.get("/api/v1/rights").get_json()["items"]}
    assert (listed[right["id"]]["stock_left"], listed[right["id"]]["reason"]) == (0, "out_of_stock")
    refused = _claim(second, right["id"])
    assert (refused.status_code, refused.get_json()["error"]) == (409, "out_of_stock")
    assert _grants(app) == 1


def test_per_user_limit(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    partner = _partner(staff["operator1"])
    right = _right(staff["operator1"], partner["id"], min_level=SPROUT, points_price=None, per_user_limit=2)
    person, _ = _resident(api, "lihua")
    assert [_claim(person, right["id"]).status_code for _ in range(2)] == [201, 201]
    refused = _claim(person, right["id"])
    assert (refused.status_code, refused.get_json()["error"]) == (409, "limit_reached")
    listed = {r["id"]: r for r in person.get("/api/v1/rights").get_json()["items"]}
    assert (listed[right["id"]]["claimed"], listed[right["id"]]["reason"]) == (2, "limit_reached")
    assert _claim(sign_up(api, "wangfang"), right["id"]).status_code == 201     # the limit is per person
    page = person.get("/api/v1/me/rights?limit=1").get_json()
    rest = person.get(f"/api/v1/me/rights?limit=1&cursor={page['next_cursor']}").get_json()
    assert page["items"][0]["id"] > rest["items"][0]["id"] and rest["next_cursor"] is None


def test_rights_of_other_regions_are_not_shown_or_claimable(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    partner = _partner(staff["admin1"], "株洲停车")
    zhuzhou = _right(staff["admin1"], partner["id"], region="430200", min_level=SPROUT, points_price=None)
    province = _right(staff["admin1"], partner["id"], region="430000", title="全省公交 province bus", kind="transit",
                      min_level=SPROUT, points_price=None)
    person, _ = _resident(api, "lihua")                                          # Yueyang, 430602
    assert [r["id"] for r in person.get("/api/v1/rights").get_json()["items"]] == [province["id"]]
    assert _claim(person, zhuzhou["id"]).status_code == 404
    assert _claim(person, 999999).status_code == 404
    assert _claim(person, province["id"]).status_code == 201


def test_withdrawn_and_lapsed_rights_cannot_be_claimed(app: Flask, api: Api, staff: dict[str, Api],
                                                       client: FlaskClient) -> None:
    partner = _partner(staff["operator1"])
    right = _right(staff["operator1"], partner["id"], min_level=SPROUT, points_price=None, per_user_limit=3)
    person, _ = _resident(api, "lihua")
    code = _claim(person, right["id"]).get_json()["code"]
    assert staff["auditor1"].post(f"/api/v1/admin/rights/{right['id']}/withdraw").status_code == 403
    withdrawn = staff["operator1"].post(f"/api/v1/admin/rights/{right['id']}/withdraw", {"reason": "合同到期"})
    assert (withdrawn.status_code, withdrawn.get_json()["status"]) == (200, "withdrawn")
    assert person.get("/api/v1/rights").get_json()["items"] == []
    refused = _claim(person, right["id"])
    assert (refused.status_code, refused.get_json()["error"]) == (409, "right_withdrawn")
    assert _call(client, partner, "consume", code).status_code == 200          # granted codes stay good
    lapsing = _right(staff["operator1"], partner["id"], min_level=SPROUT, points_price=None)
    with app.app_context():
        db.session.execute(update(OpenedRight).where(OpenedRight.id == lapsing["id"])
                           .values(valid_until=utcnow() - timedelta(minutes=1)))
        db.session.commit()
    refused = _claim(person, lapsing["id"])
    assert (refused.status_code, refused.get_json()["error"]) == (409, "right_expired")
    audit = staff["admin1"].get("/api/v1/admin/audit-log?action=right.withdraw").get_json()["items"]
    assert [(e["target_id"], e["reason"]) for e in audit] == [(str(right["id"]), "合同到期")]


# --- partners --------------------------------------------------------------------------------------


def test_partner_checks_and_consumes_a_code_once(app: Flask, api: Api, staff: dict[str, Api],
                                                 client: FlaskClient) -> None:
    partner = _partner(staff["operator1"])
    right = _right(staff["operator1"], partner["id"], min_level=SPROUT, points_price=None)
    person, _ = _resident(api, "lihua", region="430602")
    code = _claim(person, right["id"]).get_json()["code"]
    checked = _call(client, partner, "check", code.lower()[:5] + "-" + code.lower()[5:])   # as typed at a desk
    assert checked.status_code == 200, checked.get_json()
    body = checked.get_json()
    assert (body["code"], body["status"], body["title"], body["kind"], body["resident_display_name"]) == (
        code, "issued", right["title"], "parking", "Lihua")
    consumed = _call(client, partner, "consume", code)
    assert (consumed.status_code, consumed.get_json()["status"]) == (200, "consumed")
    twice = _call(client, partner, "consume", code)
    assert (twice.status_code, twice.get_json()["error"]) == (409, "already_consumed")
    assert _call(client, partner, "check", code).get_json()["status"] == "consumed"
    assert person.get("/api/v1/me/rights").get_json()["items"][0]["status"] == "consumed"
    unsigned = client.post("/api/v1/partner/rights/consume", json={"code": code})
    assert unsigned.status_code == 401


def test_another_partners_code_is_not_found(app: Flask, api: Api, staff: dict[str, Api],
                                            client: FlaskClient) -> None:
    parking, bus = _partner(staff["operator1"]), _partner(staff["operator1"], "岳阳公交")
    right = _right(staff["operator1"], parking["id"], min_level=SPROUT, points_price=None)
    person, _ = _resident(api, "lihua")
    code = _claim(person, right["id"]).get_json()["code"]
    for action in ("check", "consume"):
        response = _call(client, bus, action, code)
        assert (response.status_code, response.get_json()["error"]) == (404, "unknown_code")
    unknown = _call(client, parking, "check", "0000000000")
    assert (unknown.status_code, unknown.get_json()["error"]) == (404, "unknown_code")
    for bad in ("", "ABC", "UUUUUUUUUU", "x" * 33):
        response = _call(client, parking, "consume", bad)
        assert response.status_code == 422 and "code" in response.get_json()["errors"]["json"], bad
    assert _call(client, parking, "consume", code).status_code == 200


def test_an_expired_code_is_refused_and_marked(app: Flask, api: Api, staff: dict[str, Api],
                                               client: FlaskClient) -> None:
    partner = _partner(staff["operator1"])
    right = _right(staff["operator1"], partner["id"], min_level=SPROUT, points_price=None, per_user_limit=3)
    person, _ = _resident(api, "lihua")
    codes = [_claim(person, right["id"]).get_json()["code"] for _ in range(3)]
    with app.app_context():
        db.session.execute(update(RightGrant).where(RightGrant.code.in_(codes[:2]))
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert person.get("/api/v1/me/rights").get_json()["items"][-1]["status"] == "expired"
    refused = _call(client, partner, "consume", codes[0])
    assert (refused.status_code, refused.get_json()["error"]) == (409, "expired")
    with app.app_context():
        statuses = dict(db.session.execute(select(RightGrant.code, RightGrant.status)).all())
        assert statuses == {codes[0]: "expired", codes[1]: "issued", codes[2]: "issued"}
        assert rights.expire_grants(utcnow()) == 1                                # codes[1]
        assert rights.expire_grants(utcnow()) == 0
        db.session.commit()
        statuses = dict(db.session.execute(select(RightGrant.code, RightGrant.status)).all())
        assert statuses == {codes[0]: "expired", codes[1]: "expired", codes[2]: "issued"}
    again = _call(client, partner, "consume", codes[1])
    assert (again.status_code, again.get_json()["error"]) == (409, "expired")
    assert _call(client, partner, "check", codes[0]).get_json()["status"] == "expired"
    assert _call(client, partner, "consume", codes[2]).status_code == 200


# --- operators and bad input -------------------------------------------------------------------------


def test_bad_right_input_names_the_field(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    op = staff["operator1"]
    partner = _partner(op)
    cases = [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"kind": "spaceship"}, "kind"),
        ({"region": "43060"}, "region"),
        ({"region": "430699"}, "region"),
        ({"partner_id": 999999}, "partner_id"),
        ({"partner_id": "1"}, "partner_id"),
        ({"points_price": None, "min_level": None}, "points_price"),
        ({"points_price": 0}, "points_price"),
        ({"points_price": 1.5}, "points_price"),
        ({"min_level": "金牌 Gold"}, "min_level"),
        ({"stock": 0}, "stock"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"code_valid_days": 0}, "code_valid_days"),
        ({"valid_until": "2020-01-01T00:00:00+00:00"}, "valid_until"),
        ({"valid_until": "2099-01-01T00:00:00"}, "valid_until"),               # no time zone
        ({"valid_until": "soon"}, "valid_until"),
        ({"valid_until": "9999-12-31T23:59:59-12:00"}, "valid_until"),       # past the calendar in UTC
        ({"secret": "x"}, "secret"),
    ]
    for change, field in cases:
        response = op.post("/api/v1/admin/rights", _right_body(partner["id"], **change))
        assert response.status_code == 422, (change, response.get_json())
        assert field in response.get_json()["errors"]["json"], (change, response.get_json())
    # Shifeng's own rules have no levels: no min_level can be named there.
    admin = staff["admin1"]
    shifeng = admin.post("/api/v1/admin/rights", _right_body(partner["id"], region="430204", min_level=SPROUT))
    assert shifeng.status_code == 422 and "no levels" in shifeng.get_json()["errors"]["json"]["min_level"][0]
    assert op.get("/api/v1/admin/rights").get_json()["items"] == []


def test_operators_are_held_to_their_region_and_auditors_only_read(app: Flask, api: Api,
                                                                   staff: dict[str, Api]) -> None:
    partner = _partner(staff["operator1"])
    elsewhere = staff["operator1"].post("/api/v1/admin/rights", _right_body(partner["id"], region="430200"))
    assert (elsewhere.status_code, elsewhere.get_json()["error"]) == (403, "out_of_scope")
    assert staff["auditor1"].post("/api/v1/admin/rights", _right_body(partner["id"])).status_code == 403
    yueyang = _right(staff["operator1"], partner["id"])
    zhuzhou = _right(staff["admin1"], partner["id"], region="430200")
    assert [r["id"] for r in staff["auditor1"].get("/api/v1/admin/rights").get_json()["items"]] == [yueyang["id"]]
    assert [r["id"] for r in staff["admin1"].get("/api/v1/admin/rights").get_json()["items"]] == [
        zhuzhou["id"], yueyang["id"]]
    assert staff["operator1"].post(f"/api/v1/admin/rights/{zhuzhou['id']}/withdraw").status_code == 403
    assert staff["operator1"].post("/api/v1/admin/rights/999999/withdraw").status_code == 404
    person, _ = _resident(api, "lihua")
    assert person.get("/api/v1/admin/rights").status_code == 403
    assert staff["operator1"].get("/api/v1/rights").status_code == 403


def test_regions_without_levels_have_no_level(app: Flask, api: Api) -> None:
    person, rid = _resident(api, "lihua", region="430204")                        # Shifeng: its own rules, no levels
    _earn(app, rid, region="430204")
    level = person.get("/api/v1/me/level").get_json()
    assert level == {"level": None, "lifetime_grams": 4160, "next_level": None, "grams_to_next": None, "levels": []}
    hunan, _ = _resident(api, "wangfang", region="430400")                        # Hengyang: the Hunan ladder
    assert hunan.get("/api/v1/me/level").get_json()["grams_to_next"] == 10000


# --- concurrency -----------------------------------------------------------------------------------


@on_postgres
def test_concurrent_claims_never_oversell(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    partner = _partner(staff["operator1"])
    right = _right(staff["operator1"], partner["id"], stock=3, points_price=100)
    people = []
    for i in range(8):
        person, rid = _resident(api, f"racer{i}")
        _earn(app, rid)                                                           # 360 points each
        people.append(person)
    # One resident also races against themself: a per-user limit of 1 under contention.
    greedy = people[0]
    calls = [(p, f"k-{i}") for i, p in enumerate(people)] + [(greedy, "greedy-2"), (greedy, "greedy-3")]

    def claim(person: Api, key: str) -> tuple[int, str | None]:
        response = person.post(f"/api/v1/me/rights/{right['id']}/claim", headers={"Idempotency-Key": key})
        return response.status_code, response.get_json().get("error")

    outcomes = run_together(lambda person, key: claim(Api(app.test_client(), person.token), key), calls)
    assert all(isinstance(o, tuple) for o in outcomes), outcomes
    assert sum(1 for status, _ in outcomes if status == 201) == 3, outcomes
    assert {error for status, error in outcomes if status != 201} <= {"out_of_stock", "limit_reached"}, outcomes
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RightGrant)) == 3
        per_resident = db.session.execute(select(RightGrant.resident_id, func.count())
                                          .group_by(RightGrant.resident_id)).all()
        assert all(count == 1 for _, count in per_resident)
        assert db.session.scalar(select(func.min(LedgerAccount.balance))
                                 .where(LedgerAccount.kind == "resident_wallet")) >= 0
    left = staff["operator1"].get("/api/v1/admin/rights").get_json()["items"][0]["stock_left"]
    assert left == 0
    assert sum(_points(p) for p in people) == 8 * 360 - 3 * 100
    _ok(app)


@on_postgres
def test_a_code_is_consumed_once_under_contention(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    partner = _partner(staff["operator1"])
    right = _right(staff["operator1"], partner["id"], min_level=SPROUT, points_price=None)
    person, _ = _resident(api, "lihua")
    code = _claim(person, right["id"]).get_json()["code"]
    outcomes = run_together(lambda i: _call(app.test_client(), partner, "consume", code + " " * i).status_code,
                            [(i,) for i in range(6)])
    assert sorted(outcomes) == [200, 409, 409, 409, 409, 409], outcomes


