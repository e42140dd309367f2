"""Simulating an exchange-rule version (issue #8 point 1): the last days' credited reductions replayed
under the rules in force then and under the proposed ones, per account, with exact worked numbers.

Shifeng (430204) rules: 100 points per kg, bus and metro share a 3,000 g daily cap. A 10 km bus
ride saves 520 g (10 × (104 − 52) g/pkm), so 52 points; the sixth of a day earns 40 (400 g left
under the cap) and the seventh nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from backend.db import db
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import (
    AuditLog,
    BudgetCounter,
    JournalEntry,
    LedgerAccount,
    Lot,
    PolicyVersion,
    Posting,
    QueuedCredit,
    ReductionEvaluation,
)
from backend.services import activities, ledger
from tests.conftest import Api, login, make_staff, sign_up

R = "/api/v1/admin/rules/versions"
# 08:00 China time two days ago: every trip of a test lies on this one China day.
DAY = datetime.now(CHINA_STANDARD_TIME).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=2)
HOUSEHOLD_G = 16185  # 150 kWh for three people in a month (see test_ledger): 1,618 points


@pytest.fixture
def zhuzhou(app: Flask, api: Api) -> dict[str, Api]:
    """A Zhuzhou operator (the drafts' author) and auditor, and Yueyang's auditor (another region)."""
    make_staff(app, "zz-operator", "operator", scope="430200")
    make_staff(app, "zz-auditor", "auditor", scope="430200")
    make_staff(app, "yy-auditor", "auditor", scope="430600")
    make_staff(app, "admin1", "admin")
    return {name: login(api, name) for name in ("zz-operator", "zz-auditor", "yy-auditor", "admin1")}


def rules_of(api: Api, region: str) -> dict[str, Any]:
    """The rules in force in ``region``, as a draft's payload."""
    rules = api.get(f"/api/v1/public/rules?region={region}").get_json()["regions"][0]["rules"]
    return {k: rules[k] for k in ("name", "points", "caps", "engagement", "campaigns", "expiry", "budget",
                                  "settlement")}


def drafted(author: Api, region: str, payload: dict[str, Any], *, submit: bool = True) -> int:
    response = author.post(R, {"region": region, "rules": payload, "note": "simulate me"})
    assert response.status_code == 201, response.get_json()
    number = response.get_json()["version"]
    if submit:
        assert author.post(f"{R}/{number}/submit").status_code == 200
    return number


def half_bus_rate(api: Api, region: str = "430204") -> dict[str, Any]:
    payload = rules_of(api, region)
    payload["points"]["per_kg"]["bus_ride"] = "50"
    return payload


def bus_cap(api: Api, grams: int, region: str = "430204") -> dict[str, Any]:
    payload = rules_of(api, region)
    next(c for c in payload["caps"] if "bus_ride" in c["types"])["grams"] = grams
    return payload


def resident(api: Api, name: str, region: str = "430204") -> int:
    return sign_up(api, name, region=region).get("/api/v1/me").get_json()["id"]


def credited(app: Flask, trips: list[dict[str, Any]]) -> list[int]:
    """Record the trips and credit them in one batch, as the ledger does; their reduction ids."""
    ids = []
    with app.app_context():
        for trip in trips:
            _, reduction = activities.record_one(source="demo", **trip)
            assert reduction is not None
            ids.append(reduction.id)
        assert {r.status for r in ledger.credit(ids)} <= {"credited", "no_points"}
        db.session.commit()
    return ids


def bus_rides(resident_id: int, count: int, *, at: datetime = DAY, region: str = "430204") -> list[dict[str, Any]]:
    return [{"activity_type": "bus_ride", "occurred_at": at + timedelta(minutes=20 * i), "region": region,
             "resident_id": resident_id, "data": {"distance_km": "10", "duration_min": 15}} for i in range(count)]


@pytest.fixture
def shifeng(app: Flask, api: Api) -> dict[str, int]:
    """Three Shifeng accounts and one in Yueyang, credited under the rules in force:
    lihua 7 bus rides in a day (300 points, 640 g capped), wangwei 2 (104 points), the Zhang household's
    electricity (1,618 points), and a Yueyang rider outside Shifeng (not simulated)."""
    people = {name: resident(api, name) for name in ("lihua", "wangwei", "zhangmin")}
    people["yy-rider"] = resident(api, "yy-rider", region="430602")
    household = login(api, "zhangmin").post("/api/v1/households", {"name": "张家"}).get_json()["id"]
    people["household"] = household
    credited(app, [*bus_rides(people["lihua"], 7), *bus_rides(people["wangwei"], 2, at=DAY + timedelta(hours=3)),
                   {"activity_type": "household_electricity", "occurred_at": DAY, "region": "430204",
                    "resident_id": people["zhangmin"], "household_id": household,
                    "data": {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": "150",
                             "household_size": 3}},
                   *bus_rides(people["yy-rider"], 2, region="430602")])
    return people


WRITTEN = (JournalEntry, Posting, Lot, LedgerAccount, ReductionEvaluation, QueuedCredit, BudgetCounter, PolicyVersion,
           AuditLog)


def counts(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {m.__name__: db.session.scalar(select(func.count()).select_from(m)) for m in WRITTEN}


def test_halving_the_bus_rate_halves_the_bus_points_account_by_account(app: Flask, api: Api,
                                                                       zhuzhou: dict[str, Api],
                                                                       shifeng: dict[str, int]) -> None:
    number = drafted(zhuzhou["zz-operator"], "430204", half_bus_rate(api))
    before = counts(app)
    response = zhuzhou["zz-auditor"].post(f"{R}/{number}/simulate", {"days": 30})
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert counts(app) == {**before, "AuditLog": before["AuditLog"] + 1}     # only the audit note
    assert (result["version"], result["status"], result["region"], result["days"]) == \
        (f"exchange@{number}", "submitted", "430204", 30)
    assert (result["reductions"], result["accounts"], result["not_evaluated"], result["other_rules"]) == (10, 3, 0, 0)
    # lihua: 5 × 26 + 400 g × 50/kg = 20, then 0 = 150 (was 300); wangwei 2 × 26 = 52 (was 104).
    assert result["totals"] == {
        "reductions": 10, "grams": 9 * 520 + HOUSEHOLD_G,
        "current_points": 300 + 104 + 1618, "current_rules_points": 300 + 104 + 1618,
        "proposed_points": 150 + 52 + 1618, "change_points": -202,
        "current_capped_g": 640, "current_rules_capped_g": 640, "proposed_capped_g": 640}
    bus = next(g for g in result["groups"] if g["activity_type"] == "bus_ride")
    power = next(g for g in result["groups"] if g["activity_type"] == "household_electricity")
    assert (bus["region"], bus["reductions"], bus["current_points"], bus["proposed_points"]) == ("430204", 9, 404, 202)
    assert (power["current_points"], power["proposed_points"], power["change_points"]) == (1618, 1618, 0)
    assert [(c["account_kind"], c["owner_id"], c["current_points"], c["proposed_points"], c["change_points"])
            for c in result["largest_changes"]] == [("resident", shifeng["lihua"], 300, 150, -150),
                                                    ("resident", shifeng["wangwei"], 104, 52, -52)]
    issuance = result["issuance"]
    assert (issuance["period"], issuance["budget_points"]) == ("month", 5_000_000)
    month = f"{DAY.year}-{DAY.month:02d}"
    assert issuance["periods"] == [{"period": month, "current_rules_points": 2022, "proposed_points": 1820,
                                    "within_budget": True}]
    assert set(result["assumptions"]) >= {"replay_order", "usage_before", "campaigns"}

    note = zhuzhou["zz-auditor"].get(
        f"/api/v1/admin/audit-log?action=rules.simulate&target_id=exchange@{number}").get_json()["items"]
    assert [(e["actor"], e["target_type"]) for e in note] == [("zz-auditor", "rules_version")]
    assert note[0]["after"]["totals"]["change_points"] == -202


def test_a_lower_daily_cap_caps_more_grams_and_only_the_busy_account_changes(app: Flask, api: Api,
                                                                             zhuzhou: dict[str, Api],
                                                                             shifeng: dict[str, int]) -> None:
    number = drafted(zhuzhou["zz-operator"], "430204", bus_cap(api, 2000), submit=False)
    result = zhuzhou["zz-operator"].post(f"{R}/{number}/simulate", {"days": 30}).get_json()
    # lihua under 2,000 g: 3 × 52 + 440 g = 44, then nothing: 200 points, 3,640 − 2,000 g capped.
    bus = next(g for g in result["groups"] if g["activity_type"] == "bus_ride")
    assert (bus["current_points"], bus["proposed_points"], bus["current_capped_g"], bus["proposed_capped_g"]) == \
        (404, 304, 640, 1640)
    assert (result["status"], result["totals"]["change_points"]) == ("draft", -100)
    assert [(c["owner_id"], c["current_rules_points"], c["proposed_points"]) for c in result["largest_changes"]] == \
        [(shifeng["lihua"], 300, 200)]


def test_the_cap_usage_before_the_window_is_what_the_ledger_recorded(app: Flask, api: Api, zhuzhou: dict[str, Api],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rider = resident(api, "early-rider")
    # Five rides at 08:00 … 09:20 (2,600 g creditable), two at 12:00 and 12:20; the window opens at 11:00.
    credited(app, [*bus_rides(rider, 5), *bus_rides(rider, 2, at=DAY + timedelta(hours=4))])
    monkeypatch.setattr("backend.services.rules_simulation.utcnow", lambda: DAY + timedelta(days=1, hours=3))
    number = drafted(zhuzhou["zz-operator"], "430204", bus_cap(api, 2000))
    result = zhuzhou["zz-auditor"].post(f"{R}/{number}/simulate", {"days": 1}).get_json()
    assert result["reductions"] == 2
    # Now: 400 g left under 3,000 g → 40 points, then 0. Proposed: the morning used up the 2,000 g.
    assert {k: result["totals"][k] for k in ("current_points", "current_rules_points", "proposed_points",
                                              "current_capped_g", "proposed_capped_g")} == {
        "current_points": 40, "current_rules_points": 40, "proposed_points": 0,
        "current_capped_g": 640, "proposed_capped_g": 1040}


def test_regions_with_their_own_rules_keep_them(app: Flask, api: Api, zhuzhou: dict[str, Api],
                                                shifeng: dict[str, int]) -> None:
    city = resident(api, "zz-rider", region="430200")
    credited(app, bus_rides(city, 2, region="430200"))
    # Zhuzhou's own rules would reach Shifeng only if Shifeng had none: Shifeng keeps its own.
    number = drafted(zhuzhou["zz-operator"], "430200", half_bus_rate(api, "430200"))
    result = zhuzhou["zz-auditor"].post(f"{R}/{number}/simulate", {"days": 30}).get_json()
    assert (result["reductions"], result["other_rules"]) == (2, 10)
    assert [(g["region"], g["current_points"], g["proposed_points"]) for g in result["groups"]] == \
        [("430200", 104, 52)]


def test_reductions_never_credited_are_replayed_and_counted(app: Flask, api: Api, zhuzhou: dict[str, Api]) -> None:
    rider = resident(api, "uncredited")
    with app.app_context():
        for trip in bus_rides(rider, 2):
            activities.record_one(source="demo", **trip)
        db.session.commit()
    number = drafted(zhuzhou["zz-operator"], "430204", half_bus_rate(api))
    result = zhuzhou["zz-auditor"].post(f"{R}/{number}/simulate", {"days": 30}).get_json()
    assert (result["reductions"], result["not_evaluated"]) == (2, 2)
    assert (result["totals"]["current_points"], result["totals"]["proposed_points"]) == (104, 52)


def test_only_drafts_and_submitted_versions_in_scope_with_sane_days(app: Flask, api: Api, zhuzhou: dict[str, Api],
                                                                    shifeng: dict[str, int]) -> None:
    number = drafted(zhuzhou["zz-operator"], "430204", half_bus_rate(api))
    before = counts(app)
    approved = zhuzhou["zz-auditor"].post(f"{R}/1/simulate", {"days": 30})
    assert (approved.status_code, approved.get_json()["error"]) == (409, "not_simulatable")
    other = zhuzhou["yy-auditor"].post(f"{R}/{number}/simulate", {"days": 30})
    assert (other.status_code, other.get_json()["error"]) == (403, "out_of_scope")
    admin = zhuzhou["admin1"].post(f"{R}/{number}/simulate", {"days": 30})
    assert admin.status_code == 403                                               # admins read, never simulate
    for days in (0, 367, "30", None):
        bad = zhuzhou["zz-auditor"].post(f"{R}/{number}/simulate", {"days": days})
        assert bad.status_code == 422 and "days" in bad.get_json()["errors"]["json"], days
    assert zhuzhou["zz-auditor"].post(f"{R}/999/simulate", {"days": 30}).status_code == 404
    assert counts(app) == before
    rejected = drafted(zhuzhou["zz-operator"], "430204", half_bus_rate(api))
    zhuzhou["zz-auditor"].post(f"{R}/{rejected}/reject", {"reason": "no"})
    assert zhuzhou["zz-auditor"].post(f"{R}/{rejected}/simulate", {"days": 30}).status_code == 409


def test_quizzes_earn_their_engagement_points_once_a_day_in_both_replays(app: Flask, api: Api,
                                                                         zhuzhou: dict[str, Api]) -> None:
    pupil = resident(api, "pupil")
    credited(app, [{"activity_type": "quiz", "occurred_at": DAY + timedelta(hours=i), "region": "430204",
                    "resident_id": pupil, "data": {"quiz_id": f"q{i}", "score": score}}
                   for i, score in enumerate((40, 90, 95))])
    payload = rules_of(api, "430204")
    payload["engagement"]["quiz"].update(points=20, min_score=30)
    number = drafted(zhuzhou["zz-operator"], "430204", payload)
    result = zhuzhou["zz-auditor"].post(f"{R}/{number}/simulate", {"days": 30}).get_json()
    # Now: 40 fails the pass mark of 60, 90 earns Shifeng's 10, 95 is the day's second. Proposed: 40 passes.
    assert (result["totals"]["current_points"], result["totals"]["current_rules_points"],
            result["totals"]["proposed_points"]) == (10, 10, 20)
