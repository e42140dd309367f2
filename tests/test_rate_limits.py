"""Rate limits (issue #7 point 3): per partner on the batch endpoint (after the signature), per
address on refused partner signatures, per resident on reserving offers; 429s in the one envelope
with Retry-After; limits that hold in memory when Redis is unreachable; settings validated."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from backend.app import create_app
from backend.config import ConfigError, load_settings
from backend.db import db, utcnow
from backend.models import PartnerBinding, Redemption
from tests.conftest import PASSWORD, SECRET, Api, login, make_settings, sign_up
from tests.partner_client import signed_headers

BATCH = "/api/v1/partner/activities"
YUEYANG = "430602"


# --- a small world, shared with test_degradation ----------------------------------------------------


def make_partner(operator: Api, name: str = "岳阳公交") -> dict[str, Any]:
    response = operator.post("/api/v1/admin/partners", {"name": name, "kind": "transit",
                                                        "activity_types": ["bus_ride"], "region": "430600"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def bind(app: Flask, person: Api, partner: dict[str, Any], ref: str) -> None:
    """Consent given ten days ago, so trips of the last days count."""
    response = person.post("/api/v1/me/bindings", {"partner_id": partner["id"], "external_user_ref": ref})
    assert response.status_code == 201, response.get_json()
    with app.app_context():
        db.session.execute(update(PartnerBinding).where(PartnerBinding.id == response.get_json()["id"])
                           .values(created_at=utcnow() - timedelta(days=10)))
        db.session.commit()


def trip(ext: str, ref: str, at: datetime, km: str = "10") -> dict[str, Any]:
    return {"external_id": ext, "user_ref": ref, "type": "bus_ride", "occurred_at": at.isoformat(),
            "data": {"distance_km": km, "duration_min": 30}}


def signed_batch(partner: dict[str, Any], items: list[dict[str, Any]],
                 timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A signed batch request as a partner sends it: kept, so a test can replay it byte for byte."""
    body = json.dumps({"activities": items}).encode()
    return body, signed_headers(partner["key_id"], partner["secret"], "POST", BATCH, body, timestamp)


def send(client: FlaskClient, request: tuple[bytes, dict[str, str]], address: str = "192.0.2.10") -> Any:
    body, headers = request
    return client.post(BATCH, data=body, headers=headers, environ_base={"REMOTE_ADDR": address})


def make_shop(app: Flask, api: Api, operator: Api, till: str = "till-1") -> Api:
    merchant = operator.post("/api/v1/admin/merchants", {"name": f"绿色超市 {till}", "region": YUEYANG})
    assert merchant.status_code == 201, merchant.get_json()
    added = operator.post(f"/api/v1/admin/merchants/{merchant.get_json()['id']}/staff",
                          {"username": till, "password": PASSWORD})
    assert added.status_code == 201, added.get_json()
    return login(api, till)


def make_offer(shop: Api, price: int = 30, stock: int = 20) -> dict[str, Any]:
    response = shop.post("/api/v1/merchant/offers", {
        "title": "环保购物袋", "points_price": price, "stock": stock, "per_user_limit": 20,
        "valid_until": (utcnow() + timedelta(days=30)).isoformat()})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def reserve(person: Api, offer_id: int, key: str) -> Any:
    return person.post("/api/v1/me/redemptions", {"offer_id": offer_id}, headers={"Idempotency-Key": key})


