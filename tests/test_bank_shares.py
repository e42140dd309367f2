"""Bank linkage (issue #8.4): a resident's consented, revocable, logged share of a signed green
statement with a bank, verified offline with nothing but the published key, or through the bank's
signed partner API, which refuses revoked and expired shares."""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from backend.config import ConfigError, load_settings
from backend.db import db, utcnow
from backend.models import Activity, AuditLog, BankShare, BankShareEvent, PolicyVersion, Reduction
from backend.security.statements import StatementSigner, signer
from tests.conftest import PASSWORD, Api, login, make_staff, on_postgres, run_together, sign_up
from tests.partner_client import partner_call

SHARES = "/api/v1/me/bank-shares"


_last_timestamp = [0]
_timestamp_lock = threading.Lock()


def _call(client: FlaskClient, bank: dict[str, Any], method: str, path: str, body: Any = None) -> Any:
    """A signed bank request, each with a timestamp of its own (within the window), so two equal
    requests are not taken for a replay."""
    with _timestamp_lock:
        _last_timestamp[0] = timestamp = max(int(time.time()) - 200, _last_timestamp[0] + 1)
    return partner_call(client, bank["key_id"], bank["secret"], method, path, body, timestamp=timestamp)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _partner(operator: Api, name: str, region: str = "430600") -> dict[str, Any]:
    response = operator.post("/api/v1/admin/partners", {"name": name, "kind": "other", "activity_types": ["quiz"],
                                                        "region": region})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _bank(operator: Api, name: str, region: str = "430600") -> dict[str, Any]:
    partner = _partner(operator, name, region)
    enabled = operator.post("/api/v1/admin/bank-partners", {"partner_id": partner["id"], "region": region})
    assert enabled.status_code == 201, enabled.get_json()
    return partner


def _grams(app: Flask, resident_id: int, grams: list[int], status: str = "certified") -> None:
    """Certified reductions of the resident, as the registry records them."""
    with app.app_context():
        version = db.session.scalar(select(PolicyVersion).where(
            PolicyVersion.kind == "methodology", PolicyVersion.subject == "travel",
            PolicyVersion.status == "approved").limit(1))
        for amount in grams:
            at = utcnow() - timedelta(days=2)
            activity = Activity(source="import", type="bus_ride", occurred_at=at, region_code="430602", data={},
                                status="credited", resident_id=resident_id)
            db.session.add(activity)
            db.session.flush()
            db.session.add(Reduction(
                activity_id=activity.id, resident_id=resident_id, region_code="430602", activity_type="bus_ride",
                occurred_at=at, methodology_id="travel", methodology_version=version.version,
                version_id=version.id, formula_version=version.formula_version or 1,
                factors_sha256=version.payload_sha256, grams=amount, trace={}, facts={}, status=status))
        db.session.commit()


@pytest.fixture
def world(app: Flask, api: Api, staff: dict[str, Api]) -> dict[str, Any]:
    person = sign_up(api, "xiaoming", region="430602")
    me = person.get("/api/v1/me").get_json()
    _grams(app, me["id"], [60_000, 25_000])              # 85 kg: Yueyang's 绿树 Tree (from 80 kg)
    _grams(app, me["id"], [900_000], status="reversed")  # a reversed reduction does not count
    return {"person": person, "resident_id": me["id"], "bank": _bank(staff["operator1"], "岳阳农商银行"),
            "operator": staff["operator1"]}


