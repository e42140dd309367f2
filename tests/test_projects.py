"""Public-welfare projects (公益) and donations: create, donate, progress, receipts, close, bad input, races."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from backend.db import db
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import AuditLog, Donation, JournalEntry, WelfareProject
from backend.services import activities, ledger
from backend.services.ledger_verify import verify
from tests.conftest import Api, on_postgres, run_together, sign_up

MORNING = datetime.now(CHINA_STANDARD_TIME).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=1)
JUNSHAN, SHIFENG = "430611", "430204"


def _trip(app: Flask, resident_id: int, km: str = "10", at: datetime = MORNING) -> int:
    """One bus ride in Shifeng (the Shifeng rules: 10 km is 52 points); its reduction id."""
    with app.app_context():
        _, reduction = activities.record_one(activity_type="bus_ride", occurred_at=at,
                                             data={"distance_km": km, "duration_min": 30}, region=SHIFENG,
                                             source="demo", resident_id=resident_id, household_id=None)
        db.session.commit()
        assert reduction is not None
        return reduction.id


def _credit(app: Flask, *reduction_ids: int) -> None:
    with app.app_context():
        results = ledger.credit(list(reduction_ids))
        db.session.commit()
        assert all(r.status == "credited" for r in results), results


def _resident(app: Flask, api: Api, name: str, km: str | None = "20", region: str = JUNSHAN) -> Api:
    """A signed-up resident, with 104 points (one 20 km bus ride) unless ``km`` is None."""
    person = sign_up(api, name, region=region)
    if km is not None:
        _credit(app, _trip(app, person.get("/api/v1/me").get_json()["id"], km=km))
    return person


def _balance(person: Api) -> int:
    return person.get("/api/v1/me/balance").get_json()["points"]


def _project(creator: Api, region: str = JUNSHAN, target: int = 1000, title: str = "君山区植树") -> dict[str, Any]:
    response = creator.post("/api/v1/admin/projects", {
        "title": title, "description": "Plant trees along the Junshan lakeside.", "region": region,
        "target_points": target})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _donate(person: Api, project_id: int, points: Any, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else None
    return person.post("/api/v1/me/donations", {"project_id": project_id, "points": points}, headers=headers)


def _count(app: Flask, model: Any, *where: Any) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _ok(app: Flask) -> None:
    with app.app_context():
        report = verify()
        assert report.ok, report.breaches


def test_create_donate_progress_and_receipts(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    project = _project(staff["operator1"], target=300)
    assert {k: project[k] for k in ("region", "status", "target_points", "donated_points", "donors", "donations",
                                    "percent")} == {"region": JUNSHAN, "status": "open", "target_points": 300,
                                                    "donated_points": 0, "donors": 0, "donations": 0, "percent": 0}
    pid = project["id"]
    lihua, wangwei = _resident(app, api, "lihua"), _resident(app, api, "wangwei")
    assert _balance(lihua) == 104

    first = _donate(lihua, pid, 30)
    assert first.status_code == 201, first.get_json()
    receipt = first.get_json()
    assert set(receipt) == {"id", "receipt_no", "project_id", "project_title", "points", "donated_at", "entry_id"}
    assert (receipt["project_id"], receipt["project_title"], receipt["points"]) == (pid, "君山区植树", 30)
    today = datetime.now(CHINA_STANDARD_TIME).strftime("%Y%m%d")
    assert re.fullmatch(rf"GY-{today}-\d{{6,}}", receipt["receipt_no"]) and receipt["receipt_no"].endswith(
        f"{receipt['id']:06d}")
    assert _balance(lihua) == 74
    assert _donate(lihua, pid, 20).status_code == 201
    assert _donate(wangwei, pid, 51).status_code == 201

    anonymous = api.as_token(None)
    progress = anonymous.get(f"/api/v1/projects/{pid}").get_json()
    assert {k: progress[k] for k in ("donated_points", "donors", "donations", "percent", "status")} == {
        "donated_points": 101, "donors": 2, "donations": 3, "percent": 33, "status": "open"}    # 101/300: floor
    assert "created_by_user_id" not in progress                                               # staff stay private
    assert [p["id"] for p in anonymous.get(f"/api/v1/projects?region={JUNSHAN}").get_json()["items"]] == [pid]
    assert anonymous.get(f"/api/v1/projects?region={SHIFENG}").get_json()["items"] == []
    assert anonymous.get("/api/v1/projects/999999").status_code == 404

    mine = lihua.get("/api/v1/me/donations").get_json()
    assert [d["points"] for d in mine["items"]] == [20, 30] and mine["next_cursor"] is None   # newest first
    assert mine["items"][1] == receipt
    first_page = lihua.get("/api/v1/me/donations?limit=1").get_json()
    assert [d["points"] for d in first_page["items"]] == [20]
    rest = lihua.get(f"/api/v1/me/donations?limit=1&cursor={first_page['next_cursor']}").get_json()
    assert [d["points"] for d in rest["items"]] == [30] and rest["next_cursor"] is None
    assert [d["points"] for d in wangwei.get("/api/v1/me/donations").get_json()["items"]] == [51]

    admin_list = staff["auditor1"].get("/api/v1/admin/projects").get_json()["items"]
    assert [(p["id"], p["donated_points"]) for p in admin_list] == [(pid, 101)]
    with app.app_context():
        entry = db.session.get(JournalEntry, receipt["entry_id"])
        assert entry.kind == "donate" and len(entry.rule_sha256) == 64
        assert db.session.scalar(select(func.count()).select_from(AuditLog)
                                 .where(AuditLog.action == "project.create")) == 1
    _ok(app)


def test_a_closed_project_refuses_donations_and_refunds_nothing(app: Flask, api: Api,
                                                                  staff: dict[str, Api]) -> None:
    pid = _project(staff["operator1"])["id"]
    lihua = _resident(app, api, "lihua")
    assert _donate(lihua, pid, 40).status_code == 201
    closed = staff["operator1"].post(f"/api/v1/admin/projects/{pid}/close", {"reason": "planting season over"})
    assert closed.status_code == 200, closed.get_json()
    assert closed.get_json()["status"] == "closed" and closed.get_json()["closed_at"] is not None
    again = staff["admin1"].post(f"/api/v1/admin/projects/{pid}/close", {"reason": "again"})
    assert (again.status_code, again.get_json()["error"]) == (409, "project_closed")

    refused = _donate(lihua, pid, 10)
    assert (refused.status_code, refused.get_json()["error"]) == (409, "project_closed")
    assert _balance(lihua) == 64                                                              # 104 − 40, no refund
    progress = api.get(f"/api/v1/projects/{pid}").get_json()
    assert (progress["status"], progress["donated_points"], progress["donations"]) == ("closed", 40, 1)
    assert [p["id"] for p in api.get("/api/v1/projects?status=closed").get_json()["items"]] == [pid]
    assert api.get("/api/v1/projects?status=open").get_json()["items"] == []

    unknown = _donate(lihua, 999999, 10)
    assert (unknown.status_code, unknown.get_json()["error"]) == (404, "project_not_found")
    assert staff["admin1"].post("/api/v1/admin/projects/999999/close", {"reason": "x"}).status_code == 404
    assert _count(app, Donation) == 1
    with app.app_context():
        closes = select(func.count()).select_from(AuditLog).where(AuditLog.action == "project.close")
        assert db.session.scalar(closes.where(AuditLog.reason == "planting season over")) == 1
    _ok(app)


def test_donating_more_than_the_balance_moves_nothing(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    pid = _project(staff["operator1"])["id"]
    lihua = _resident(app, api, "lihua")
    refused = _donate(lihua, pid, 105)
    assert (refused.status_code, refused.get_json()["error"]) == (409, "insufficient_points")
    assert _balance(lihua) == 104
    assert _count(app, Donation) == 0
    assert _count(app, JournalEntry, JournalEntry.kind == "donate") == 0
    assert api.get(f"/api/v1/projects/{pid}").get_json()["donated_points"] == 0
    broke = _resident(app, api, "wangwei", km=None)
    assert _donate(broke, pid, 1).get_json()["error"] == "insufficient_points"
    assert _donate(lihua, pid, 104).status_code == 201                                        # all of it is fine
    assert _balance(lihua) == 0
    _ok(app)


def test_a_retry_with_the_same_idempotency_key_donates_once(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    pid = _project(staff["operator1"])["id"]
    other = _project(staff["operator1"], title="湖区清洁")["id"]
    lihua = _resident(app, api, "lihua")
    first = _donate(lihua, pid, 30, key="tap-1")
    retry = _donate(lihua, pid, 30, key="tap-1")
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.get_json() == first.get_json()
    assert _balance(lihua) == 74
    for body in ((pid, 31), (other, 30)):
        reused = _donate(lihua, *body, key="tap-1")
        assert (reused.status_code, reused.get_json()["error"]) == (409, "idempotency_key_reused")
    assert _donate(lihua, pid, 30, key="tap-2").status_code == 201                           # a new key, a new gift
    wangwei = _resident(app, api, "wangwei")
    assert _donate(wangwei, pid, 30, key="tap-1").status_code == 201                         # keys are per resident
    assert _count(app, Donation) == 3 and _balance(lihua) == 44

    # A retry after the project closed still finds its receipt; a new donation does not get in.
    staff["operator1"].post(f"/api/v1/admin/projects/{pid}/close", {"reason": "done"})
    assert _donate(lihua, pid, 30, key="tap-1").status_code == 200
    assert _donate(lihua, pid, 30, key="tap-3").status_code == 409

    too_long = _donate(lihua, other, 1, key="k" * 81)
    assert too_long.status_code == 422 and "Idempotency-Key" in too_long.get_json()["errors"]["headers"]
    _ok(app)


@pytest.mark.parametrize("points", [0, -5, 1.5, "10", None, True, 2**63])
def test_bad_points_are_refused_naming_the_field(app: Flask, api: Api, staff: dict[str, Api], points: Any) -> None:
    pid = _project(staff["operator1"])["id"]
    lihua = _resident(app, api, "lihua")
    response = _donate(lihua, pid, points)
    assert response.status_code == 422, response.get_json()
    assert "points" in response.get_json()["errors"]["json"]
    assert _balance(lihua) == 104 and _count(app, Donation) == 0


def test_bad_input_is_refused_naming_the_field(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    operator = staff["operator1"]
    good = {"title": "植树", "description": "", "region": JUNSHAN, "target_points": 100}
    for field, value in (("title", "   "), ("title", ""), ("title", "x" * 121), ("region", "43061"),
                         ("region", "439999"), ("target_points", 0), ("target_points", "100"),
                         ("target_points", 2.5), ("description", 5)):
        response = operator.post("/api/v1/admin/projects", {**good, field: value})
        assert response.status_code == 422, (field, value, response.get_json())
        assert field in response.get_json()["errors"]["json"], (field, value)
    missing = operator.post("/api/v1/admin/projects", {"title": "植树"}).get_json()["errors"]["json"]
    assert set(missing) == {"region", "target_points"}
    assert _count(app, WelfareProject) == 0

    pid = _project(operator)["id"]
    for body in ({}, {"reason": ""}, {"reason": "   "}):
        response = operator.post(f"/api/v1/admin/projects/{pid}/close", body)
        assert response.status_code == 422 and "reason" in response.get_json()["errors"]["json"], body
    lihua = _resident(app, api, "lihua", km=None)
    for body in ({"points": 5}, {"project_id": "x", "points": 5}, {"project_id": 0, "points": 5}):
        response = lihua.post("/api/v1/me/donations", body)
        assert response.status_code == 422 and "project_id" in response.get_json()["errors"]["json"], body
    for query in ("region=abc", "region=439999", "status=paused", "cursor=!!", "limit=0", "colour=red"):
        response = api.get(f"/api/v1/projects?{query}")
        assert response.status_code == 422, (query, response.get_json())
        assert query.split("=")[0] in response.get_json()["errors"]["query"], query
    assert api.get(f"/api/v1/projects/{pid}").get_json()["status"] == "open"


def test_operators_manage_projects_of_their_region_only(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    operator, admin = staff["operator1"], staff["admin1"]                                     # operator1: Yueyang
    outside = operator.post("/api/v1/admin/projects", {"title": "植树", "region": SHIFENG, "target_points": 100})
    assert (outside.status_code, outside.get_json()["error"]) == (403, "out_of_scope")
    shifeng = _project(admin, region=SHIFENG, title="石峰区植树")["id"]
    junshan = _project(operator)["id"]
    refused = operator.post(f"/api/v1/admin/projects/{shifeng}/close", {"reason": "not mine"})
    assert (refused.status_code, refused.get_json()["error"]) == (403, "out_of_scope")
    assert api.get(f"/api/v1/projects/{shifeng}").get_json()["status"] == "open"
    assert [p["id"] for p in operator.get("/api/v1/admin/projects").get_json()["items"]] == [junshan]
    assert [p["id"] for p in staff["auditor1"].get("/api/v1/admin/projects").get_json()["items"]] == [junshan]
    assert {p["id"] for p in admin.get("/api/v1/admin/projects").get_json()["items"]} == {shifeng, junshan}
    province = _project(admin, region="430000", title="全省植树")["id"]                       # Hunan: above Junshan
    assert [p["id"] for p in api.get(f"/api/v1/projects?region={JUNSHAN}").get_json()["items"]] == [province, junshan]

    auditor = staff["auditor1"].post("/api/v1/admin/projects", {"title": "x", "region": JUNSHAN, "target_points": 1})
    assert (auditor.status_code, auditor.get_json()["error"]) == (403, "role_required")
    resident = _resident(app, api, "lihua", km=None)
    assert resident.post(f"/api/v1/admin/projects/{junshan}/close", {"reason": "x"}).status_code == 403
    assert api.get("/api/v1/admin/projects").status_code == 401
    assert operator.post("/api/v1/me/donations", {"project_id": junshan, "points": 1}).status_code == 403
    assert api.get("/api/v1/me/donations").status_code == 401


def _donate_in_thread(app: Flask, token: str | None, project_id: int, points: int) -> tuple[int, str | None]:
    response = Api(app.test_client(), token).post("/api/v1/me/donations",
                                                  {"project_id": project_id, "points": points})
    return response.status_code, (response.get_json() or {}).get("error")


@on_postgres
def test_concurrent_donations_never_overdraw_the_wallet(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    pid = _project(staff["operator1"])["id"]
    lihua = _resident(app, api, "lihua")                                                      # 104 points
    outcomes = run_together(lambda _: _donate_in_thread(app, lihua.token, pid, 30), [(i,) for i in range(10)])
    assert sorted(outcomes) == [(201, None)] * 3 + [(409, "insufficient_points")] * 7, outcomes   # 3 × 30 ≤ 104
    assert _balance(lihua) == 14
    progress = api.get(f"/api/v1/projects/{pid}").get_json()
    assert (progress["donated_points"], progress["donations"], progress["donors"]) == (90, 3, 1)
    _ok(app)


@on_postgres
def test_no_donation_lands_after_the_project_closes(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    pid = _project(staff["operator1"])["id"]
    donors = [_resident(app, api, f"donor{i}") for i in range(8)]
    operator = staff["operator1"].token

    def act(who: int) -> tuple[int, str | None]:
        if who < 0:
            response = Api(app.test_client(), operator).post(f"/api/v1/admin/projects/{pid}/close",
                                                             {"reason": "race"})
            return response.status_code, None
        return _donate_in_thread(app, donors[who].token, pid, 10)

    outcomes = run_together(act, [(-1,)] + [(i,) for i in range(len(donors))])
    assert outcomes[0] == (200, None)
    assert all(o in ((201, None), (409, "project_closed")) for o in outcomes[1:]), outcomes
    accepted = sum(1 for o in outcomes[1:] if o[0] == 201)
    with app.app_context():
        project = db.session.get(WelfareProject, pid)
        donations = list(db.session.scalars(select(Donation).where(Donation.project_id == pid)))
        assert len(donations) == accepted
        assert all(d.created_at <= project.closed_at for d in donations)
    assert api.get(f"/api/v1/projects/{pid}").get_json()["donated_points"] == 10 * accepted
    assert sorted(_balance(d) for d in donors) == sorted([94] * accepted + [104] * (len(donors) - accepted))
    _ok(app)
