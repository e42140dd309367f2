"""Ingestion (DESIGN §9): consent, the partner batch contract item by item, dedupe across partners,
review, fraud signals, all-or-nothing batches."""

from __future__ import annotations

import csv
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from backend.db import db, utcnow
from backend.models import Activity, JournalEntry, PartnerBinding, Reduction, ReductionEvaluation
from backend.services import importer, ingest, ledger
from backend.services.ledger import china_day as ledger_day
from tests.conftest import Api, on_postgres, run_together, sign_up
from tests.partner_client import partner_call, signed_headers

PATH = "/api/v1/partner/activities"


def _partner(operator: Api, name: str = "岳阳公交", types: tuple[str, ...] = ("bus_ride", "metro_ride", "bike_ride"),
             region: str = "430600", kind: str = "transit") -> dict[str, Any]:
    response = operator.post("/api/v1/admin/partners", {"name": name, "kind": kind, "activity_types": list(types),
                                                        "region": region})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _bind(person: Api, partner: dict[str, Any], ref: str, app: Flask | None = None, days: int = 10) -> dict[str, Any]:
    response = person.post("/api/v1/me/bindings", {"partner_id": partner["id"], "external_user_ref": ref})
    assert response.status_code == 201, response.get_json()
    if app is not None:  # as if bound `days` ago (ten by default), so the trips of the last days count
        with app.app_context():
            db.session.execute(update(PartnerBinding).where(PartnerBinding.id == response.get_json()["id"])
                               .values(created_at=utcnow() - timedelta(days=days)))
            db.session.commit()
    return response.get_json()


def _send(client: FlaskClient, partner: dict[str, Any], items: list[dict[str, Any]], **overrides: Any) -> Any:
    return partner_call(client, partner["key_id"], partner["secret"], "POST", PATH, {"activities": items},
                        **overrides)


WRITTEN = (Activity, Reduction, ReductionEvaluation, JournalEntry)  # what a batch writes, table by table


def _counts(app: Flask, *models: Any) -> list[int]:
    with app.app_context():
        return [db.session.scalar(select(func.count()).select_from(model)) for model in models]