def _share(person: Api, bank: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = person.post(SHARES, {"partner_id": bank["id"], **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _public_key(api: Api) -> tuple[str, Ed25519PublicKey]:
    key = api.as_token(None).get("/api/v1/public/keys").get_json()["keys"][0]
    return key["kid"], Ed25519PublicKey.from_public_bytes(_unb64(key["x"]))


def _verify_offline(token: str, public_key: Ed25519PublicKey) -> dict[str, Any]:
    """What a bank does with no library but Ed25519: check header.payload against the signature."""
    header, payload, signature = token.split(".")
    public_key.verify(_unb64(signature), f"{header}.{payload}".encode())
    assert json.loads(_unb64(header)) == {"alg": "EdDSA", "typ": "green-statement+jwt",
                                          "kid": json.loads(_unb64(header))["kid"]}
    return json.loads(_unb64(payload))


def test_a_statement_verifies_offline_with_only_the_public_key(app: Flask, api: Api, world: dict[str, Any]) -> None:
    person, bank = world["person"], world["bank"]
    banks = person.get("/api/v1/bank-partners").get_json()["items"]
    assert [(b["partner_id"], b["name"], b["status"]) for b in banks] == [(bank["id"], "岳阳农商银行", "active")]

    share = _share(person, bank, valid_days=30)
    statement = share["statement"]
    assert share["status"] == "active" and share["partner_name"] == "岳阳农商银行"
    assert statement["green_level"] == "绿树 Tree" and statement["lifetime_certified_grams"] == 85_000
    assert statement["share_id"] == share["id"] and statement["subject"] == share["subject"]

    kid, public_key = _public_key(api)
    claims = _verify_offline(statement["token"], public_key)
    assert claims["sub"] == share["subject"] and claims["aud"] == f"partner:{bank['id']}"
    assert claims["green_level"] == "绿树 Tree" and claims["lifetime_certified_grams"] == 85_000
    assert claims["share_id"] == share["id"] and claims["iss"] == "carbon-points"
    expires = datetime.fromisoformat(share["expires_at"])
    assert claims["exp"] == int(expires.timestamp()) and claims["iat"] <= claims["exp"] - 29 * 86400
    # Nothing else is disclosed: no name, no platform id of the resident, no region.
    assert set(claims) == {"iss", "sub", "aud", "iat", "exp", "jti", "share_id", "green_level",
                           "lifetime_certified_grams"}
    # Any JOSE library agrees, given the key and the audience.
    decoded = jwt.decode(statement["token"], public_key, algorithms=["EdDSA"], audience=f"partner:{bank['id']}")
    assert decoded == claims and jwt.get_unverified_header(statement["token"])["kid"] == kid == statement["key_id"]

    # A tampered statement fails: more grams, a better level, a longer life, or another key's signature.
    header, _, signature = statement["token"].split(".")
    for change in ({"lifetime_certified_grams": 9_000_000}, {"green_level": "绿林 Forest"},
                   {"exp": claims["exp"] + 365 * 86400}, {"aud": "partner:999"}):
        forged = f"{header}.{_b64(json.dumps({**claims, **change}).encode())}.{signature}"
        with pytest.raises(InvalidSignature):
            _verify_offline(forged, public_key)
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(forged, public_key, algorithms=["EdDSA"], audience=claims["aud"])
    other_key = Ed25519PrivateKey.generate()
    resigned = jwt.encode({**claims, "lifetime_certified_grams": 9_000_000}, other_key, algorithm="EdDSA",
                          headers={"kid": kid, "typ": "green-statement+jwt"})
    with pytest.raises(InvalidSignature):
        _verify_offline(resigned, public_key)


def test_the_bank_fetches_and_verifies_and_revocation_stops_it(app: Flask, client: FlaskClient, api: Api,
                                                               world: dict[str, Any]) -> None:
    person, bank = world["person"], world["bank"]
    share = _share(person, bank)
    path = f"/api/v1/partner/bank-shares/{share['id']}"
    _, public_key = _public_key(api)

    fetched = _call(client, bank, "GET", path)
    assert fetched.status_code == 200, fetched.get_json()
    fresh = fetched.get_json()
    assert _verify_offline(fresh["token"], public_key)["lifetime_certified_grams"] == 85_000
    _grams(app, world["resident_id"], [20_000])                      # the figures are current at each fetch
    assert _call(client, bank, "GET", path).get_json()[
        "lifetime_certified_grams"] == 105_000

    verify = "/api/v1/partner/bank-shares/verify"
    token = share["statement"]["token"]
    ok = _call(client, bank, "POST", verify, {"statement": token})
    assert ok.status_code == 200 and ok.get_json()["valid"] is True
    assert ok.get_json()["lifetime_certified_grams"] == 85_000 and ok.get_json()["share_id"] == share["id"]
    header, payload, signature = share["statement"]["token"].split(".")
    claims = json.loads(_unb64(payload))
    tampered = f"{header}.{_b64(json.dumps({**claims, 'green_level': '绿林 Forest'}).encode())}.{signature}"
    for bad in (tampered, "not.a.statement", share["statement"]["token"][:-4]):
        refused = _call(client, bank, "POST", verify, {"statement": bad})
        assert refused.status_code == 422 and refused.get_json()["errors"]["json"]["statement"], bad

    # Another bank: the share is not there for it, and the statement was not issued to it.
    other = _bank(world["operator"], "岳阳银行")
    assert _call(client, other, "GET", path).status_code == 404
    wrong = _call(client, other, "POST", verify,
                         {"statement": share["statement"]["token"]})
    assert wrong.status_code == 422 and wrong.get_json()["error"] == "wrong_audience"

    revoked = person.delete(f"{SHARES}/{share['id']}")
    assert revoked.status_code == 200 and revoked.get_json()["status"] == "revoked"
    assert person.delete(f"{SHARES}/{share['id']}").status_code == 200          # revoking again changes nothing
    for method, target, body in (("GET", path, None), ("POST", verify, {"statement": share["statement"]["token"]})):
        refused = _call(client, bank, method, target, body)
        assert refused.status_code == 409 and refused.get_json()["error"] == "share_revoked"

    detail = person.get(f"{SHARES}/{share['id']}").get_json()
    assert detail["status"] == "revoked" and detail["statement"] is None
    events = [(e["event"], e["detail"]) for e in detail["events"]]
    assert events == [("created", None), ("fetched", None), ("fetched", None), ("verified", None),
                      ("revoked", "resident"), ("refused", "share_revoked"), ("refused", "share_revoked")]
    assert detail["events"][2]["disclosed"] == {"green_level": "绿树 Tree", "lifetime_certified_grams": 105_000}
    with app.app_context():
        actions = list(db.session.scalars(select(AuditLog.action).where(AuditLog.target_type == "bank_share")
                                          .order_by(AuditLog.id)))
        assert actions == ["bank_share.create", "bank_share.fetch", "bank_share.fetch", "bank_share.verify",
                           "bank_share.revoke"]


def test_expired_shares_are_refused(app: Flask, client: FlaskClient, world: dict[str, Any]) -> None:
    person, bank = world["person"], world["bank"]
    share = _share(person, bank, valid_days=1)
    with app.app_context():
        db.session.execute(update(BankShare).where(BankShare.id == share["id"]).values(
            created_at=utcnow() - timedelta(days=3), expires_at=utcnow() - timedelta(days=2)))
        db.session.commit()
        with app.test_request_context():
            old = signer().sign_jws({"sub": share["subject"], "aud": f"partner:{bank['id']}", "share_id": share["id"],
                                     "iat": int((utcnow() - timedelta(days=3)).timestamp()),
                                     "exp": int((utcnow() - timedelta(days=2)).timestamp())},
                                    typ="green-statement+jwt")
    fetched = _call(client, bank, "GET", f"/api/v1/partner/bank-shares/{share['id']}")
    assert fetched.status_code == 409 and fetched.get_json()["error"] == "share_expired"
    verified = _call(client, bank, "POST", "/api/v1/partner/bank-shares/verify",
                            {"statement": old})
    assert verified.status_code == 409 and verified.get_json()["error"] == "share_expired"
    detail = person.get(f"{SHARES}/{share['id']}").get_json()
    assert detail["status"] == "expired" and detail["statement"] is None
    assert [e["event"] for e in detail["events"]] == ["created", "refused"]


def test_consent_is_the_residents_own_and_limited_to_enabled_banks(app: Flask, api: Api, client: FlaskClient,
                                                                   world: dict[str, Any]) -> None:
    person, bank, operator = world["person"], world["bank"], world["operator"]
    share = _share(person, bank)
    stranger = sign_up(api, "stranger", region="430602")
    assert stranger.get(f"{SHARES}/{share['id']}").status_code == 404
    assert stranger.delete(f"{SHARES}/{share['id']}").status_code == 404
    assert stranger.get(SHARES).get_json()["items"] == []

    plain = _partner(operator, "岳阳公交 (not a bank)")
    for body, field in (({"partner_id": plain["id"]}, "partner_id"), ({"partner_id": 999_999}, "partner_id"),
                        ({"partner_id": bank["id"], "valid_days": 0}, "valid_days"),
                        ({"partner_id": bank["id"], "valid_days": 366}, "valid_days"),
                        ({"partner_id": str(bank["id"])}, "partner_id"), ({}, "partner_id")):
        refused = person.post(SHARES, body)
        assert refused.status_code == 422 and field in refused.get_json()["errors"]["json"], body
    # A bank enabled for Hengyang is not one a Yueyang resident can share with.
    admin_bank = _partner(operator, "衡阳银行")
    make_staff(app, "hy-op", "operator", scope="430400")
    hy = login(api, "hy-op")
    assert hy.post("/api/v1/admin/bank-partners", {"partner_id": admin_bank["id"], "region": "430400"}).status_code \
        == 201
    assert [b["partner_id"] for b in person.get("/api/v1/bank-partners").get_json()["items"]] == [bank["id"]]
    assert person.post(SHARES, {"partner_id": admin_bank["id"]}).get_json()["error"] == "unknown_bank"
    assert hy.post("/api/v1/admin/bank-partners", {"partner_id": plain["id"], "region": "430600"}).status_code == 403
    assert operator.post("/api/v1/admin/bank-partners", {"partner_id": bank["id"], "region": "430600"}).get_json()[
        "error"] == "already_enabled"
    assert [b["partner_id"] for b in hy.get("/api/v1/admin/bank-partners").get_json()["items"]] == [admin_bank["id"]]

    # Disabling a bank: no new shares, and its statement calls are refused; shares stay listed.
    disabled = operator.post(f"/api/v1/admin/bank-partners/{bank['id']}/disable", {"reason": "contract ended"})
    assert disabled.status_code == 200 and disabled.get_json()["status"] == "disabled"
    assert person.get("/api/v1/bank-partners").get_json()["items"] == []
    assert person.post(SHARES, {"partner_id": bank["id"]}).status_code == 422
    fetched = _call(client, bank, "GET", f"/api/v1/partner/bank-shares/{share['id']}")
    assert fetched.status_code == 403 and fetched.get_json()["error"] == "not_a_bank"
    assert [s["id"] for s in person.get(SHARES).get_json()["items"]] == [share["id"]]


def test_one_pseudonym_per_bank(app: Flask, world: dict[str, Any]) -> None:
    person, bank = world["person"], world["bank"]
    first, second = _share(person, bank), _share(person, bank)
    other = _share(person, _bank(world["operator"], "岳阳银行"))
    assert first["subject"] == second["subject"] != other["subject"]
    assert len(first["subject"]) == 32 and str(world["resident_id"]) != first["subject"]
    listed = person.get(SHARES, query_string={"limit": 2}).get_json()
    assert [s["id"] for s in listed["items"]] == [other["id"], second["id"]] and listed["next_cursor"]


def test_account_deletion_revokes_every_share_and_export_lists_them(app: Flask, client: FlaskClient,
                                                                     world: dict[str, Any]) -> None:
    person, bank = world["person"], world["bank"]
    share = _share(person, bank)
    _call(client, bank, "GET", f"/api/v1/partner/bank-shares/{share['id']}")
    exported = person.get("/api/v1/me/export").get_json()
    assert [s["id"] for s in exported["bank_shares"]] == [share["id"]]
    assert [e["event"] for e in exported["bank_shares"][0]["events"]] == ["created", "fetched"]

    assert person.delete("/api/v1/me", {"password": PASSWORD}).status_code in (200, 204)
    refused = _call(client, bank, "GET", f"/api/v1/partner/bank-shares/{share['id']}")
    assert refused.status_code == 409 and refused.get_json()["error"] == "share_revoked"
    with app.app_context():
        row = db.session.get(BankShare, share["id"])
        assert row.revoked_reason == "account_deleted"
        events = list(db.session.scalars(select(BankShareEvent.event).where(BankShareEvent.share_id == share["id"])
                                         .order_by(BankShareEvent.id)))
        assert events == ["created", "fetched", "revoked", "refused"]


def test_the_disclosure_log_is_append_only(app: Flask, world: dict[str, Any]) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    _share(world["person"], world["bank"])
    with app.app_context():
        for statement in ("UPDATE bank_share_events SET disclosed = NULL", "DELETE FROM bank_share_events"):
            with pytest.raises(DatabaseError):
                db.session.execute(text(statement))
            db.session.rollback()


# --- the signing key ---------------------------------------------------------------------------------------


def test_the_signing_key_setting(tmp_path: Path) -> None:
    base = {"CARBON_INSTANCE_PATH": str(tmp_path)}
    generated = load_settings(base).statement_signing_key
    assert load_settings(base).statement_signing_key == generated                   # kept in instance/
    assert (tmp_path / "statement_signing_key").stat().st_mode & 0o777 == 0o600
    seed = _b64(bytes(range(32)))
    assert load_settings({**base, "STATEMENT_SIGNING_KEY": seed}).statement_signing_key == seed
    for bad in ("short", _b64(bytes(31)), "!!!!"):
        with pytest.raises(ConfigError, match="STATEMENT_SIGNING_KEY"):
            load_settings({**base, "STATEMENT_SIGNING_KEY": bad})
    production = {**base, "CARBON_ENV": "production", "DATABASE_URL": "postgresql://u@db/c", "REDIS_URL": "redis://r",
                  "SECRET_KEY": "s" * 40}
    derived = load_settings(production).statement_signing_key
    assert derived == load_settings(production).statement_signing_key != generated   # the same on every machine
    assert load_settings({**production, "SECRET_KEY": "t" * 40}).statement_signing_key != derived
    signer_ = StatementSigner(seed)
    assert signer_.key_id.startswith("ed25519-") and signer_.verify(b"x", signer_.sign(b"x"))
    assert not signer_.verify(b"y", signer_.sign(b"x"))


# --- concurrency (PostgreSQL) ---------------------------------------------------------------------------


@on_postgres
def test_a_revocation_racing_fetches_leaves_a_consistent_log(app: Flask, world: dict[str, Any]) -> None:
    person, bank = world["person"], world["bank"]
    share = _share(person, bank)

    def call(kind: str) -> int:
        local = app.test_client()
        if kind == "revoke":
            return Api(local, person.token).delete(f"{SHARES}/{share['id']}").status_code
        return _call(local, bank, "GET",
                            f"/api/v1/partner/bank-shares/{share['id']}").status_code

    results = run_together(call, [("fetch",), ("revoke",), ("fetch",), ("fetch",)])
    assert results[1] == 200 and all(code in (200, 409) for code in results), results
    with app.app_context():
        events = list(db.session.execute(select(BankShareEvent.event, BankShareEvent.occurred_at)
                                         .where(BankShareEvent.share_id == share["id"]).order_by(BankShareEvent.id)))
        revoked_at = next(at for event, at in events if event == "revoked")
        # Nothing was handed out after the revocation.
        assert all(at <= revoked_at for event, at in events if event == "fetched")
        assert sum(1 for event, _ in events if event == "fetched") == results.count(200) - 1
