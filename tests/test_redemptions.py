"""Offers and redemptions (issue #6 points 1–2): reserve → code → confirm, cancel, time out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from backend.db import db, utcnow
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import LedgerAccount, Lot, Offer, Redemption
from backend.services import activities, ledger, redemptions
from backend.services.ledger_verify import verify
from tests.conftest import PASSWORD, Api, login, on_postgres, run_together, sign_up

YUEYANG = "430602"
YESTERDAY = datetime.now(CHINA_STANDARD_TIME).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=1)


def _earn(app: Flask, resident_id: int, trips: int = 1) -> None:
    """Certified 20 km bus rides on successive mornings, credited."""
    with app.app_context():
        ids = []
        for day in range(trips):
            _, reduction = activities.record_one(
                activity_type="bus_ride", occurred_at=YESTERDAY - timedelta(days=day), region=YUEYANG,
                data={"distance_km": "20", "duration_min": 50}, source="demo", resident_id=resident_id)
            assert reduction is not None
            ids.append(reduction.id)
        assert all(r.status == "credited" for r in ledger.credit(ids))
        db.session.commit()


def _person(api: Api, app: Flask, name: str, trips: int = 1) -> tuple[Api, int]:
    person = sign_up(api, name, region=YUEYANG)
    rid = person.get("/api/v1/me").get_json()["id"]
    _earn(app, rid, trips)
    return person, rid


def _points(person: Api) -> int:
    return person.get("/api/v1/me/balance").get_json()["points"]


def _shop(api: Api, staff: dict[str, Api], name: str = "岳阳楼区绿色生活超市", till: str = "till-1") -> Api:
    op = staff["operator1"]
    merchant = op.post("/api/v1/admin/merchants", {"name": name, "region": YUEYANG}).get_json()["id"]
    added = op.post(f"/api/v1/admin/merchants/{merchant}/staff", {"username": till, "password": PASSWORD})
    assert added.status_code == 201
    return login(api, till)


def _offer(shop: Api, **overrides: Any) -> dict[str, Any]:
    body = {"title": "环保购物袋 reusable bag", "description": "at the counter", "points_price": 30, "stock": 5,
            "per_user_limit": 2, "valid_until": (utcnow() + timedelta(days=30)).isoformat(), **overrides}
    response = shop.post("/api/v1/merchant/offers", body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _reserve(person: Api, offer_id: int, key: str) -> Any:
    return person.post("/api/v1/me/redemptions", {"offer_id": offer_id}, headers={"Idempotency-Key": key})


def _ok(app: Flask) -> None:
    with app.app_context():
        assert verify().breaches == []


def test_reserve_confirm_and_the_ledger(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    shop = _shop(api, staff)
    offer = _offer(shop)
    assert offer["regions"] == [YUEYANG] and offer["stock_left"] == 5
    person, _ = _person(api, app, "lihua", trips=2)
    before = _points(person)
    listed = api.get(f"/api/v1/offers?region={YUEYANG}").get_json()["items"]
    assert [o["id"] for o in listed] == [offer["id"]]
    assert api.get("/api/v1/offers?region=430200").get_json()["items"] == []     # not shown in Zhuzhou

    reserved = _reserve(person, offer["id"], "k-1")
    assert reserved.status_code == 201
    body = reserved.get_json()
    assert body["status"] == "reserved" and body["points"] == 30
    assert len(body["code"]) == 11 and body["code"][5] == "-" and body["qr_payload"].startswith("CPR1:")
    held_for = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(body["reserved_at"])
    assert held_for == timedelta(minutes=15)                                     # the default hold
    assert _points(person) == before - 30
    assert api.get(f"/api/v1/offers/{offer['id']}").get_json()["stock_left"] == 4
    again = _reserve(person, offer["id"], "k-1")                                  # a retry: the same redemption
    assert again.status_code == 200 and again.get_json()["id"] == body["id"] and _points(person) == before - 30

    confirmed = shop.post("/api/v1/merchant/redemptions/confirm", {"code": body["code"].lower()})
    assert confirmed.status_code == 200, confirmed.get_json()
    assert confirmed.get_json()["status"] == "fulfilled" and "*" in confirmed.get_json()["code"]
    twice = shop.post("/api/v1/merchant/redemptions/confirm", {"code": body["qr_payload"]})
    assert (twice.status_code, twice.get_json()["error"]) == (409, "already_fulfilled")
    cancel = person.post(f"/api/v1/me/redemptions/{body['id']}/cancel")
    assert (cancel.status_code, cancel.get_json()["error"]) == (409, "already_fulfilled")
    assert person.get("/api/v1/me/redemptions").get_json()["items"][0]["status"] == "fulfilled"
    assert shop.get("/api/v1/merchant/redemptions?status=fulfilled").get_json()["items"][0]["id"] == body["id"]
    with app.app_context():
        merchant_id = db.session.get(Redemption, body["id"]).merchant_id
        settlement = ledger.accounts_for("merchant_settlement", [merchant_id])[merchant_id]
        holds = ledger.accounts_for("redemption_holds", [merchant_id])[merchant_id]
        assert ledger.balance_of(settlement) == 30 and ledger.balance_of(holds) == 0
    _ok(app)


def test_cancel_returns_points_to_their_lots_with_their_expiry(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    shop = _shop(api, staff)
    offer = _offer(shop, points_price=150)
    person, rid = _person(api, app, "lihua", trips=2)                            # two lots, each under 150
    with app.app_context():
        wallet = ledger.wallet_of_resident(rid)
        lots_before = sorted(db.session.execute(select(Lot.id, Lot.remaining, Lot.expires_on)
                                                .where(Lot.account_id == wallet)).all())
    before = _points(person)
    body = _reserve(person, offer["id"], "k-1").get_json()
    with app.app_context():
        assert sum(r for _, r, _ in db.session.execute(select(Lot.id, Lot.remaining, Lot.expires_on)
                                                       .where(Lot.account_id == wallet)).all()) == before - 150
    cancelled = person.post(f"/api/v1/me/redemptions/{body['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert _points(person) == before
    with app.app_context():
        assert sorted(db.session.execute(select(Lot.id, Lot.remaining, Lot.expires_on)
                                         .where(Lot.account_id == wallet)).all()) == lots_before
    assert api.get(f"/api/v1/offers/{offer['id']}").get_json()["stock_left"] == 5
    again = person.post(f"/api/v1/me/redemptions/{body['id']}/cancel")
    assert (again.status_code, again.get_json()["error"]) == (409, "already_cancelled")
    late = shop.post("/api/v1/merchant/redemptions/confirm", {"code": body["code"]})
    assert (late.status_code, late.get_json()["error"]) == (409, "already_cancelled")
    _ok(app)


def test_a_hold_times_out(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    shop = _shop(api, staff)
    offer = _offer(shop)
    person, _ = _person(api, app, "lihua")
    before = _points(person)
    body = _reserve(person, offer["id"], "k-1").get_json()
    later = utcnow() + redemptions.HOLD_TIMEOUT + timedelta(seconds=1)
    with app.app_context():
        db.session.execute(text("UPDATE redemptions SET expires_at = :t WHERE id = :i"),
                           {"t": utcnow() - timedelta(seconds=1), "i": body["id"]})
        db.session.commit()
    refused = shop.post("/api/v1/merchant/redemptions/confirm", {"code": body["code"]})
    assert (refused.status_code, refused.get_json()["error"]) == (409, "expired")
    with app.app_context():
        assert redemptions.expire_holds(now=later) == 1
        db.session.commit()
        assert redemptions.expire_holds(now=later) == 0                          # idempotent
    assert person.get(f"/api/v1/me/redemptions/{body['id']}").get_json()["status"] == "expired"
    assert _points(person) == before
    assert api.get(f"/api/v1/offers/{offer['id']}").get_json()["stock_left"] == 5
    _ok(app)


def test_refusals_move_nothing(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    shop = _shop(api, staff)
    other_shop = _shop(api, staff, name="另一家店", till="till-2")
    person, _ = _person(api, app, "lihua")
    poor, _ = _person(api, app, "wangwu", trips=0)
    offer = _offer(shop, stock=1, per_user_limit=1)
    dear = _offer(shop, points_price=1_000_000)
    before = _points(person)

    def refused(response: Any, status: int, error: str) -> None:
        assert (response.status_code, response.get_json()["error"]) == (status, error), response.get_json()

    refused(_reserve(person, dear["id"], "k-dear"), 409, "insufficient_points")
    refused(_reserve(poor, offer["id"], "k-poor"), 409, "insufficient_points")
    missing_key = person.post("/api/v1/me/redemptions", {"offer_id": offer["id"]})
    assert missing_key.status_code == 422 and "Idempotency-Key" in missing_key.get_json()["errors"]["headers"]
    refused(_reserve(person, 999_999, "k-none"), 404, "not_found")
    body = _reserve(person, offer["id"], "k-1").get_json()
    refused(_reserve(person, dear["id"], "k-1"), 409, "idempotency_key_reused")
    refused(_reserve(person, offer["id"], "k-2"), 409, "out_of_stock")
    refused(other_shop.post("/api/v1/merchant/redemptions/confirm", {"code": body["code"]}), 404, "unknown_code")
    refused(other_shop.patch(f"/api/v1/merchant/offers/{offer['id']}", {"add_stock": 5}), 404, "not_found")
    bad = shop.post("/api/v1/merchant/redemptions/confirm", {"code": "not-a-code"})
    assert bad.status_code == 422 and "code" in bad.get_json()["errors"]["json"]
    assert _points(person) == before - 30 and _points(poor) == 0

    # After more stock, the per-user limit still holds.
    assert shop.patch(f"/api/v1/merchant/offers/{offer['id']}", {"add_stock": 3}).get_json()["stock_left"] == 3
    refused(_reserve(person, offer["id"], "k-3"), 409, "per_user_limit")
    assert shop.patch(f"/api/v1/merchant/offers/{offer['id']}", {"status": "withdrawn"}).status_code == 200
    refused(_reserve(person, offer["id"], "k-4"), 409, "offer_withdrawn")
    past = _offer(shop, valid_from=(utcnow() - timedelta(days=2)).isoformat(),
                  valid_until=(utcnow() + timedelta(seconds=2)).isoformat())
    with app.app_context():
        db.session.execute(text("UPDATE offers SET valid_until = :t WHERE id = :i"),
                           {"t": utcnow() - timedelta(seconds=1), "i": past["id"]})
        db.session.commit()
    refused(_reserve(person, past["id"], "k-5"), 409, "offer_expired")
    zhuzhou = sign_up(api, "zhangsan", region="430204")
    refused(_reserve(zhuzhou, dear["id"], "k-6"), 409, "not_offered_here")
    assert _points(person) == before - 30
    _ok(app)


@pytest.mark.parametrize(("body", "field"), [
    ({"points_price": 0}, "points_price"), ({"points_price": "30"}, "points_price"), ({"stock": -1}, "stock"),
    ({"per_user_limit": 0}, "per_user_limit"), ({"valid_until": "2020-01-01T00:00:00+00:00"}, "valid_until"),
    ({"valid_until": "2030-01-01T00:00:00"}, "valid_until"), ({"title": " "}, "title"),
    ({"regions": ["999999"]}, "regions"), ({"regions": ["4306"]}, "regions"),
    # The calendar's ends, where converting to UTC overflows (were 500s on PostgreSQL):
    ({"valid_from": "0001-01-01T00:00:00+08:00"}, "valid_from"),
    ({"valid_until": "9999-12-31T23:59:59-12:00"}, "valid_until"),
])
def test_bad_offers_name_the_field(api: Api, staff: dict[str, Api], body: dict[str, Any], field: str) -> None:
    shop = _shop(api, staff)
    good = {"title": "bag", "points_price": 30, "stock": 5, "valid_until": (utcnow() + timedelta(days=3)).isoformat()}
    response = shop.post("/api/v1/merchant/offers", {**good, **body})
    assert response.status_code == 422 and field in str(response.get_json()["errors"]), response.get_json()
    assert shop.get("/api/v1/merchant/offers").get_json()["items"] == []


def test_the_database_refuses_an_oversold_offer(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    offer = _offer(_shop(api, staff), stock=1)
    with app.app_context(), pytest.raises(DatabaseError, match="stock_within"):
        db.session.execute(text(f"UPDATE offers SET stock_left = stock_left - 2 WHERE id = {offer['id']}"))
        db.session.flush()


@on_postgres
def test_many_residents_one_offer_never_oversells(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    offer = _offer(_shop(api, staff), stock=3, per_user_limit=1)
    people = [_person(api, app, f"person{i}")[0] for i in range(10)]

    def attempt(i: int) -> int:
        client = app.test_client()
        return Api(client, people[i].token).post("/api/v1/me/redemptions", {"offer_id": offer["id"]},
                                                 headers={"Idempotency-Key": f"k{i}"}).status_code

    codes = run_together(attempt, [(i,) for i in range(10)])
    assert sorted(codes) == [201] * 3 + [409] * 7
    with app.app_context():
        assert db.session.get(Offer, offer["id"]).stock_left == 0
        assert db.session.scalar(select(func.count()).select_from(Redemption)) == 3
    _ok(app)


@on_postgres
def test_one_wallet_many_reservations_never_overdraws(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    shop = _shop(api, staff)
    offers = [_offer(shop, points_price=40, stock=10, per_user_limit=10) for _ in range(2)]
    person, rid = _person(api, app, "lihua")                                    # one 20 km ride
    balance = _points(person)

    def attempt(i: int) -> int:
        return Api(app.test_client(), person.token).post(
            "/api/v1/me/redemptions", {"offer_id": offers[i % 2]["id"]}, headers={"Idempotency-Key": f"k{i}"}
        ).status_code

    codes = run_together(attempt, [(i,) for i in range(8)])
    assert codes.count(201) == balance // 40 and set(codes) <= {201, 409}
    with app.app_context():
        wallet = db.session.get(LedgerAccount, ledger.wallet_of_resident(rid))
        assert wallet.balance == balance - 40 * (balance // 40) >= 0
    _ok(app)
