"""Carbon-market batches (issue #8.3): pooling whole reductions into tonnes, serials, four-eyes
issue, sales and retirements by serial range, certificates, the exchange export, replacement before
reversal, exclusions — and no double use, in the services, the API and the database itself."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError, IntegrityError

from backend.db import db
from backend.errors import ApiError, Conflict
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import (
    Activity,
    AuditLog,
    MarketBatch,
    MarketBatchMember,
    MarketSerial,
    MarketTransaction,
    PolicyVersion,
    Reduction,
    User,
)
from backend.security.statements import unb64url
from backend.services import market
from tests.conftest import Api, login, make_staff, on_postgres, run_together

VINTAGE = datetime.now(CHINA_STANDARD_TIME).year - 1
BATCHES = "/api/v1/admin/market/batches"
TYPES = {"travel": "bus_ride", "recycling": "recycling", "rooftop_pv": "rooftop_pv", "quiz": "quiz"}


def _at(month: int, day: int, hour: int = 12, year: int = VINTAGE) -> datetime:
    return datetime(year, month, day, hour, tzinfo=CHINA_STANDARD_TIME)


def _reductions(app: Flask, grams: list[int], *, methodology: str = "travel", region: str = "430602",
                start: datetime | None = None, data: dict[str, Any] | None = None,
                status: str = "certified") -> list[int]:
    """Certified reductions written as the registry writes them, an hour apart from ``start``."""
    start = start or _at(3, 1)
    with app.app_context():
        version = db.session.scalar(select(PolicyVersion).where(
            PolicyVersion.kind == "methodology", PolicyVersion.subject == methodology,
            PolicyVersion.status == "approved").order_by(PolicyVersion.version).limit(1))
        ids = []
        for i, amount in enumerate(grams):
            at = start + timedelta(hours=i)
            activity = Activity(source="import", type=TYPES[methodology], occurred_at=at, region_code=region,
                                data=data or {}, status="credited")
            db.session.add(activity)
            db.session.flush()
            reduction = Reduction(
                activity_id=activity.id, region_code=region, activity_type=activity.type, occurred_at=at,
                methodology_id=methodology, methodology_version=version.version, version_id=version.id,
                formula_version=version.formula_version or 1, factors_sha256=version.payload_sha256, grams=amount,
                trace={"test": "market"}, facts={}, status=status)
            db.session.add(reduction)
            db.session.flush()
            ids.append(reduction.id)
        db.session.commit()
        return ids


def _draft(api: Api, **body: Any) -> Any:
    return api.post(BATCHES, {"methodology": "travel", "region": "430600", "vintage": VINTAGE, **body})


def _members(app: Flask, batch_id: int, status: str = "active") -> list[int]:
    with app.app_context():
        return list(db.session.scalars(select(MarketBatchMember.reduction_id).where(
            MarketBatchMember.batch_id == batch_id, MarketBatchMember.status == status)
            .order_by(MarketBatchMember.reduction_id)))


def _issued(staff: dict[str, Api], **body: Any) -> dict[str, Any]:
    drafted = _draft(staff["operator1"], **body)
    assert drafted.status_code == 201, drafted.get_json()
    issued = staff["auditor1"].post(f"{BATCHES}/{drafted.get_json()['id']}/issue")
    assert issued.status_code == 200, issued.get_json()
    return issued.get_json()


def _used_serials(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(MarketSerial)
                                 .where(MarketSerial.transaction_id.is_not(None)))


# --- pooling ---------------------------------------------------------------------------------------


def test_a_pool_takes_whole_reductions_oldest_first_and_leaves_the_rest(app: Flask, staff: dict[str, Api]) -> None:
    ids = _reductions(app, [700_000, 500_000, 300_000, 900_000, 250_000])            # 2.65 t
    operator = staff["operator1"]
    before = operator.get("/api/v1/admin/market/available",
                          query_string={"methodology": "travel", "region": "430600", "vintage": VINTAGE}).get_json()
    assert before == {"methodology": "travel", "region": "430600", "include_subregions": True, "vintage": VINTAGE,
                      "reductions": 5, "grams": 2_650_000, "whole_tonnes": 2, "remainder_grams": 650_000}

    response = _draft(operator, note="Q1 transit")
    assert response.status_code == 201, response.get_json()
    batch = response.get_json()
    # 0.7 + 0.5 + 0.3 + 0.9 = 2.4 t reach 2 t: those four, whole; 0.4 t of them stays unserialised.
    assert batch["status"] == "draft" and batch["tonnes"] == 2
    assert batch["pooled_grams"] == 2_400_000 and batch["unserialised_grams"] == 400_000
    assert batch["member_count"] == 4 and batch["serial_range"] is None and batch["serial_key"] == \
        f"430600-travel-{VINTAGE}"
    assert _members(app, batch["id"]) == ids[:4]
    expected = hashlib.sha256("".join(f"{i}:{g}\n" for i, g in zip(ids[:4], [700_000, 500_000, 300_000, 900_000],
                                                                       strict=True)).encode()).hexdigest()
    assert batch["members_sha256"] == expected

    after = operator.get("/api/v1/admin/market/available",
                         query_string={"methodology": "travel", "region": "430600", "vintage": VINTAGE}).get_json()
    assert (after["reductions"], after["grams"], after["whole_tonnes"]) == (1, 250_000, 0)
    # Every gram is in exactly one place: the batch, or still unpooled.
    assert batch["pooled_grams"] + after["grams"] == before["grams"]

    # Pooling again finds less than a tonne: nothing is pooled twice.
    again = _draft(operator)
    assert again.status_code == 409 and again.get_json()["error"] == "not_enough_reductions"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(MarketBatch)) == 1
        entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "market_batch.draft"))
        assert entry.after["members_sha256"] == expected and entry.actor == "operator1"


def test_tonnes_asked_for_and_the_last_reduction_over_a_tonne(app: Flask, staff: dict[str, Api]) -> None:
    _reductions(app, [600_000, 2_300_000, 400_000, 800_000])
    batch = _draft(staff["operator1"], tonnes=1).get_json()
    # 0.6 t then 2.3 t: the second alone passes the asked tonne, so the batch holds 2 whole tonnes.
    assert (batch["tonnes"], batch["pooled_grams"], batch["member_count"]) == (2, 2_900_000, 2)
    refused = _draft(staff["operator1"], tonnes=2)   # 1.2 t left
    assert refused.status_code == 409 and refused.get_json()["error"] == "not_enough_reductions"
    assert _draft(staff["operator1"], tonnes=1).get_json()["tonnes"] == 1


def test_what_a_pool_never_takes(app: Flask, staff: dict[str, Api]) -> None:
    good = _reductions(app, [1_000_000], region="430602")
    _reductions(app, [5_000_000], region="430602", methodology="recycling")           # another methodology
    _reductions(app, [5_000_000], region="430400")                                     # Hengyang
    _reductions(app, [5_000_000], start=_at(12, 31, 23, VINTAGE - 1))                  # previous year, China time
    _reductions(app, [5_000_000], start=_at(1, 1, 0, VINTAGE + 1))                  # next year, China time
    _reductions(app, [5_000_000], status="reversed")
    excluded = _reductions(app, [5_000_000])
    pv_claimed = _reductions(app, [5_000_000], methodology="rooftop_pv",
                             data={"period_start": "2025-03-01", "period_end": "2025-03-31", "kwh": "9300",
                                   "green_certificates_issued": True})
    pv_ok = _reductions(app, [1_000_000], methodology="rooftop_pv",
                        data={"period_start": "2025-03-01", "period_end": "2025-03-31", "kwh": "1860"})
    result = staff["auditor1"].post("/api/v1/admin/market/exclusions", {
        "reduction_ids": excluded, "category": "green_certificate", "reason": "the system sold 绿证 for March"})
    assert result.get_json()["results"][0]["status"] == "excluded"

    batch = _draft(staff["operator1"]).get_json()
    assert _members(app, batch["id"]) == good
    assert (batch["tonnes"], batch["pooled_grams"]) == (1, 1_000_000)
    pv = _draft(staff["operator1"], methodology="rooftop_pv").get_json()
    assert _members(app, pv["id"]) == pv_ok and pv_claimed[0] not in _members(app, pv["id"])

    # Exactly the region: Yueyang city's own reductions only, not its districts'.
    _reductions(app, [1_500_000], region="430600")
    exact = _draft(staff["operator1"], include_subregions=False).get_json()
    assert exact["include_subregions"] is False and exact["tonnes"] == 1 and exact["member_count"] == 1

    quiz = _draft(staff["operator1"], methodology="quiz")
    assert quiz.status_code == 422 and quiz.get_json()["errors"]["json"]["methodology"]
    future = _draft(staff["operator1"], vintage=VINTAGE + 2)
    assert future.status_code == 422 and "vintage" in future.get_json()["errors"]["json"]
    unknown = _draft(staff["operator1"], methodology="teleport")
    assert unknown.status_code == 422 and unknown.get_json()["error"] == "unknown_methodology"
    elsewhere = _draft(staff["operator1"], region="430400")
    assert elsewhere.status_code == 403 and elsewhere.get_json()["error"] == "out_of_scope"
    bad = _draft(staff["operator1"], tonnes=0)
    assert bad.status_code == 422 and "tonnes" in bad.get_json()["errors"]["json"]


def test_vintage_is_the_china_time_year(app: Flask, staff: dict[str, Api]) -> None:
    # 31 December 16:00 UTC is already 1 January in Shanghai: the next year's vintage.
    inside = _reductions(app, [1_000_000], start=datetime.fromisoformat(f"{VINTAGE - 1}-12-31T16:00:00+00:00"))
    _reductions(app, [1_000_000], start=datetime.fromisoformat(f"{VINTAGE - 1}-12-31T15:59:59+00:00"))
    _reductions(app, [1_000_000], start=datetime.fromisoformat(f"{VINTAGE}-12-31T16:00:00+00:00"))
    batch = _draft(staff["operator1"]).get_json()
    assert _members(app, batch["id"]) == inside and batch["tonnes"] == 1


# --- issue, four eyes, serials -----------------------------------------------------------------------


def test_issue_needs_a_second_person_and_serials_never_collide(app: Flask, staff: dict[str, Api]) -> None:
    _reductions(app, [1_000_000] * 5)
    first = _draft(staff["operator1"], tonnes=3).get_json()
    own = staff["operator1"].post(f"{BATCHES}/{first['id']}/issue")
    assert own.status_code == 403 and own.get_json()["error"] == "own_batch"
    with app.app_context():   # the refusal itself is on the record
        refused = db.session.scalar(select(AuditLog).where(AuditLog.action == "market_batch.issue_refused"))
        assert refused is not None and refused.actor == "operator1"
    issued = staff["auditor1"].post(f"{BATCHES}/{first['id']}/issue").get_json()
    assert issued["status"] == "issued" and (issued["serial_start"], issued["serial_end"]) == (1, 3)
    assert issued["serial_range"] == f"430600-travel-{VINTAGE}-000001-000003"
    assert issued["available_tonnes"] == 3
    again = staff["auditor2"].post(f"{BATCHES}/{first['id']}/issue")
    assert again.status_code == 409 and again.get_json()["error"] == "not_a_draft"

    second = _issued(staff)                           # the other 2 t: the next serials of the same key
    assert (second["serial_start"], second["serial_end"]) == (4, 5)
    with app.app_context():
        serials = list(db.session.scalars(select(MarketSerial.serial).order_by(MarketSerial.serial)))
        assert serials == [1, 2, 3, 4, 5]
        assert db.session.scalar(select(AuditLog.actor).where(AuditLog.action == "market_batch.issue")
                                 .order_by(AuditLog.id).limit(1)) == "auditor1"


def test_discarding_a_draft_frees_its_reductions(app: Flask, staff: dict[str, Api]) -> None:
    ids = _reductions(app, [1_200_000])
    draft = _draft(staff["operator1"]).get_json()
    no_reason = staff["operator1"].post(f"{BATCHES}/{draft['id']}/discard", {})
    assert no_reason.status_code == 422 and "reason" in no_reason.get_json()["errors"]["json"]
    gone = staff["operator1"].post(f"{BATCHES}/{draft['id']}/discard", {"reason": "wrong quarter"}).get_json()
    assert gone["status"] == "discarded" and gone["discard_reason"] == "wrong quarter"
    assert staff["auditor1"].post(f"{BATCHES}/{draft['id']}/issue").get_json()["error"] == "not_a_draft"
    again = _draft(staff["operator1"]).get_json()
    assert _members(app, again["id"]) == ids
    issued = staff["auditor1"].post(f"{BATCHES}/{again['id']}/issue").get_json()
    refused = staff["operator1"].post(f"{BATCHES}/{issued['id']}/discard", {"reason": "changed my mind"})
    assert refused.status_code == 409 and refused.get_json()["error"] == "not_a_draft"


# --- sales and retirements -----------------------------------------------------------------------------


def test_sell_and_retire_sub_ranges_each_serial_once(app: Flask, staff: dict[str, Api]) -> None:
    _reductions(app, [1_000_000] * 10)
    batch = _issued(staff)
    path, operator = f"{BATCHES}/{batch['id']}", staff["operator1"]
    assert batch["tonnes"] == 10

    sale = operator.post(f"{path}/sales", {"tonnes": 4, "buyer": "华菱钢铁 Valin Steel",
                                           "price_yuan_per_tonne": "58.50", "reference": "HNEX-2026-0042"})
    assert sale.status_code == 201, sale.get_json()
    sold = sale.get_json()
    assert (sold["first_serial"], sold["last_serial"], sold["tonnes"]) == (1, 4, 4)
    assert sold["unit_price_fen"] == 5850 and sold["amount_fen"] == 23400 and sold["certificate_url"] is None
    assert sold["serials"] == f"430600-travel-{VINTAGE}-000001-000004"

    retired = operator.post(f"{path}/retirements", {
        "first_serial": 7, "last_serial": 8, "beneficiary": "岳阳国际马拉松组委会 Yueyang Marathon",
        "purpose": "offsetting the 2026 Yueyang marathon"}).get_json()
    assert (retired["first_serial"], retired["last_serial"], retired["kind"]) == (7, 8, "retirement")
    assert retired["certificate_url"].startswith("http://localhost/certificates/")

    used = _used_serials(app)
    for body, error in (
        ({"first_serial": 8, "last_serial": 9}, "serials_used"),       # overlaps the retirement
        ({"first_serial": 4, "last_serial": 4}, "serials_used"),       # a sold serial
        ({"tonnes": 5}, "not_enough_serials"),                          # 4 left: 5, 6, 9, 10
        ({"tonnes": 3}, "no_contiguous_range"),                         # runs of 2 only
    ):
        response = operator.post(f"{path}/retirements", {**body, "beneficiary": "x", "purpose": "y"})
        assert response.status_code == 409 and response.get_json()["error"] == error, (body, response.get_json())
    for body, field in (
        ({"first_serial": 11, "last_serial": 11}, "first_serial"),      # outside the batch
        ({"first_serial": 6, "last_serial": 5}, "last_serial"),
        ({"tonnes": 1, "first_serial": 5, "last_serial": 5}, "tonnes"),
        ({}, "tonnes"),
        ({"first_serial": 5}, "tonnes"),
    ):
        response = operator.post(f"{path}/retirements", {**body, "beneficiary": "x", "purpose": "y"})
        assert response.status_code == 422, (body, response.get_json())
        assert field in response.get_json()["errors"]["json"], (body, response.get_json())
    for price in ("0", "-1", "12.345", "abc", "NaN", ""):
        response = operator.post(f"{path}/sales", {"tonnes": 1, "buyer": "b", "price_yuan_per_tonne": price})
        assert response.status_code == 422 and "price_yuan_per_tonne" in response.get_json()["errors"]["json"]
    blank = operator.post(f"{path}/retirements", {"tonnes": 1, "beneficiary": "   ", "purpose": "y"})
    assert blank.status_code == 422 and "beneficiary" in blank.get_json()["errors"]["json"]
    assert _used_serials(app) == used                  # nothing was changed by any refusal

    detail = operator.get(path).get_json()
    assert (detail["status"], detail["sold_tonnes"], detail["retired_tonnes"], detail["available_tonnes"]) == \
        ("issued", 4, 2, 4)
    assert [(b["first_serial"], b["last_serial"], b["state"]) for b in detail["blocks"]] == \
        [(1, 4, "sold"), (5, 6, "available"), (7, 8, "retired"), (9, 10, "available")]

    assert operator.post(f"{path}/retirements", {"tonnes": 2, "beneficiary": "b", "purpose": "p"}).status_code == 201
    assert operator.post(f"{path}/sales", {"first_serial": 9, "last_serial": 10, "buyer": "b",
                                           "price_yuan_per_tonne": "60"}).status_code == 201
    closed = operator.get(path).get_json()
    assert closed["status"] == "closed" and closed["available_tonnes"] == 0
    exhausted = operator.post(f"{path}/retirements", {"tonnes": 1, "beneficiary": "b", "purpose": "p"})
    assert exhausted.status_code == 409 and exhausted.get_json()["error"] == "batch_exhausted"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(MarketSerial)
                                 .where(MarketSerial.transaction_id.is_(None))) == 0
        actions = list(db.session.scalars(select(AuditLog.action).where(AuditLog.target_type == "market_batch")
                                          .order_by(AuditLog.id)))
        assert actions == ["market_batch.draft", "market_batch.issue", "market_batch.sale",
                           "market_batch.retirement", "market_batch.retirement", "market_batch.sale"]


def test_a_batch_wholly_retired_or_sold_says_so(app: Flask, staff: dict[str, Api]) -> None:
    _reductions(app, [1_000_000] * 2)
    first, second = _issued(staff, tonnes=1), _issued(staff, tonnes=1)
    staff["operator1"].post(f"{BATCHES}/{first['id']}/retirements", {"tonnes": 1, "beneficiary": "b", "purpose": "p"})
    staff["operator1"].post(f"{BATCHES}/{second['id']}/sales", {"tonnes": 1, "buyer": "b",
                                                                "price_yuan_per_tonne": "1"})
    assert staff["operator1"].get(f"{BATCHES}/{first['id']}").get_json()["status"] == "retired"
    assert staff["operator1"].get(f"{BATCHES}/{second['id']}").get_json()["status"] == "sold"
    _reductions(app, [1_000_000])
    draft = _draft(staff["operator1"]).get_json()
    not_issued = staff["operator1"].post(f"{BATCHES}/{draft['id']}/sales", {"tonnes": 1, "buyer": "b",
                                                                            "price_yuan_per_tonne": "1"})
    assert not_issued.status_code == 409 and not_issued.get_json()["error"] == "not_issued"


# --- the certificate -------------------------------------------------------------------------------------


def _public_key(api: Api) -> tuple[str, Ed25519PublicKey]:
    keys = api.as_token(None).get("/api/v1/public/keys").get_json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519" and keys[0]["alg"] == "EdDSA"
    return keys[0]["kid"], Ed25519PublicKey.from_public_bytes(unb64url(keys[0]["x"]))


def test_the_retirement_certificate_is_public_and_verifiable(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    _reductions(app, [1_000_000] * 3)
    batch = _issued(staff)
    retired = staff["operator1"].post(f"{BATCHES}/{batch['id']}/retirements", {
        "tonnes": 2, "beneficiary": "岳阳国际马拉松 <Marathon>", "purpose": "offsetting the 2026 marathon"}).get_json()
    token = retired["certificate_url"].rsplit("/", 1)[1]
    anonymous = api.as_token(None)

    page = anonymous.get(f"/certificates/{token}")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    for label in ("碳减排量注销证明", "Retirement", "受益方", "Beneficiary", "注销用途", "Purpose", "序列号",
                  "Serial numbers", "方法学", "Methodology", "减排年份", "Vintage",
                  f"430600-travel-{VINTAGE}-000001-000002", "offsetting the 2026 marathon", "2 tCO₂e"):
        assert label in html, label
    assert "&lt;Marathon&gt;" in html and "<Marathon>" not in html         # escaped
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]

    certificate = anonymous.get(f"/api/v1/public/certificates/{token}").get_json()
    assert certificate["tonnes"] == 2 and certificate["beneficiary"] == "岳阳国际马拉松 <Marathon>"
    assert certificate["url"].endswith(f"/certificates/{token}")
    # Anyone checks it with nothing but the published key: the URL's signature and the signed content.
    kid, public_key = _public_key(api)
    retirement_id, signature = token.split(".")
    public_key.verify(unb64url(signature), f"carbon-points retirement certificate {retirement_id}".encode())
    claims = jwt.decode(certificate["signed"], public_key, algorithms=["EdDSA"])
    assert jwt.get_unverified_header(certificate["signed"])["kid"] == kid == certificate["key_id"]
    assert claims["serials"] == certificate["serials"] and claims["tonnes"] == 2

    forged = [
        token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),               # an altered signature
        f"{int(retirement_id) + 1}.{signature}",                          # another retirement's id
        f"{retirement_id}.{signature[:40]}",                               # truncated
        "1", "travel", f"{retirement_id}",
    ]
    for bad in forged:
        for path in (f"/certificates/{bad}", f"/api/v1/public/certificates/{bad}"):
            response = anonymous.get(path)
            assert response.status_code == 404, (bad, path)
            assert retired["beneficiary"] not in response.get_data(as_text=True)
    assert anonymous.get(f"/api/v1/public/certificates/{bad}").get_json()["message"] == "No such certificate."
    with pytest.raises(InvalidSignature):
        public_key.verify(unb64url(signature), b"carbon-points retirement certificate 999")

    # A sale has no certificate, even with a signature the platform made for its id.
    sale = staff["operator1"].post(f"{BATCHES}/{batch['id']}/sales", {"tonnes": 1, "buyer": "b",
                                                                       "price_yuan_per_tonne": "1"}).get_json()
    with app.test_request_context():
        sale_token = market.certificate_token(sale["id"])
    assert anonymous.get(f"/certificates/{sale_token}").status_code == 404


# --- the exchange export ---------------------------------------------------------------------------------


def test_the_export_lists_every_serial_block_and_the_members_summary(app: Flask, staff: dict[str, Api]) -> None:
    ids = _reductions(app, [400_000, 300_000, 600_000, 900_000, 800_000])         # 3.0 t
    batch = _issued(staff)
    path, operator = f"{BATCHES}/{batch['id']}", staff["operator1"]
    operator.post(f"{path}/retirements", {"first_serial": 2, "last_serial": 2, "beneficiary": "Lake school",
                                          "purpose": "=cmd|' /C calc'!A0"})
    response = staff["auditor2"].get(f"{path}/export.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert f'filename="market-batch-{batch["id"]}.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["first_serial"], r["last_serial"], r["state"]) for r in rows] == \
        [("1", "1", "available"), ("2", "2", "retired"), ("3", "3", "available")]
    assert sum(int(r["tonnes"]) for r in rows) == batch["tonnes"] == 3
    assert rows[1]["counterparty"] == "Lake school" and rows[1]["serials"] == f"430600-travel-{VINTAGE}-000002-000002"
    assert {r["methodology"] for r in rows} == {"travel"} and {r["vintage"] for r in rows} == {str(VINTAGE)}
    assert {r["reductions_sha256"] for r in rows} == {batch["members_sha256"]}

    exported = staff["auditor2"].get(f"{path}/export.json").get_json()
    assert exported["format"] == "carbon-points.market-batch/1"
    assert exported["batch"]["serials"] == f"430600-travel-{VINTAGE}-000001-000003"
    assert exported["batch"]["region_name"] and exported["batch"]["methodology_versions"]
    assert exported["reductions"]["count"] == 5 and exported["reductions"]["pooled_grams"] == 3_000_000
    assert (exported["reductions"]["first_id"], exported["reductions"]["last_id"]) == (ids[0], ids[-1])
    # The summary's hash is recomputed from the members the API lists, page by page.
    listed, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        got = operator.get(f"{path}/reductions", query_string=query).get_json()
        listed += got["items"]
        cursor = got["next_cursor"]
        if not cursor:
            break
    lines = "".join(f"{m['reduction_id']}:{m['grams']}\n" for m in sorted(listed, key=lambda m: m["reduction_id"]))
    assert hashlib.sha256(lines.encode()).hexdigest() == exported["reductions"]["sha256"]
    assert all(m["methodology"].startswith("travel@") and m["status"] == "active" for m in listed)


# --- reversal, replacement, the database's guards --------------------------------------------------------


def _reverse(api: Api, reduction_id: int) -> Any:
    return api.post(f"/api/v1/admin/reductions/{reduction_id}/reverse", {"reason": "fraud ring"})


def test_a_reduction_backing_issued_serials_is_replaced_before_it_is_reversed(app: Flask,
                                                                                staff: dict[str, Api]) -> None:
    ids = _reductions(app, [600_000, 600_000, 300_000, 500_000])                 # 2.0 t
    draft = _draft(staff["operator1"], tonnes=1).get_json()                        # 0.6 + 0.6 = 1.2 t
    assert _members(app, draft["id"]) == ids[:2]

    # A draft tolerates a reversal, but is not issued with a reversed member.
    assert _reverse(staff["auditor2"], ids[0]).status_code == 200
    refused = staff["auditor1"].post(f"{BATCHES}/{draft['id']}/issue")
    assert refused.status_code == 409 and refused.get_json()["error"] == "members_reversed"
    assert str(ids[0]) in refused.get_json()["message"]
    # Replacing in a draft releases the member; 0.6 t left, the next oldest (0.3 + 0.5) cover it.
    replaced = staff["auditor1"].post(f"{BATCHES}/{draft['id']}/replace", {"reduction_id": ids[0],
                                                                           "reason": "reversed"}).get_json()
    assert replaced["added_reductions"] == ids[2:] and replaced["pooled_grams"] == 1_400_000
    batch = staff["auditor1"].post(f"{BATCHES}/{draft['id']}/issue").get_json()
    assert batch["status"] == "issued" and _members(app, batch["id"]) == ids[1:]

    # Issued: the reversal is refused, by the database itself, and nothing changes.
    refused = _reverse(staff["auditor2"], ids[1])
    assert refused.status_code == 409
    with app.app_context():
        assert db.session.get(Reduction, ids[1]).status == "certified"
        with pytest.raises(Conflict) as caught:
            market.check_reversible(ids[1])
        assert caught.value.error == "pooled_in_batch" and f"/batches/{batch['id']}/replace" in caught.value.message
        market.check_reversible(ids[0])                                   # not pooled any more: fine

    # The batch's unserialised 0.4 t cannot cover 0.6 t, and nothing unpooled is left: refused, unchanged.
    no_cover = staff["auditor1"].post(f"{BATCHES}/{batch['id']}/replace", {"reduction_id": ids[1], "reason": "fraud"})
    assert no_cover.status_code == 409 and no_cover.get_json()["error"] == "no_replacement"
    assert _members(app, batch["id"]) == ids[1:]
    # With a fresh reduction in scope the replacement goes through; the serials stay fully backed.
    fresh = _reductions(app, [250_000], start=_at(6, 1))
    swapped = staff["auditor1"].post(f"{BATCHES}/{batch['id']}/replace", {"reduction_id": ids[1],
                                                                          "reason": "fraud"}).get_json()
    assert swapped["added_reductions"] == fresh and swapped["pooled_grams"] == 1_050_000
    assert _members(app, batch["id"]) == sorted(ids[2:] + fresh)
    assert _members(app, batch["id"], "withdrawn") == [ids[1]]
    twice = staff["auditor1"].post(f"{BATCHES}/{batch['id']}/replace", {"reduction_id": ids[1], "reason": "again"})
    assert twice.status_code == 409 and twice.get_json()["error"] == "already_withdrawn"
    operator_try = staff["operator1"].post(f"{BATCHES}/{batch['id']}/replace", {"reduction_id": ids[2],
                                                                                "reason": "x"})
    assert operator_try.status_code == 403
    # Now the ledger's reversal takes the points back as usual; the withdrawn member is never pooled again.
    assert _reverse(staff["auditor2"], ids[1]).status_code == 200
    detail = staff["auditor1"].get(f"{BATCHES}/{batch['id']}").get_json()
    assert detail["pooled_grams"] >= detail["tonnes"] * 1_000_000 and detail["tonnes"] == 1
    with app.app_context():
        entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "market_batch.replace")
                                  .order_by(AuditLog.id.desc()).limit(1))
        assert entry.reason == "fraud" and entry.after["withdrawn_grams"] == 600_000


def test_reversing_a_reduction_that_backs_serials_says_why_and_changes_nothing(app: Flask, api: Api,
                                                                               staff: dict[str, Api]) -> None:
    """Not a 409 "concurrent change, try again": retrying never helps; the auditor must replace it first."""
    from tests.conftest import sign_up

    person = sign_up(api, "pooled-rider", region="430602")
    resident_id = person.get("/api/v1/me").get_json()["id"]
    with app.app_context():
        from backend.services import activities, ledger

        _, reduction = activities.record_one(activity_type="bus_ride", occurred_at=_at(5, 1), data={
            "distance_km": "10", "duration_min": 30}, region="430602", source="demo", resident_id=resident_id)
        assert ledger.credit([reduction.id])[0].status == "credited"
        db.session.commit()
        rid = reduction.id
    _reductions(app, [1_000_000], start=_at(6, 1))             # the ride (May) is the oldest: pooled first
    batch = _issued(staff)
    assert rid in _members(app, batch["id"])
    balance = person.get("/api/v1/me/balance").get_json()
    refused = _reverse(staff["auditor2"], rid)
    assert refused.status_code == 409 and refused.get_json()["error"] == "pooled_in_batch", refused.get_json()
    assert f"/batches/{batch['id']}/replace" in refused.get_json()["message"]
    assert person.get("/api/v1/me/balance").get_json() == balance
    with app.app_context():
        assert db.session.get(Reduction, rid).status == "certified"
        assert db.session.scalar(select(func.count()).select_from(AuditLog)
                                 .where(AuditLog.action == "reduction.reverse")) == 0


def test_the_database_refuses_double_use_and_edits(app: Flask, staff: dict[str, Api]) -> None:
    ids = _reductions(app, [1_000_000] * 3)
    batch = _issued(staff, tonnes=2)
    sale = staff["operator1"].post(f"{BATCHES}/{batch['id']}/sales", {"tonnes": 1, "buyer": "b",
                                                                       "price_yuan_per_tonne": "9"}).get_json()
    draft = _draft(staff["operator1"]).get_json()
    statements = [
        # a reduction in a second batch
        f"INSERT INTO market_batch_members (reduction_id, batch_id, grams, status, added_at) "
        f"VALUES ({ids[0]}, {draft['id']}, 1000000, 'active', '2026-01-01 00:00:00')",
        # a used serial given to another transaction, or freed again
        f"UPDATE market_serials SET transaction_id = NULL WHERE batch_id = {batch['id']} AND serial = 1",
        f"UPDATE market_serials SET transaction_id = {sale['id']} WHERE batch_id = {batch['id']} AND serial = 1",
        f"DELETE FROM market_serials WHERE batch_id = {batch['id']}",
        # a serial minted twice under the key
        f"INSERT INTO market_serials (serial_key, serial, batch_id) VALUES ('{batch['serial_key']}', 2, {draft['id']})",
        # a sale changed or erased
        f"UPDATE market_transactions SET buyer = 'someone else' WHERE id = {sale['id']}",
        f"DELETE FROM market_transactions WHERE id = {sale['id']}",
        # an issued batch's members, tonnes and status
        f"DELETE FROM market_batch_members WHERE batch_id = {batch['id']}",
        f"UPDATE market_batch_members SET grams = 5 WHERE batch_id = {batch['id']}",
        f"UPDATE market_batches SET tonnes = 3 WHERE id = {batch['id']}",
        f"UPDATE market_batches SET serial_start = 7, serial_end = 8 WHERE id = {batch['id']}",
        f"UPDATE market_batches SET status = 'draft' WHERE id = {batch['id']}",
        f"UPDATE market_batches SET pooled_grams = 1 WHERE id = {batch['id']}",       # under its tonnes
        f"DELETE FROM market_batches WHERE id = {draft['id']}",
        # a member of an issued batch reversed behind the market's back
        f"UPDATE reductions SET status = 'reversed' WHERE id = {ids[0]}",
    ]
    with app.app_context():
        for statement in statements:
            with pytest.raises(DatabaseError):
                db.session.execute(text(statement))
            db.session.rollback()
        assert db.session.get(Reduction, ids[0]).status == "certified"
        # What the market does itself is allowed: the free serial to a new transaction, once.
        assert db.session.execute(text(
            f"UPDATE market_serials SET transaction_id = {sale['id']} WHERE batch_id = {batch['id']} AND serial = 2"
        )).rowcount == 1
        db.session.rollback()


# --- exclusions ------------------------------------------------------------------------------------------


def test_exclusions_answer_per_item_and_are_lifted_by_an_auditor(app: Flask, staff: dict[str, Api]) -> None:
    ids = _reductions(app, [1_000_000, 400_000, 300_000])
    reversed_id = _reductions(app, [100], status="reversed")[0]
    elsewhere = _reductions(app, [100], region="430400")[0]
    batch = _draft(staff["operator1"], tonnes=1).get_json()
    assert _members(app, batch["id"]) == ids[:1]
    path = "/api/v1/admin/market/exclusions"
    body = {"reduction_ids": [ids[1], ids[1], ids[0], reversed_id, elsewhere, 999_999], "category": "ccer",
            "reason": "registered as a CCER project"}
    results = staff["operator1"].post(path, body).get_json()["results"]
    assert [(r["reduction_id"], r["status"]) for r in results] == [
        (ids[1], "excluded"), (ids[0], "pooled"), (reversed_id, "reversed"), (elsewhere, "not_found"),
        (999_999, "not_found")]
    assert results[1]["batch_id"] == batch["id"]
    again = staff["auditor1"].post(path, {**body, "reduction_ids": [ids[1]]}).get_json()["results"]
    assert again == [{"reduction_id": ids[1], "status": "already_excluded", "exclusion_id": results[0]["exclusion_id"]}]
    for bad, field in (({**body, "category": "rumour"}, "category"), ({**body, "reduction_ids": []}, "reduction_ids"),
                       ({**body, "reason": ""}, "reason")):
        response = staff["operator1"].post(path, bad)
        assert response.status_code == 422 and field in response.get_json()["errors"]["json"]

    listed = staff["auditor2"].get(path, query_string={"live": "true"}).get_json()["items"]
    assert [e["reduction_id"] for e in listed] == [ids[1]]
    exclusion = results[0]["exclusion_id"]
    assert staff["operator1"].post(f"{path}/{exclusion}/lift", {"reason": "withdrawn from CCER"}).status_code == 403
    lifted = staff["auditor1"].post(f"{path}/{exclusion}/lift", {"reason": "withdrawn from CCER"}).get_json()
    assert lifted["lifted_at"] and lifted["lift_reason"] == "withdrawn from CCER"
    twice = staff["auditor1"].post(f"{path}/{exclusion}/lift", {"reason": "again"})
    assert twice.status_code == 409 and twice.get_json()["error"] == "already_lifted"
    available = staff["operator1"].get("/api/v1/admin/market/available", query_string={
        "methodology": "travel", "region": "430600", "vintage": VINTAGE}).get_json()
    assert available["reductions"] == 2 and available["grams"] == 700_000


def test_staff_of_another_region_see_no_batch(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    _reductions(app, [1_000_000])
    batch = _issued(staff)
    make_staff(app, "hengyang-op", "operator", scope="430400")
    other = login(api, "hengyang-op")
    assert other.get(f"{BATCHES}/{batch['id']}").status_code == 403
    assert other.post(f"{BATCHES}/{batch['id']}/retirements", {"tonnes": 1, "beneficiary": "b",
                                                               "purpose": "p"}).status_code == 403
    assert other.get(BATCHES).get_json()["items"] == []
    assert [b["id"] for b in staff["admin1"].get(BATCHES).get_json()["items"]] == [batch["id"]]
    assert staff["operator1"].get(BATCHES, query_string={"status": "issued", "vintage": VINTAGE}).get_json()["items"]
    assert staff["operator1"].get(BATCHES, query_string={"status": "sideways"}).status_code == 422
    assert staff["operator1"].get(f"{BATCHES}/999999").status_code == 404


# --- concurrency (PostgreSQL) ----------------------------------------------------------------------------


def _as(app: Flask, username: str, call: Any) -> Any:
    """Run ``call(actor)`` in its own app context and commit, as one request would."""
    with app.app_context():
        actor = db.session.scalar(select(User).where(User.username == username))
        try:
            result = call(actor)
            db.session.commit()
            return result
        except (ApiError, IntegrityError):
            db.session.rollback()
            raise


@on_postgres
def test_overlapping_retirements_at_once_exactly_one_wins(app: Flask, staff: dict[str, Api]) -> None:
    _reductions(app, [1_000_000] * 6)
    batch = _issued(staff)

    def retire(first: int, last: int) -> Any:
        return _as(app, "operator1", lambda actor: market.retire(
            batch["id"], actor=actor, beneficiary="b", purpose="p", first_serial=first, last_serial=last).id)

    results = run_together(retire, [(1, 3), (3, 4), (3, 3), (2, 6)])     # every range holds serial 3
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Conflict) and r.error == "serials_used" for r in results if not isinstance(r, int))
    with app.app_context():
        won = db.session.get(MarketTransaction, winners[0])
        assert db.session.scalar(select(func.count()).select_from(MarketSerial).where(
            MarketSerial.transaction_id == won.id)) == won.tonnes
    with app.app_context():
        used = db.session.execute(select(MarketSerial.serial, MarketSerial.transaction_id)
                                  .where(MarketSerial.transaction_id.is_not(None))).all()
        assert len(used) == len({s for s, _ in used}) == db.session.scalar(select(func.sum(MarketTransaction.tonnes)))


@on_postgres
def test_two_pools_at_once_never_share_a_reduction(app: Flask, staff: dict[str, Api]) -> None:
    _reductions(app, [250_000] * 12)                          # 3 t

    def pool(tonnes: int | None) -> Any:
        return _as(app, "operator1", lambda actor: market.draft(
            methodology="travel", region="430600", include_subregions=True, vintage=VINTAGE, tonnes=tonnes,
            note=None, actor=actor).id)

    results = run_together(pool, [(1,), (1,), (1,), (1,)])
    made = [r for r in results if isinstance(r, int)]
    assert len(made) == 3 and all(isinstance(r, Conflict) for r in results if not isinstance(r, int)), results
    members = [m for batch_id in made for m in _members(app, batch_id)]
    assert len(members) == len(set(members)) == 12
    results = run_together(pool, [(None,), (None,)])           # nothing is left
    assert all(isinstance(r, Conflict) and r.error == "not_enough_reductions" for r in results)


@on_postgres
def test_a_reversal_racing_an_issue_never_leaves_a_reversed_member(app: Flask, staff: dict[str, Api]) -> None:
    from backend.services import ledger

    for _ in range(3):
        ids = _reductions(app, [1_000_000])
        draft = _draft(staff["operator1"]).get_json()
        batch_id, reduction_id = draft["id"], ids[0]

        def issue(batch_id: int = batch_id) -> Any:
            return _as(app, "auditor1", lambda actor: market.issue(batch_id, actor=actor).status)

        def reverse(reduction_id: int = reduction_id) -> Any:
            return _as(app, "auditor2",
                       lambda actor: ledger.reverse_reduction(reduction_id, actor=actor, reason="race"))

        results = run_together(lambda f: f(), [(issue,), (reverse,)])
        assert sum(1 for r in results if isinstance(r, Exception)) == 1, results
        with app.app_context():
            status = db.session.get(MarketBatch, batch_id).status
            reduction = db.session.get(Reduction, reduction_id).status
            assert (status, reduction) in {("issued", "certified"), ("draft", "reversed")}
        if status == "draft":
            staff["operator1"].post(f"{BATCHES}/{batch_id}/discard", {"reason": "race lost"})
