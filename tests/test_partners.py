"""Partners: registration, HMAC request signing, replay, rotation, disabling, secrets at rest."""

from __future__ import annotations

import time

from flask import Flask
from sqlalchemy import text

from backend.db import db
from tests.conftest import Api
from tests.partner_client import partner_call, signed_headers


def _create(operator: Api, name: str = "岳阳市公共交通集团", region: str = "430600", **extra: object) -> dict:
    body = {"name": name, "kind": "transit", "activity_types": ["bus_ride"], "region": region, **extra}
    response = operator.post("/api/v1/admin/partners", body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_shows_the_secret_once(staff: dict[str, Api]) -> None:
    partner = _create(staff["operator1"])
    assert partner["key_id"].startswith("pk_") and len(partner["secret"]) >= 40
    assert partner["region"] == "430600" and partner["activity_types"] == ["bus_ride"]
    again = staff["operator1"].get(f"/api/v1/admin/partners/{partner['id']}").get_json()
    assert "secret" not in again
    listed = staff["operator1"].get("/api/v1/admin/partners").get_json()["items"]
    assert [p["id"] for p in listed] == [partner["id"]] and "secret" not in listed[0]


def test_the_secret_is_encrypted_at_rest(app: Flask, staff: dict[str, Api]) -> None:
    partner = _create(staff["operator1"])
    with app.app_context():
        stored = db.session.execute(text("SELECT secret_ciphertext FROM partners")).scalar_one()
    assert partner["secret"] not in stored
    assert stored.startswith("gAAAA")  # a Fernet token


def test_bad_partner_input(staff: dict[str, Api]) -> None:
    op = staff["operator1"]
    base = {"name": "P", "kind": "transit", "activity_types": ["bus_ride"], "region": "430600"}
    cases = [
        ({"kind": "spaceship"}, "kind"),
        ({"activity_types": ["teleport"]}, "activity_types"),
        ({"activity_types": []}, "activity_types"),
        ({"region": "000000"}, "region"),
        ({"name": "x" * 129}, "name"),
        ({"secret": "mine"}, "secret"),
    ]
    for change, field in cases:
        response = op.post("/api/v1/admin/partners", {**base, **change})
        assert response.status_code == 422, change
        assert field in response.get_json()["errors"]["json"], change
    _create(op, "P")
    dup = op.post("/api/v1/admin/partners", base)
    assert (dup.status_code, dup.get_json()["error"]) == (409, "duplicate_name")


def test_operators_are_held_to_their_region(staff: dict[str, Api]) -> None:
    response = staff["operator1"].post("/api/v1/admin/partners", {
        "name": "株洲公交", "kind": "transit", "activity_types": ["bus_ride"], "region": "430200",
    })
    assert (response.status_code, response.get_json()["error"]) == (403, "out_of_scope")
    zhuzhou_partner = _create(staff["admin1"], "株洲公交", "430200")
    assert staff["operator1"].get(f"/api/v1/admin/partners/{zhuzhou_partner['id']}").status_code == 403
    # A district inside Yueyang is in the operator's scope.
    _create(staff["operator1"], "君山回收", "430611")


def test_signed_request_is_accepted(client, staff: dict[str, Api]) -> None:  # type: ignore[no-untyped-def]
    partner = _create(staff["operator1"])
    response = partner_call(client, partner["key_id"], partner["secret"], "GET", "/api/v1/partner/me")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["name"] == "岳阳市公共交通集团"


def test_bad_signatures_are_refused(client, staff: dict[str, Api]) -> None:  # type: ignore[no-untyped-def]
    partner = _create(staff["operator1"])
    key, secret, path = partner["key_id"], partner["secret"], "/api/v1/partner/me"
    now = int(time.time())

    def error(**kw: object) -> tuple[int, str]:
        response = partner_call(client, key, secret, "GET", path, **kw)
        return response.status_code, response.get_json()["error"]

    assert client.get(path).get_json()["error"] == "signature_missing"
    assert error(timestamp=now - 301) == (401, "timestamp_stale")
    assert error(timestamp=now + 301) == (401, "timestamp_stale")
    assert error(headers={"X-Timestamp": "yesterday"}) == (401, "timestamp_invalid")
    assert error(headers={"X-Signature": "0" * 64}) == (401, "signature_invalid")
    assert error(headers={"X-Signature": "abc"}) == (401, "signature_invalid")
    assert error(headers={"X-Key-Id": "pk_unknown"}) == (401, "unknown_key")
    # Signed for another path, or with another secret, or over another body.
    wrong_path = signed_headers(key, secret, "GET", "/api/v1/partner/other", b"")
    assert client.get(path, headers=wrong_path).status_code == 401
    wrong_secret = signed_headers(key, "not-the-secret", "GET", path, b"")
    assert client.get(path, headers=wrong_secret).status_code == 401
    body_swap = signed_headers(key, secret, "GET", path, b'{"a": 1}')
    assert client.get(path, headers=body_swap, data=b'{"a": 2}').status_code == 401


def test_a_replayed_signature_is_refused(client, staff: dict[str, Api]) -> None:  # type: ignore[no-untyped-def]
    partner = _create(staff["operator1"])
    headers = signed_headers(partner["key_id"], partner["secret"], "GET", "/api/v1/partner/me", b"")
    assert client.get("/api/v1/partner/me", headers=headers).status_code == 200
    replay = client.get("/api/v1/partner/me", headers=headers)
    assert (replay.status_code, replay.get_json()["error"]) == (401, "replayed")
    upper = {**headers, "X-Signature": headers["X-Signature"].upper()}
    assert client.get("/api/v1/partner/me", headers=upper).get_json()["error"] == "replayed"


def test_rotation_keeps_the_old_secret_for_the_grace_period(client, staff: dict[str, Api]) -> None:  # type: ignore[no-untyped-def]
    partner = _create(staff["operator1"])
    rotated = staff["operator1"].post(f"/api/v1/admin/partners/{partner['id']}/rotate", {"grace_hours": 2})
    new_secret = rotated.get_json()["secret"]
    assert new_secret != partner["secret"]
    assert partner_call(client, partner["key_id"], partner["secret"], "GET", "/api/v1/partner/me").status_code == 200
    assert partner_call(client, partner["key_id"], new_secret, "GET", "/api/v1/partner/me").status_code == 200
    hard = staff["operator1"].post(f"/api/v1/admin/partners/{partner['id']}/rotate", {"grace_hours": 0}).get_json()
    assert partner_call(client, partner["key_id"], new_secret, "GET", "/api/v1/partner/me").status_code == 401
    assert partner_call(client, partner["key_id"], hard["secret"], "GET", "/api/v1/partner/me").status_code == 200
    bad = staff["operator1"].post(f"/api/v1/admin/partners/{partner['id']}/rotate", {"grace_hours": 500})
    assert bad.status_code == 422 and "grace_hours" in bad.get_json()["errors"]["json"]


def test_a_disabled_partner_is_refused(client, staff: dict[str, Api]) -> None:  # type: ignore[no-untyped-def]
    partner = _create(staff["operator1"])
    disabled = staff["operator1"].post(f"/api/v1/admin/partners/{partner['id']}/disable", {"reason": "contract ended"})
    assert disabled.get_json()["status"] == "disabled"
    response = partner_call(client, partner["key_id"], partner["secret"], "GET", "/api/v1/partner/me")
    assert (response.status_code, response.get_json()["error"]) == (403, "partner_disabled")
    staff["operator1"].post(f"/api/v1/admin/partners/{partner['id']}/enable", {})
    assert partner_call(client, partner["key_id"], partner["secret"], "GET", "/api/v1/partner/me").status_code == 200
    actions = [e["action"] for e in staff["auditor1"].get("/api/v1/admin/audit-log?target_type=partner")
               .get_json()["items"]]
    assert actions == ["partner.enable", "partner.disable", "partner.create"]


def test_update_activity_types(staff: dict[str, Api]) -> None:
    partner = _create(staff["operator1"])
    updated = staff["operator1"].patch(f"/api/v1/admin/partners/{partner['id']}",
                                       {"activity_types": ["bus_ride", "metro_ride", "bus_ride"]})
    assert updated.get_json()["activity_types"] == ["bus_ride", "metro_ride"]
    entry = staff["auditor1"].get("/api/v1/admin/audit-log?action=partner.update").get_json()["items"][0]
    assert entry["before"]["activity_types"] == ["bus_ride"]
    assert entry["after"]["activity_types"] == ["bus_ride", "metro_ride"]