def assert_rate_limited(response: Any) -> dict[str, Any]:
    """A 429 in the platform's envelope, saying when to come back."""
    assert response.status_code == 429, response.get_json()
    body = response.get_json()
    assert set(body) >= {"code", "status", "error", "message", "errors"}
    assert (body["code"], body["error"]) == (429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-RateLimit-Remaining"] == "0"
    return body


def days_ago(days: int, hour: int = 8) -> datetime:
    return (utcnow() - timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


# --- per partner -----------------------------------------------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"partner_rate_limit": "3 per minute", "partner_auth_failures_per_ip": "4 per minute",
            "redemption_rate_limit": "2 per minute"}


@pytest.fixture
def world(app: Flask, api: Api, staff: dict[str, Api]) -> dict[str, Any]:
    person = sign_up(api, "rider", region=YUEYANG)
    bus = make_partner(staff["operator1"])
    bind(app, person, bus, "card-1")
    return {"person": person, "bus": bus, "other": make_partner(staff["operator1"], "岳阳地铁")}


def test_a_partner_gets_its_quota_and_then_429(client: FlaskClient, world: dict[str, Any]) -> None:
    bus, other = world["bus"], world["other"]
    for i in range(3):
        answer = send(client, signed_batch(bus, [trip(f"t{i}", "card-1", days_ago(3, 8 + i))]))
        assert answer.status_code == 200, answer.get_json()
        assert answer.headers["X-RateLimit-Limit"] == "3"
    body = assert_rate_limited(send(client, signed_batch(bus, [trip("t9", "card-1", days_ago(2))])))
    assert "batches from this partner" in body["message"]
    # The quota is the partner's own: another partner from the same address is served.
    assert send(client, signed_batch(other, [trip("o1", "nobody", days_ago(2))])).status_code == 200


def test_nobody_else_can_spend_a_partners_quota(client: FlaskClient, world: dict[str, Any]) -> None:
    bus = world["bus"]
    forged = {**bus, "secret": "not-the-secret-" * 3}
    for i in range(3):  # another address, the partner's key id, a wrong secret
        refused = send(client, signed_batch(forged, [trip(f"f{i}", "card-1", days_ago(2))]), address="198.51.100.7")
        assert (refused.status_code, refused.get_json()["error"]) == (401, "signature_invalid")
    for i in range(3):  # the partner's whole quota is still there
        assert send(client, signed_batch(bus, [trip(f"t{i}", "card-1", days_ago(3, 8 + i))])).status_code == 200
    assert_rate_limited(send(client, signed_batch(bus, [trip("t9", "card-1", days_ago(2))])))


def test_refused_signatures_are_limited_per_address(client: FlaskClient, world: dict[str, Any]) -> None:
    bus = world["bus"]
    forged = {**bus, "secret": "not-the-secret-" * 3}
    attacker = "198.51.100.7"
    for i in range(4):
        assert send(client, signed_batch(forged, [trip(f"f{i}", "x", days_ago(2))]), attacker).status_code == 401
    # The fifth from that address is refused before its signature is even looked at.
    assert_rate_limited(send(client, signed_batch(bus, [trip("t1", "card-1", days_ago(2))]), attacker))
    me = client.get("/api/v1/partner/me", environ_base={"REMOTE_ADDR": attacker})
    assert me.status_code == 429   # the same budget guards /partner/me
    # Good signatures from the partner's own address never count toward it.
    assert send(client, signed_batch(bus, [trip("t2", "card-1", days_ago(3))])).status_code == 200


def test_a_replayed_request_counts_as_a_refused_signature(client: FlaskClient, world: dict[str, Any]) -> None:
    request = signed_batch(world["bus"], [trip("t1", "card-1", days_ago(3))])
    assert send(client, request, "203.0.113.5").status_code == 200
    for _ in range(4):
        assert send(client, request, "203.0.113.5").get_json()["error"] == "replayed"
    assert_rate_limited(send(client, request, "203.0.113.5"))


# --- per resident on reserving an offer ------------------------------------------------------------


def test_reservations_are_limited_per_resident(app: Flask, api: Api, client: FlaskClient, staff: dict[str, Api],
                                               world: dict[str, Any]) -> None:
    person, bus = world["person"], world["bus"]
    answer = send(client, signed_batch(bus, [trip("t1", "card-1", days_ago(3), km="20"),
                                             trip("t2", "card-1", days_ago(2), km="20")]))
    assert [r["status"] for r in answer.get_json()["results"]] == ["credited", "credited"]
    offer = make_offer(make_shop(app, api, staff["operator1"]), price=10)
    before = person.get("/api/v1/me/balance").get_json()["points"]

    assert reserve(person, offer["id"], "k-1").status_code == 201
    assert reserve(person, offer["id"], "k-2").status_code == 201
    body = assert_rate_limited(reserve(person, offer["id"], "k-3"))
    assert "reservations" in body["message"]
    # Refused before anything moved: two holds, not three.
    assert person.get("/api/v1/me/balance").get_json()["points"] == before - 20
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Redemption)) == 2
    # Reading is not limited, and another resident has a quota of their own.
    assert person.get("/api/v1/me/redemptions").status_code == 200
    neighbour = sign_up(api, "neighbour", region=YUEYANG)
    bind(app, neighbour, bus, "card-2")
    send(client, signed_batch(bus, [trip("n1", "card-2", days_ago(3), km="20")]))
    assert reserve(neighbour, offer["id"], "n-1").status_code == 201