def _crash_mid_credit(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """ledger.credit, as ingest calls it, credits the batch's first reduction for real and then dies."""
    real, credited = ledger.credit, []

    def crash(ids: list[int]) -> None:
        credited.extend(real(ids[:1]))  # journal entries and an evaluation are written...
        raise RuntimeError("killed while crediting")  # ...and the batch dies before the rest

    monkeypatch.setattr(ingest.ledger, "credit", crash)
    return credited


def _results(client: FlaskClient, partner: dict[str, Any], items: list[dict[str, Any]],
             **overrides: Any) -> list[dict[str, Any]]:
    response = _send(client, partner, items, **overrides)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def _trip(ext: str, ref: str, at: datetime, kind: str = "bus_ride", km: str = "10",
          minutes: int = 30) -> dict[str, Any]:
    return {"external_id": ext, "user_ref": ref, "type": kind, "occurred_at": at.isoformat(),
            "data": {"distance_km": km, "duration_min": minutes}}


@pytest.fixture
def setup(app: Flask, api: Api, staff: dict[str, Api]) -> dict[str, Any]:
    person = sign_up(api, "rider", region="430602")
    bus = _partner(staff["operator1"])
    _bind(person, bus, "card-1", app)
    return {"person": person, "bus": bus, "soon": utcnow() - timedelta(days=3)}


def test_a_batch_answers_per_item(client: FlaskClient, app: Flask, api: Api, setup: dict[str, Any]) -> None:
    later = setup["soon"] + timedelta(minutes=1)
    _bind(sign_up(api, "old-rider", region="430602"), setup["bus"], "card-old", app, days=40)
    results = _results(client, setup["bus"], [
        _trip("t1", "card-1", later),                                            # 10 km bus: 520 g
        _trip("t2", "card-2", later + timedelta(hours=1)),                       # nobody bound card-2
        _trip("t3", "card-1", later + timedelta(hours=2), km="-3"),              # bad distance
        _trip("t4", "card-1", later + timedelta(hours=3), kind="walk"),          # not this partner's type
        _trip("t5", "card-1", later + timedelta(hours=3), km="70", minutes=30),  # 140 km/h on a bus
        {"external_id": "t6", "user_ref": "card-1", "type": "bus_ride", "occurred_at": "2026-11-21T10:00:00",
         "data": {"distance_km": "1", "duration_min": 5}},                       # no zone
        _trip("t7", "card-1", later + timedelta(days=4)),                        # in the future
        _trip("t8", "card-1", utcnow() - timedelta(days=11)),                    # in the window, before binding
        _trip("t9", "card-old", utcnow() - timedelta(days=31)),                  # bound 40 days ago, too old
    ])
    by_id = {r["external_id"]: r for r in results}
    assert [r["external_id"] for r in results] == [f"t{i}" for i in range(1, 10)]
    assert by_id["t1"]["status"] == "credited" and by_id["t1"]["reduction_g"] == 520 and by_id["t1"]["points"] > 0
    assert (by_id["t2"]["status"], by_id["t2"]["reason"]) == ("rejected", "unbound")
    assert (by_id["t3"]["status"], by_id["t3"]["field"]) == ("rejected", "data.distance_km")
    assert (by_id["t4"]["reason"], by_id["t4"]["field"]) == ("type_not_allowed", "type")
    assert (by_id["t5"]["status"], by_id["t5"]["reason"]) == ("rejected", "implausible_speed")
    assert (by_id["t6"]["status"], by_id["t6"]["field"]) == ("rejected", "occurred_at")
    assert (by_id["t7"]["status"], by_id["t7"]["reason"]) == ("rejected", "in_the_future")
    assert [(by_id[t]["status"], by_id[t]["reason"], by_id[t]["field"]) for t in ("t8", "t9")] == [
        ("rejected", "before_binding", "occurred_at"), ("rejected", "too_old", "occurred_at")]
    assert "30 days" in by_id["t9"]["message"]
    balance = setup["person"].get("/api/v1/me/balance").get_json()
    assert balance["points"] == by_id["t1"]["points"] and balance["reduction_g"] == 520
    mine = setup["person"].get("/api/v1/me/activities").get_json()["items"]
    assert {a["status"] for a in mine} >= {"credited", "rejected"}


@pytest.mark.parametrize(("change", "reason", "field"), [
    ({"data": {"distance_km": "0", "duration_min": 30}}, "invalid_evidence", "data.distance_km"),
    ({"data": {"distance_km": "NaN", "duration_min": 30}}, "invalid_evidence", "data.distance_km"),
    ({"data": {"distance_km": "90", "duration_min": 150}}, "implausible_distance", "data.distance_km"),
    ({"data": {"distance_km": "5"}}, "invalid_evidence", "data.duration_min"),
    ({"type": "teleport"}, "unknown_type", "type"),
    ({"occurred_at": None}, "invalid", "occurred_at"),
    ({"user_ref": ""}, "invalid", "user_ref"),
    ({"occurred_at": "9999-12-31T23:59:59Z"}, "invalid", "occurred_at"),  # its end overflowed: a 500
    ({"data": {"distance_km": "1E-5000000", "duration_min": 30}}, "invalid_evidence", "data.distance_km"),
])
def test_a_bad_item_is_rejected_naming_its_field_and_the_rest_goes_on(
        client: FlaskClient, setup: dict[str, Any], change: dict[str, Any], reason: str, field: str) -> None:
    bad = _trip("bad", "card-1", setup["soon"]) | change
    good = _trip("good", "card-1", setup["soon"] + timedelta(hours=5))
    results = _results(client, setup["bus"], [bad, good])
    assert (results[0]["status"], results[0]["reason"], results[0]["field"]) == ("rejected", reason, field)
    assert results[1]["status"] == "credited"


def test_a_period_at_the_calendars_end_is_rejected_naming_its_field(client: FlaskClient, app: Flask,
                                                                     setup: dict[str, Any],
                                                                     staff: dict[str, Api]) -> None:
    grid = _partner(staff["operator1"], "光伏", ("rooftop_pv",), kind="grid")
    _bind(setup["person"], grid, "pv-1", app)
    item = {"external_id": "pv", "user_ref": "pv-1", "type": "rooftop_pv", "occurred_at": setup["soon"].isoformat(),
            "data": {"period_start": "9999-12-01", "period_end": "9999-12-31", "kwh": "5"}}
    result = _results(client, grid, [item])[0]
    assert (result["status"], result["reason"]) == ("rejected", "invalid_evidence")
    assert result["field"] in ("data.period_start", "data.period_end")


def test_an_unknown_material_is_rejected(client: FlaskClient, app: Flask, setup: dict[str, Any],
                                         staff: dict[str, Api]) -> None:
    kiosk = _partner(staff["operator1"], "回收亭", ("recycling",), kind="recycling")
    _bind(setup["person"], kiosk, "k-1", app)
    item = {"external_id": "r1", "user_ref": "k-1", "type": "recycling", "occurred_at": setup["soon"].isoformat(),
            "data": {"material": "plutonium", "weight_kg": "1"}}
    result = _results(client, kiosk, [item])[0]
    assert (result["status"], result["field"]) == ("rejected", "data.material")


def test_the_same_external_id_again_is_a_duplicate_with_the_original_outcome(
        client: FlaskClient, setup: dict[str, Any]) -> None:
    trip = _trip("same", "card-1", setup["soon"])
    first = _results(client, setup["bus"], [trip])[0]
    again = _results(client, setup["bus"], [trip, trip])
    assert first["status"] == "credited"
    assert [r["status"] for r in again] == ["duplicate", "duplicate"]
    assert again[0]["original"]["status"] == "credited" and again[0]["original"]["reduction_g"] == 520
    assert setup["person"].get("/api/v1/me/balance").get_json()["points"] == first["points"]


def test_an_overlapping_trip_from_another_partner_is_a_duplicate(
        client: FlaskClient, app: Flask, setup: dict[str, Any], staff: dict[str, Api]) -> None:
    maas = _partner(staff["operator1"], "出行App", ("bus_ride",), kind="maas")
    _bind(setup["person"], maas, "app-user-9", app)
    at = setup["soon"]
    assert _results(client, setup["bus"], [_trip("bus-1", "card-1", at)])[0]["status"] == "credited"
    other = _results(client, maas, [_trip("app-1", "app-user-9", at + timedelta(minutes=10)),
                                    _trip("app-2", "app-user-9", at + timedelta(hours=2))])
    assert (other[0]["status"], other[0]["reason"]) == ("duplicate", "overlaps")
    assert other[1]["status"] == "credited"


def test_one_household_and_one_billing_period_credit_once(client: FlaskClient, app: Flask, api: Api,
                                                          setup: dict[str, Any], staff: dict[str, Api]) -> None:
    grid = _partner(staff["operator1"], "国网岳阳", ("household_electricity",), kind="grid")
    owner, partner_ = setup["person"], sign_up(api, "spouse", region="430602")
    code = owner.post("/api/v1/households", {"name": "李家"}).get_json()["invite_code"]
    assert partner_.post("/api/v1/households/join", {"invite_code": code}).status_code == 200
    _bind(owner, grid, "meter-owner", app)
    _bind(partner_, grid, "meter-spouse", app)
    today = utcnow().date()

    def bill(ext: str, ref: str, first: int, last: int, sent: int) -> dict[str, Any]:
        return {"external_id": ext, "user_ref": ref, "type": "household_electricity",
                "occurred_at": (utcnow() - timedelta(days=sent)).isoformat(),
                "data": {"period_start": (today - timedelta(days=first)).isoformat(),
                         "period_end": (today - timedelta(days=last)).isoformat(), "kwh": "150", "household_size": 3}}

    first = _results(client, grid, [bill("b1", "meter-owner", 40, 11, 10)])[0]
    assert first["status"] == "credited"
    # The same household's overlapping period, billed later and sent for the other member: one credit.
    again = _results(client, grid, [bill("b2", "meter-spouse", 35, 6, 5)])[0]
    assert (again["status"], again["reason"]) == ("duplicate", "overlaps")


def test_consent_revoked_stops_credits(client: FlaskClient, setup: dict[str, Any]) -> None:
    binding = setup["person"].get("/api/v1/me/bindings").get_json()["items"][0]
    assert setup["person"].delete(f"/api/v1/me/bindings/{binding['id']}").status_code == 200
    result = _results(client, setup["bus"], [_trip("after", "card-1", setup["soon"])])[0]
    assert (result["status"], result["reason"]) == ("rejected", "unbound")
    assert setup["person"].get("/api/v1/me/bindings").get_json()["items"][0]["revoked_at"] is not None


def test_a_region_may_shorten_the_claim_window(client: FlaskClient, api: Api, setup: dict[str, Any],
                                               staff: dict[str, Api]) -> None:
    rules = api.get("/api/v1/public/rules?region=430600").get_json()["regions"][0]["rules"]
    payload = {k: rules[k] for k in ("name", "points", "caps", "engagement", "campaigns", "expiry", "budget",
                                     "settlement")} | {"claims": {"window_days": 2}}
    number = staff["operator1"].post("/api/v1/admin/rules/versions", {"region": "430600", "rules": payload})
    assert number.status_code == 201, number.get_json()
    path = f"/api/v1/admin/rules/versions/{number.get_json()['version']}"
    staff["operator1"].post(f"{path}/submit")
    assert staff["auditor1"].post(f"{path}/approve").status_code == 200
    result = _results(client, setup["bus"], [_trip("old", "card-1", setup["soon"])])[0]  # three days ago
    assert (result["status"], result["reason"]) == ("rejected", "too_old") and "2 days" in result["message"]


def test_bad_requests_write_nothing(client: FlaskClient, app: Flask, setup: dict[str, Any]) -> None:
    bus = setup["bus"]
    too_many = [_trip(f"x{i}", "card-1", setup["soon"]) for i in range(1001)]
    assert _send(client, bus, too_many).status_code == 422
    assert partner_call(client, bus["key_id"], bus["secret"], "POST", PATH, None,
                        headers={"Content-Type": "application/json"}).status_code in (400, 422)
    malformed = b'{"activities": [}'
    response = client.post(PATH, data=malformed, headers=signed_headers(bus["key_id"], bus["secret"], "POST", PATH,
                                                                        malformed))
    assert response.status_code == 400
    assert partner_call(client, bus["key_id"], "wrong" * 10, "POST", PATH,
                        {"activities": [_trip("y", "card-1", setup["soon"])]}).status_code == 401
    assert _counts(app, *WRITTEN) == [0, 0, 0, 0]


def test_a_stale_replayed_or_disabled_partners_batch_is_refused_and_writes_nothing(
        client: FlaskClient, app: Flask, setup: dict[str, Any], staff: dict[str, Api]) -> None:
    bus, trips = setup["bus"], [_trip("s1", "card-1", setup["soon"])]
    stale = _send(client, bus, trips, timestamp=int(time.time()) - 301)
    assert (stale.status_code, stale.get_json()["error"]) == (401, "timestamp_stale")
    assert _counts(app, Activity) == [0]
    signed_at = int(time.time()) - 290  # still inside the 300 s window: accepted once, then a replay
    assert _send(client, bus, trips, timestamp=signed_at).status_code == 200
    assert _counts(app, Activity) == [1]
    replay = _send(client, bus, trips, timestamp=signed_at)  # the very same signed request
    assert (replay.status_code, replay.get_json()["error"]) == (401, "replayed")
    assert _counts(app, Activity) == [1]
    disabled = staff["operator1"].post(f"/api/v1/admin/partners/{bus['id']}/disable", {"reason": "contract ended"})
    assert disabled.get_json()["status"] == "disabled"
    refused = _send(client, bus, [_trip("s2", "card-1", setup["soon"] + timedelta(hours=1))])
    assert (refused.status_code, refused.get_json()["error"]) == (403, "partner_disabled")
    assert _counts(app, Activity) == [1]


def test_outliers_go_to_review_and_are_approved_once(client: FlaskClient, app: Flask, setup: dict[str, Any],
                                                     staff: dict[str, Api]) -> None:
    kiosk = _partner(staff["operator1"], "回收亭", ("recycling",), kind="recycling")
    _bind(setup["person"], kiosk, "k-1", app)
    heavy = {"external_id": "r1", "user_ref": "k-1", "type": "recycling", "occurred_at": setup["soon"].isoformat(),
             "data": {"material": "cardboard", "weight_kg": "60"}}                # over 50 kg: review
    result = _results(client, kiosk, [heavy])[0]
    assert result["status"] == "pending_review"
    queue = staff["auditor1"].get("/api/v1/admin/review-queue").get_json()["items"]
    assert [q["id"] for q in queue] == [result["activity_id"]]
    approve = f"/api/v1/admin/review-queue/{result['activity_id']}/approve"
    outcome = run_together(lambda: staff["auditor1"].post(approve, {}).status_code, [(), ()])
    assert sorted(outcome) == [200, 409]
    assert staff["auditor1"].post(approve, {}).status_code == 409
    mine = setup["person"].get("/api/v1/me/activities").get_json()["items"][0]
    assert mine["status"] == "credited"
    assert setup["person"].get("/api/v1/me/balance").get_json()["reduction_g"] == 60 * 3461


def test_a_rejection_is_recorded_with_its_reason(client: FlaskClient, setup: dict[str, Any],
                                                 staff: dict[str, Api]) -> None:
    staff["admin1"].post(f"/api/v1/admin/partners/{setup['bus']['id']}/trust", {"trust_level": "probation"})
    result = _results(client, setup["bus"], [_trip("p1", "card-1", setup["soon"])])[0]
    assert (result["status"], result["reason"]) == ("pending_review", "partner_on_probation")
    reject = f"/api/v1/admin/review-queue/{result['activity_id']}/reject"
    assert staff["auditor1"].post(reject, {}).status_code == 422
    assert staff["auditor1"].post(reject, {"reason": "card reported stolen"}).status_code == 200
    mine = setup["person"].get("/api/v1/me/activities").get_json()["items"][0]
    assert (mine["status"], mine["reason"]) == ("rejected", "card reported stolen")


def test_self_reports_need_review_and_a_receipt(setup: dict[str, Any]) -> None:
    person = setup["person"]
    quiz = {"type": "quiz", "occurred_at": setup["soon"].isoformat(), "data": {"quiz_id": "q-2026-11", "score": 80}}
    response = person.post("/api/v1/me/activities", quiz)
    assert response.status_code == 201 and response.get_json()["results"][0]["status"] == "pending_review"
    drop = {"type": "recycling", "occurred_at": setup["soon"].isoformat(),
            "data": {"material": "pet", "weight_kg": "2"}}
    refused = person.post("/api/v1/me/activities", drop)
    assert refused.status_code == 422 and "receipt_id" in str(refused.get_json()["errors"])
    assert person.post("/api/v1/me/activities", {**drop, "type": "bus_ride"}).status_code == 422
    drop["data"]["receipt_id"] = "KIOSK-7-000123"
    assert person.post("/api/v1/me/activities", drop).get_json()["results"][0]["status"] == "pending_review"
    again = person.post("/api/v1/me/activities", drop).get_json()["results"][0]
    assert again["status"] == "duplicate"


def test_an_impossible_day_is_flagged(client: FlaskClient, app: Flask, setup: dict[str, Any],
                                      staff: dict[str, Api]) -> None:
    changsha = _partner(staff["admin1"], "株洲公交", ("metro_ride",), region="430200")
    _bind(setup["person"], changsha, "zz-1", app)
    at = setup["soon"]
    assert _results(client, setup["bus"], [_trip("yy", "card-1", at)])[0]["status"] == "credited"
    hop = _results(client, changsha, [_trip("zz", "zz-1", at + timedelta(minutes=40), kind="metro_ride")])[0]
    assert (hop["status"], hop["reason"]) == ("pending_review", "impossible_travel")
    signals = staff["admin1"].get("/api/v1/admin/fraud-signals").get_json()["items"]
    assert [s["kind"] for s in signals] == ["impossible_travel"]


def test_a_hop_needs_another_city_and_minutes_between(client: FlaskClient, app: Flask, setup: dict[str, Any],
                                                      staff: dict[str, Api]) -> None:
    """The same city minutes apart, or another city hours apart, is a possible day; another city
    minutes apart is not, whichever partner reported first."""
    zhuzhou = _partner(staff["admin1"], "株洲公交", ("metro_ride",), region="430200")
    _bind(setup["person"], zhuzhou, "zz-1", app)
    at = setup["soon"]
    first = [_trip("yy-a", "card-1", at), _trip("yy-b", "card-1", at + timedelta(minutes=35))]
    assert [r["status"] for r in _results(client, setup["bus"], first)] == ["credited", "credited"]
    later = _results(client, zhuzhou, [_trip("zz-a", "zz-1", at + timedelta(hours=3), kind="metro_ride")])
    assert later[0]["status"] == "credited"                       # 2 h 25 min after the last Yueyang trip
    back = _results(client, setup["bus"], [_trip("yy-c", "card-1", at + timedelta(hours=3, minutes=40))])
    assert (back[0]["status"], back[0]["reason"]) == ("pending_review", "impossible_travel")  # 10 min after
    assert "city 4302 and city 4306" in back[0]["message"]


def test_a_jump_in_a_partners_rejections_is_flagged(client: FlaskClient, setup: dict[str, Any],
                                                    staff: dict[str, Api]) -> None:
    at = setup["soon"]
    good = [_trip(f"g{i}", "card-1", at + timedelta(hours=i), km="1", minutes=5) for i in range(30)]
    bad = [_trip(f"b{i}", "card-1", at + timedelta(hours=i, minutes=30), km="-1", minutes=5) for i in range(30)]
    statuses = {r["status"] for r in _results(client, setup["bus"], good + bad)}
    assert statuses == {"credited", "rejected"}
    signals = staff["admin1"].get("/api/v1/admin/fraud-signals").get_json()["items"]
    assert [(s["kind"], s["partner_id"]) for s in signals] == [("rejection_spike", setup["bus"]["id"])]
    assert "50% of a batch of 60 rejected" in signals[0]["detail"]


def test_more_hours_on_the_move_than_a_day_allows_is_flagged(client: FlaskClient, setup: dict[str, Any]) -> None:
    from backend.methodology import start_of_day

    midnight = start_of_day(ledger_day(setup["soon"]))
    trips = [_trip(f"h{i}", "card-1", midnight + timedelta(hours=i), minutes=60) for i in range(21)]
    results = _results(client, setup["bus"], trips)
    assert [r["status"] for r in results[:20]] == ["credited"] * 20                # 20 hours: still possible
    assert (results[20]["status"], results[20]["reason"]) == ("pending_review", "too_many_hours")


def test_hours_already_recorded_that_day_count_and_other_days_do_not(client: FlaskClient,
                                                                     setup: dict[str, Any]) -> None:
    from backend.methodology import start_of_day

    midnight = start_of_day(ledger_day(setup["soon"]))
    day_before = [_trip(f"d{i}", "card-1", midnight - timedelta(hours=20) + timedelta(hours=i), minutes=55)
                  for i in range(20)]
    that_day = [_trip(f"t{i}", "card-1", midnight + timedelta(hours=i), minutes=60) for i in range(20)]
    assert {r["status"] for r in _results(client, setup["bus"], day_before + that_day)} == {"credited"}
    # One more hour on that day, in a later batch: 21 hours with what is recorded, flagged; the
    # same hour on the next day (after 20 hours the day before, recorded too) is not.
    late = _results(client, setup["bus"], [_trip("late", "card-1", midnight + timedelta(hours=21), minutes=60),
                                            _trip("next", "card-1", midnight + timedelta(hours=25), minutes=60)])
    assert (late[0]["status"], late[0]["reason"]) == ("pending_review", "too_many_hours")
    assert late[1]["status"] == "credited"


def _binding_burst(api: Api, setup: dict[str, Any]) -> None:
    """Three residents bind one bus card in turn (each revoking before the next binds it)."""
    for n in range(3):
        person = sign_up(api, f"sharer{n}")
        _bind(person, setup["bus"], "shared-card")
        person.delete(f"/api/v1/me/bindings/{person.get('/api/v1/me/bindings').get_json()['items'][0]['id']}")


def test_a_burst_of_bindings_to_one_account_is_flagged(api: Api, setup: dict[str, Any],
                                                       staff: dict[str, Api]) -> None:
    _binding_burst(api, setup)
    kinds = [s["kind"] for s in staff["admin1"].get("/api/v1/admin/fraud-signals").get_json()["items"]]
    assert kinds == ["binding_burst"]


def test_an_auditor_resolves_a_signal_once_saying_what_was_found(api: Api, setup: dict[str, Any],
                                                                 staff: dict[str, Api]) -> None:
    _binding_burst(api, setup)
    [signal] = staff["auditor1"].get("/api/v1/admin/fraud-signals?status=open").get_json()["items"]
    path = f"/api/v1/admin/fraud-signals/{signal['id']}/resolve"
    assert staff["operator1"].post(path, {"status": "confirmed", "resolution": "x"}).status_code == 403
    blank = staff["auditor1"].post(path, {"status": "confirmed", "resolution": "  "})
    assert (blank.status_code, blank.get_json()["error"]) == (422, "reason_required")
    done = staff["auditor1"].post(path, {"status": "confirmed", "resolution": "One card, three sign-ups: a reseller."})
    assert done.status_code == 200 and done.get_json()["status"] == "confirmed"
    again = staff["auditor1"].post(path, {"status": "dismissed", "resolution": "changed my mind"})
    assert (again.status_code, again.get_json()["error"]) == (409, "already_decided")
    assert staff["auditor1"].get("/api/v1/admin/fraud-signals?status=open").get_json()["items"] == []
    log = staff["auditor1"].get("/api/v1/admin/audit-log?action=fraud_signal.confirmed").get_json()["items"]
    assert [(entry["target_id"], entry["actor"], entry["reason"]) for entry in log] == \
        [(str(signal["id"]), "auditor1", "One card, three sign-ups: a reseller.")]


def _two_trips(setup: dict[str, Any]) -> list[dict[str, Any]]:
    return [_trip("c1", "card-1", setup["soon"]), _trip("c2", "card-1", setup["soon"] + timedelta(hours=1))]


def test_a_crash_mid_batch_writes_nothing(app: Flask, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.models import Partner

    with app.app_context():
        partner = db.session.get(Partner, setup["bus"]["id"])
        credited = _crash_mid_credit(monkeypatch)
        with pytest.raises(RuntimeError):
            ingest.ingest(ingest.Reporter("partner", partner=partner), _two_trips(setup))
        assert [c.status for c in credited] == ["credited"]  # it did die half-way through
        db.session.rollback()
        monkeypatch.undo()
        assert db.session.scalar(select(func.count()).select_from(Activity)) == 0
        answers = ingest.ingest(ingest.Reporter("partner", partner=partner), _two_trips(setup))
        db.session.commit()
        assert [a["status"] for a in answers] == ["credited", "credited"]
    assert _counts(app, *WRITTEN) == [2, 2, 2, 2]


def test_a_batch_killed_mid_credit_over_http_writes_nothing_and_a_retry_credits_once(
        client: FlaskClient, app: Flask, setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    credited = _crash_mid_credit(monkeypatch)
    sent_at = int(time.time())
    crashed = _send(client, setup["bus"], _two_trips(setup), timestamp=sent_at)
    assert [c.status for c in credited] == ["credited"]  # the first item's points were posted, then it died
    assert crashed.status_code >= 500
    body = crashed.get_json()
    assert (body["code"], body["status"], body["error"]) == (crashed.status_code, "Internal Server Error", "internal")
    assert body["message"] and "killed" not in body["message"]
    assert _counts(app, *WRITTEN) == [0, 0, 0, 0]
    monkeypatch.undo()
    retry = _results(client, setup["bus"], _two_trips(setup), timestamp=sent_at + 1)  # signed anew
    assert [r["status"] for r in retry] == ["credited", "credited"] and all(r["points"] > 0 for r in retry)
    assert _counts(app, *WRITTEN) == [2, 2, 2, 2]  # one activity, reduction, evaluation and entry each
    assert setup["person"].get("/api/v1/me/balance").get_json()["points"] == sum(r["points"] for r in retry)


@on_postgres
def test_two_partners_racing_the_same_trip_credit_it_once(client: FlaskClient, setup: dict[str, Any],
                                                          staff: dict[str, Api], app: Flask) -> None:
    maas = _partner(staff["operator1"], "出行App", ("bus_ride",), kind="maas")
    _bind(setup["person"], maas, "app-user-9", app)
    at = setup["soon"]
    statuses = run_together(
        lambda partner, ref, ext: _results(app.test_client(), partner, [_trip(ext, ref, at)])[0]["status"],
        [(setup["bus"], "card-1", "a"), (maas, "app-user-9", "b")])
    assert sorted(statuses) == ["credited", "duplicate"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Reduction)) == 1


def _write_history(path: Path, items: list[dict[str, Any] | None]) -> None:
    """A partner's history as CSV (evidence in data.<field> columns) or JSON Lines; None: a malformed record."""
    if path.suffix == ".jsonl":
        path.write_text("".join('{"external_id": "broken", "user_ref": \n' if item is None else json.dumps(item) + "\n"
                                for item in items))
        return
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["external_id", "user_ref", "type", "occurred_at", "data", "data.distance_km",
                      "data.duration_min"])
        for item in items:
            out.writerow(["broken", "card-1", "bus_ride", "", '{"distance_km": 5,', "", ""] if item is None else
                         [item["external_id"], item["user_ref"], item["type"], item["occurred_at"], "",
                          item["data"]["distance_km"], item["data"]["duration_min"]])


def _import(app: Flask, path: Path, partner: dict[str, Any], *options: str) -> str:
    """The import's summary line (its output's last); the lines above it list what was rejected."""
    return _import_output(app, path, partner, *options)[-1]


def _import_output(app: Flask, path: Path, partner: dict[str, Any], *options: str) -> list[str]:
    from click.testing import CliRunner

    from backend.cli import main

    result = CliRunner().invoke(main, ["import", "activities", str(path), "--partner", str(partner["id"]), *options],
                                obj={"app": app})
    assert result.exit_code == 0, result.output
    return [line for line in result.output.strip().splitlines() if line.startswith(("rejected", "imported:"))]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_import_is_resumable_and_summarises(app: Flask, setup: dict[str, Any], tmp_path: Path, suffix: str) -> None:
    at = setup["soon"]
    good = [_trip(f"h{i}", "card-1", at + timedelta(hours=i), km="5", minutes=20) for i in range(3)]
    bad = [_trip("h3", "nobody", at, km="5", minutes=20), _trip("h4", "card-1", at, km="-1", minutes=20)]
    path = tmp_path / f"history{suffix}"
    _write_history(path, good[:2])  # as if the import had stopped after its first two rows
    assert _import(app, path, setup["bus"]) == "imported: credited 2"
    _write_history(path, [*good[:2], None, good[2], *bad])
    # The two already in are skipped; the malformed record is rejected and the rows after it go in.
    assert _import(app, path, setup["bus"]) == "imported: credited 1, duplicate 2, rejected 3"
    # What was recorded is skipped; an unbound or malformed row is not recorded (no one to record it for),
    # so it is judged again.
    rejects = tmp_path / "rejects.csv"
    output = _import_output(app, path, setup["bus"], "--rejects", str(rejects))
    assert output[-1] == "imported: duplicate 4, rejected 2"
    # Each rejected record by its line in the file (the CSV's header is line 1), with its reason.
    malformed, unbound = (4, 6) if suffix == ".csv" else (3, 5)
    assert output[0].startswith(f"rejected: line {malformed}: unreadable: ") and "not JSON" in output[0]
    assert output[1] == f"rejected: line {unbound} (h3): unbound user_ref: no resident has bound this account to " \
                        "the partner (or the binding was revoked)"
    # The negative distance was recorded as rejected: the platform keeps that outcome under h4, so
    # the re-run says so and that a mended record needs a new external_id.
    assert output[2] == f"rejected before: line {unbound + 1} (h4): invalid_evidence: {importer.REJECTED_BEFORE}"
    with rejects.open(newline="") as handle:
        listed = list(csv.DictReader(handle))
    assert [(row["line"], row["external_id"], row["reason"]) for row in listed] == \
        [(str(malformed), "", "unreadable"), (str(unbound), "h3", "unbound"),
         (str(unbound + 1), "h4", "invalid_evidence")]
    assert _counts(app, Reduction, JournalEntry) == [3, 3]