# --- Redis unreachable: the limits hold in this process ---------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_limits_hold_in_memory_while_redis_is_unreachable(database_url: str, tmp_path: Any) -> None:
    from backend.extensions import limiter

    app = create_app(make_settings(database_url, tmp_path, redis_url=f"redis://127.0.0.1:{_closed_port()}/0",
                                   redis_cooldown=30.0))
    try:
        api = Api(app.test_client())
        statuses = [api.post("/api/v1/auth/token", {"username": "ghost", "password": "wrong-password"}).status_code
                    for _ in range(6)]
        assert statuses == [401] * 5 + [429]
        assert limiter.on_fallback
        assert_rate_limited(api.post("/api/v1/auth/token", {"username": "ghost", "password": "wrong-password"}))
    finally:
        app.extensions["database"].engine.dispose()


# --- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("PARTNER_RATE_LIMIT", "lots"),
    ("PARTNER_RATE_LIMIT", "5 per fortnight"),
    ("PARTNER_AUTH_FAILURES_PER_IP", "0 per minute"),
    ("REDEMPTION_RATE_LIMIT", "10 per minute;-1 per day"),
    ("LOGIN_RATE_LIMIT", "twenty a minute"),
    ("LOGIN_FAILURES_PER_USER", "5 per"),
])
def test_a_bad_limit_stops_start_up_naming_it(tmp_path: Any, name: str, value: str) -> None:
    env = {"CARBON_ENV": "testing", "SECRET_KEY": SECRET, "CARBON_INSTANCE_PATH": str(tmp_path), name: value}
    with pytest.raises(ConfigError, match=name):
        load_settings(env)


@pytest.mark.parametrize("settings_overrides", [{"signup_rate_limit": "2 per hour"}])
def test_sign_ups_per_address_follow_their_setting(api: Api) -> None:
    sign_up(api, "first")
    sign_up(api, "second")
    third = api.post("/api/v1/residents", {"username": "third", "password": "long-enough-pw",
                                           "display_name": "third", "region": YUEYANG})
    assert_rate_limited(third)


def test_limits_are_read_from_the_environment(tmp_path: Any) -> None:
    env = {"CARBON_ENV": "testing", "SECRET_KEY": SECRET, "CARBON_INSTANCE_PATH": str(tmp_path),
           "PARTNER_RATE_LIMIT": "600 per minute;20000 per hour", "REDEMPTION_RATE_LIMIT": " 3 per minute ",
           "PARTNER_AUTH_FAILURES_PER_IP": "10/minute", "SIGNUP_RATE_LIMIT": "5 per hour"}
    settings = load_settings(env)
    assert settings.signup_rate_limit == "5 per hour"
    assert settings.partner_rate_limit == "600 per minute;20000 per hour"
    assert settings.redemption_rate_limit == "3 per minute"
    assert settings.partner_auth_failures_per_ip == "10/minute"
    defaults = load_settings({k: v for k, v in env.items() if "LIMIT" not in k and "PER_IP" not in k})
    assert (defaults.partner_rate_limit, defaults.redemption_rate_limit) == ("600 per minute",
                                                                            "10 per minute;100 per day")
