"""Daily statistics (issue #7 point 2): the roll-up per China day, region and activity type, checked
against a recount from the registry and the ledger; idempotent re-runs; catch-up of missed days; the
read endpoint for operators, auditors and admins."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select

from backend.db import db, utcnow
from backend.jobs import stats as stats_job
from backend.methodology import CHINA_STANDARD_TIME, end_of_day
from backend.models import (
    Activity,
    DailyActivityStats,
    DailyRegionStats,
    Enterprise,
    Household,
    JournalEntry,
    LedgerAccount,
    Merchant,
    OpenedRight,
    Posting,
    Reduction,
    Resident,
    RightGrant,
    StatsRollup,
    WelfareProject,
)
from backend.services import activities, ledger, stats
from backend.services.ledger_verify import verify
from tests.conftest import PASSWORD, Api, login, on_postgres, run_together, sign_up

YESTERDAY_MORNING = datetime.now(CHINA_STANDARD_TIME).replace(hour=8, minute=0, second=0, microsecond=0) \
    - timedelta(days=1)
YUEYANGLOU, JUNSHAN, SHIFENG = "430602", "430611", "430204"


def _today() -> date:
    return utcnow().astimezone(CHINA_STANDARD_TIME).date()


def _record(app: Flask, kind: str, data: dict[str, Any], region: str, resident_id: int,
            household_id: int | None = None, hours_ago: int = 0) -> int | None:
    with app.app_context():
        _, reduction = activities.record_one(activity_type=kind,
                                             occurred_at=YESTERDAY_MORNING - timedelta(hours=hours_ago), data=data,
                                             region=region, source="demo", resident_id=resident_id,
                                             household_id=household_id)
        db.session.commit()
        return reduction.id if reduction is not None else None


def _ride(km: str, minutes: int = 40) -> dict[str, Any]:
    return {"distance_km": km, "duration_min": minutes}


@dataclass
class World:
    admin: Api
    operator: Api  # Yueyang (430600)
    auditor: Api
    people: dict[str, Api]
    ids: dict[str, int]


@pytest.fixture
def world(app: Flask, api: Api, staff: dict[str, Api]) -> World:
    """A day on the platform: rides, a quiz, a household's credit, a rejected report; then a redemption in
    Yueyanglou, a donation to a Junshan project, a parking right bought in Yueyang, and the rest expired."""
    people, ids = {}, {}
    for name, region in (("lihua", YUEYANGLOU), ("wangfang", YUEYANGLOU), ("zhang", SHIFENG)):
        people[name] = sign_up(api, name, region=region)
        ids[name] = people[name].get("/api/v1/me").get_json()["id"]
    household = people["lihua"].post("/api/v1/households", {"name": "李华家"})
    assert household.status_code == 201, household.get_json()
    ids["household"] = household.get_json()["id"]

    reductions = [
        _record(app, "bus_ride", _ride("20"), YUEYANGLOU, ids["lihua"]),
        _record(app, "bus_ride", _ride("12"), YUEYANGLOU, ids["lihua"], hours_ago=3),
        _record(app, "bus_ride", _ride("15"), YUEYANGLOU, ids["wangfang"]),
        _record(app, "bike_ride", _ride("6", 25), YUEYANGLOU, ids["wangfang"], hours_ago=5),
        _record(app, "quiz", {"quiz_id": "q1", "score": 90}, YUEYANGLOU, ids["wangfang"]),
        _record(app, "bus_ride", _ride("10"), YUEYANGLOU, ids["lihua"], household_id=ids["household"],
                hours_ago=7),
        _record(app, "bus_ride", _ride("30"), SHIFENG, ids["zhang"]),
    ]
    assert all(r is not None for r in reductions)
    with app.app_context():
        db.session.add(Activity(source="self", type="recycling", occurred_at=utcnow() - timedelta(hours=2),
                                region_code=SHIFENG, data={"material": "paper", "weight_kg": "1"}, status="rejected",
                                resident_id=ids["zhang"], reason="test"))
        db.session.commit()
        results = ledger.credit(reductions)  # type: ignore[arg-type]
        db.session.commit()
        assert sum(r.status == "credited" for r in results) >= 6, results

    admin, operator = staff["admin1"], staff["operator1"]
    merchant = operator.post("/api/v1/admin/merchants", {"name": "岳阳楼区绿色超市", "region": YUEYANGLOU}).get_json()
    assert operator.post(f"/api/v1/admin/merchants/{merchant['id']}/staff",
                         {"username": "till", "password": PASSWORD}).status_code == 201
    shop = login(api, "till")
    offer = shop.post("/api/v1/merchant/offers", {
        "title": "购物袋", "description": "", "points_price": 30, "stock": 5, "per_user_limit": 2,
        "valid_until": (utcnow() + timedelta(days=30)).isoformat()}).get_json()
    held = people["lihua"].post("/api/v1/me/redemptions", {"offer_id": offer["id"]}, headers={"Idempotency-Key": "r1"})
    assert held.status_code == 201, held.get_json()
    assert shop.post("/api/v1/merchant/redemptions/confirm", {"code": held.get_json()["code"]}).status_code == 200
    cancelled = people["lihua"].post("/api/v1/me/redemptions", {"offer_id": offer["id"]},
                                     headers={"Idempotency-Key": "r2"}).get_json()
    assert people["lihua"].post(f"/api/v1/me/redemptions/{cancelled['id']}/cancel").status_code == 200

    project = admin.post("/api/v1/admin/projects", {"title": "君山植树", "description": "trees", "region": JUNSHAN,
                                                    "target_points": 1000}).get_json()
    assert people["wangfang"].post("/api/v1/me/donations", {"project_id": project["id"], "points": 25},
                                   headers={"Idempotency-Key": "d1"}).status_code == 201

    partner = operator.post("/api/v1/admin/partners", {"name": "岳阳停车", "kind": "other",
                                                       "activity_types": ["bus_ride"], "region": "430600"}).get_json()
    right = operator.post("/api/v1/admin/rights", {
        "title": "停车 2 小时", "description": "", "kind": "parking", "region": "430600", "partner_id": partner["id"],
        "points_price": 40, "per_user_limit": 1, "valid_until": (utcnow() + timedelta(days=60)).isoformat(),
        "code_valid_days": 30}).get_json()
    claimed = people["wangfang"].post(f"/api/v1/me/rights/{right['id']}/claim", headers={"Idempotency-Key": "c1"})
    assert claimed.status_code == 201, claimed.get_json()

    with app.app_context():
        assert ledger.expire(date(2200, 1, 1))["points"] > 0  # whatever is left of every lot expires now
        db.session.commit()
    return World(admin, operator, staff["auditor1"], people, ids)


# --- the recount: the same figures, counted row by row in Python ------------------------------------


def _day(moment: datetime) -> date:
    return moment.astimezone(CHINA_STANDARD_TIME).date()


def _recount(app: Flask) -> tuple[dict[tuple[date, str, str], dict[str, int]], dict[tuple[date, str], dict[str, int]]]:
    typed: dict[tuple[date, str, str], dict[str, Any]] = defaultdict(
        lambda: {"activities": 0, "credited": 0, "residents": set(), "households": set(), "grams": 0,
                 "points_issued": 0})
    regional: dict[tuple[date, str], dict[str, Any]] = defaultdict(
        lambda: {"residents": set(), "households": set(), "points_redeemed": 0, "points_donated": 0,
                 "points_rights": 0, "points_expired": 0})
    with app.app_context():
        s = db.session
        for a in s.scalars(select(Activity)):
            typed[(_day(a.created_at), a.region_code, a.type)]["activities"] += 1
        reductions = {r.id: r for r in s.scalars(select(Reduction))}
        for r in reductions.values():
            cell, region = typed[(_day(r.created_at), r.region_code, r.activity_type)], \
                regional[(_day(r.created_at), r.region_code)]
            cell["credited"] += 1
            cell["grams"] += r.grams
            for target in (cell, region):
                if r.resident_id is not None:
                    target["residents"].add(r.resident_id)
                if r.household_id is not None:
                    target["households"].add(r.household_id)
        accounts = {a.id: a for a in s.scalars(select(LedgerAccount))}
        entries = {e.id: e for e in s.scalars(select(JournalEntry))}
        owners = {("resident", o.id): o.region_code for o in s.scalars(select(Resident))}
        owners |= {("household", o.id): o.region_code for o in s.scalars(select(Household))}
        owners |= {("enterprise", o.id): o.region_code for o in s.scalars(select(Enterprise))}
        owners |= {("merchant", o.id): o.region_code for o in s.scalars(select(Merchant))}
        owners |= {("project", o.id): o.region_code for o in s.scalars(select(WelfareProject))}
        for p in s.scalars(select(Posting)):
            entry, account = entries[p.entry_id], accounts[p.account_id]
            day = _day(entry.posted_at)
            if entry.kind in ("credit", "release") and account.kind == "issuance" and entry.reduction_id:
                r = reductions[entry.reduction_id]
                typed[(day, r.region_code, r.activity_type)]["points_issued"] -= p.amount
            elif account.kind == "merchant_settlement":
                regional[(day, owners[("merchant", account.merchant_id)])]["points_redeemed"] += p.amount
            elif account.kind == "welfare_project":
                regional[(day, owners[("project", account.project_id)])]["points_donated"] += p.amount
            elif entry.kind == "expire" and account.kind.endswith("_wallet"):
                owner = next((kind, getattr(account, f"{kind}_id")) for kind in ("resident", "household", "enterprise")
                             if getattr(account, f"{kind}_id") is not None)
                regional[(day, owners[owner])]["points_expired"] -= p.amount
        rights = {r.id: r.region_code for r in s.scalars(select(OpenedRight))}
        for g in s.scalars(select(RightGrant).where(RightGrant.entry_id.is_not(None))):
            regional[(_day(entries[g.entry_id].posted_at), rights[g.right_id])]["points_rights"] += g.points

    def flat(figures: dict[str, Any]) -> dict[str, int]:
        return {k: len(v) if isinstance(v, set) else v for k, v in figures.items()}

    return ({k: flat(v) for k, v in typed.items()},
            {k: flat(v) for k, v in regional.items() if any(flat(v).values())})


def _rolled(app: Flask) -> tuple[dict[tuple[date, str, str], dict[str, int]], dict[tuple[date, str], dict[str, int]]]:
    with app.app_context():
        typed = {(r.day, r.region_code, r.activity_type): {f: getattr(r, f) for f in stats.ACTIVITY_FIGURES}
                 for r in db.session.scalars(select(DailyActivityStats))}
        regional = {(r.day, r.region_code): {f: getattr(r, f) for f in stats.REGION_FIGURES}
                    for r in db.session.scalars(select(DailyRegionStats))}
        return typed, regional


def _roll(app: Flask, *days: date) -> None:
    with app.app_context():
        for day in days:
            stats.rollup_day(day)
            db.session.commit()


def _data_days(app: Flask) -> set[date]:
    typed, regional = _recount(app)
    return {k[0] for k in typed} | {k[0] for k in regional}


def test_the_roll_up_matches_a_recount_from_the_registry_and_the_ledger(app: Flask, world: World) -> None:
    days = _data_days(app)
    _roll(app, *days)
    expected_typed, expected_regional = _recount(app)
    typed, regional = _rolled(app)
    assert typed == expected_typed
    assert regional == expected_regional

    # The figures themselves, summed over the day(s): what the fixture did.
    def total(rows: dict[Any, dict[str, int]], figure: str, **where: str) -> int:
        return sum(v[figure] for k, v in rows.items()
                   if all(part in k for part in where.values()))

    assert total(typed, "activities") == 8 and total(typed, "credited") == 7
    assert total(typed, "activities", region=SHIFENG, kind="recycling") == 1
    assert total(typed, "credited", region=SHIFENG, kind="recycling") == 0
    assert total(typed, "grams", kind="quiz") == 0 and total(typed, "credited", kind="quiz") == 1
    assert total(typed, "households", kind="bus_ride") == 1
    assert total(regional, "residents", region=YUEYANGLOU) == 2  # lihua and wangfang, across types
    assert total(regional, "points_redeemed", region=YUEYANGLOU) == 30  # the cancelled hold is not spent
    assert total(regional, "points_donated", region=JUNSHAN) == 25
    assert total(regional, "points_rights", region="430600") == 40
    with app.app_context():
        totals = verify().totals
    assert total(typed, "points_issued") == totals["issued"] + 40  # the right's points went back to issuance
    assert total(regional, "points_redeemed") + total(regional, "points_donated") == totals["spent"]
    assert total(regional, "points_expired") == totals["expired"] > 0


def test_re_rolling_a_day_replaces_its_rows(app: Flask, world: World) -> None:
    today = _today()
    _roll(app, today)
    first = _rolled(app)
    _roll(app, today)
    assert _rolled(app) == first  # the same day again: the same rows
    _record(app, "metro_ride", _ride("9", 20), JUNSHAN, world.ids["zhang"])
    _roll(app, today)
    typed, _ = _rolled(app)
    assert typed[(today, JUNSHAN, "metro_ride")]["credited"] == 1  # recorded today: it counts today
    recounted = _recount(app)[0]
    assert {k: v for k, v in typed.items() if k[0] == today} == {k: v for k, v in recounted.items() if k[0] == today}
    with app.app_context():
        marker = db.session.get(StatsRollup, today)
        assert marker.activity_rows == sum(1 for k in typed if k[0] == today)


def test_the_job_catches_up_every_missed_day_once(app: Flask, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    today = _today()
    first = min(_data_days(app))
    with app.app_context():
        assert stats.first_data_day() == first
        assert stats.days_to_roll() == ([] if first == today else [d for d in _span(first, today - timedelta(days=1))])
        # Just after midnight, inside the grace, yesterday is not rolled yet; after it, it is.
        midnight = end_of_day(today)
        assert today not in stats.days_to_roll(midnight + timedelta(minutes=5))
        assert today in stats.days_to_roll(midnight + timedelta(minutes=11))
        assert len(stats.days_to_roll(midnight + timedelta(days=3), limit=2)) == 2

    three_days_on = end_of_day(today) + timedelta(days=2, hours=1)
    monkeypatch.setattr(stats, "utcnow", lambda: three_days_on)
    with app.app_context():
        counts = stats_job.rollup()
        assert counts["days"] == len(_span(first, today + timedelta(days=2)))
        assert counts["last_day"] == (today + timedelta(days=2)).isoformat()
        assert stats_job.rollup()["days"] == 0  # nothing missed any more
        rolled = set(db.session.scalars(select(StatsRollup.day)))
    assert rolled == set(_span(first, today + timedelta(days=2)))
    assert _rolled(app) == _recount(app)  # the quiet days have markers and no rows


@on_postgres
def test_two_roll_ups_of_one_day_at_once_take_turns(app: Flask, world: World) -> None:
    today = _today()

    def roll() -> dict[str, int]:
        with app.app_context():
            counts = stats.rollup_day(today)
            time.sleep(0.2)  # hold the day while the other waits
            db.session.commit()
            return counts

    first, second = run_together(roll, [(), ()])
    assert first == second and isinstance(first, dict), (first, second)
    typed, _ = _rolled(app)
    assert {k: v for k, v in typed.items() if k[0] == today} == \
        {k: v for k, v in _recount(app)[0].items() if k[0] == today}


def _span(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_nothing_recorded_means_nothing_to_roll(app: Flask) -> None:
    with app.app_context():
        assert stats.first_data_day() is None
        assert stats.days_to_roll(utcnow() + timedelta(days=10)) == []
        assert stats_job.rollup() == {"days": 0, "rows": 0, "first_day": None, "last_day": None}


def _record_at(app: Flask, moment: datetime, resident_id: int) -> tuple[int, int]:
    """A bus ride recorded, certified and credited at ``moment``: its grams and points."""
    def stamp(_mapper: Any, _connection: Any, target: Any) -> None:
        target.created_at = moment

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ledger, "utcnow", lambda: moment)  # the credit's posted_at
        for model in (Activity, Reduction):
            event.listen(model, "before_insert", stamp)
        try:
            with app.app_context():
                _, reduction = activities.record_one(
                    activity_type="bus_ride", occurred_at=moment - timedelta(minutes=10), data=_ride("2", 8),
                    region=YUEYANGLOU, source="demo", resident_id=resident_id)
                assert reduction is not None
                [credit] = ledger.credit([reduction.id])
                db.session.commit()
                assert credit.status == "credited" and credit.points > 0, credit
                return reduction.grams, credit.points
        finally:
            for model in (Activity, Reduction):
                event.remove(model, "before_insert", stamp)


def test_days_are_china_days_not_utc_days(app: Flask, api: Api) -> None:
    """23:30 and 00:30 China time are one UTC date (15:30 and 16:30 UTC) but two China days."""
    rider = sign_up(api, "nightowl", region=YUEYANGLOU).get("/api/v1/me").get_json()["id"]
    evening = _today() - timedelta(days=3)
    late = datetime(evening.year, evening.month, evening.day, 23, 30, tzinfo=CHINA_STANDARD_TIME)
    early = late + timedelta(hours=1)
    assert (early.date(), early.hour, early.minute) == (evening + timedelta(days=1), 0, 30)
    assert (late.astimezone(UTC).hour, late.astimezone(UTC).minute) == (15, 30)
    assert late.astimezone(UTC).date() == early.astimezone(UTC).date()
    figures = {late: _record_at(app, late, rider), early: _record_at(app, early, rider)}
    with app.app_context():
        assert stats_job.rollup()["first_day"] == evening.isoformat()
    typed, regional = _rolled(app)
    assert typed == {
        (moment.date(), YUEYANGLOU, "bus_ride"): {"activities": 1, "credited": 1, "residents": 1, "households": 0,
                                                  "grams": grams, "points_issued": points}
        for moment, (grams, points) in figures.items()}
    assert regional == {(moment.date(), YUEYANGLOU): {**dict.fromkeys(stats.REGION_FIGURES, 0), "residents": 1}
                        for moment in figures}


# --- the read endpoint -----------------------------------------------------------------------------


def test_operators_auditors_and_admins_read_a_regions_daily_series(app: Flask, world: World) -> None:
    today = _today()
    _roll(app, *_data_days(app))
    _, regional = _rolled(app)
    query = f"from={today.isoformat()}&to={today.isoformat()}"

    yueyang = world.operator.get(f"/api/v1/admin/stats/daily?region=430600&{query}")
    assert yueyang.status_code == 200, yueyang.get_json()
    body = yueyang.get_json()
    assert (body["region"], body["from"], body["to"]) == ("430600", today.isoformat(), today.isoformat())
    [day] = body["days"]
    typed, _ = _rolled(app)
    in_yueyang = {k: v for k, v in typed.items() if k[0] == today and k[1].startswith("4306")}
    assert day["credited"] == sum(v["credited"] for v in in_yueyang.values())
    assert day["grams"] == sum(v["grams"] for v in in_yueyang.values())
    assert {t["activity_type"] for t in day["by_type"]} == {k[2] for k in in_yueyang}
    assert day["points_spent"] == day["points_redeemed"] + day["points_donated"] + day["points_rights"]
    assert (day["points_redeemed"], day["points_donated"], day["points_rights"]) == (30, 25, 40)
    assert day["residents"] == sum(v["residents"] for k, v in regional.items() if k[0] == today
                                   and k[1].startswith("4306"))
    assert body["totals"]["credited"] == day["credited"] and "residents" not in body["totals"]

    # The operator's own scope by default; the province for an unscoped admin; a district for anyone above it.
    assert world.operator.get(f"/api/v1/admin/stats/daily?{query}").get_json()["days"] == body["days"]
    province = world.admin.get(f"/api/v1/admin/stats/daily?{query}").get_json()["days"][0]
    assert province["credited"] == sum(v["credited"] for k, v in typed.items() if k[0] == today)
    district = world.auditor.get(f"/api/v1/admin/stats/daily?region={JUNSHAN}&{query}").get_json()["days"][0]
    assert (district["points_donated"], district["points_redeemed"]) == (25, 0)

    out = world.operator.get(f"/api/v1/admin/stats/daily?region={SHIFENG}&{query}")
    assert out.status_code == 403 and out.get_json()["error"] == "out_of_scope"
    assert world.people["lihua"].get(f"/api/v1/admin/stats/daily?{query}").status_code == 403


def test_the_series_has_every_rolled_day_and_refuses_bad_ranges_naming_the_field(app: Flask,
                                                                                 staff: dict[str, Api]) -> None:
    admin = staff["admin1"]
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(3)]
    _roll(app, *days)
    body = admin.get("/api/v1/admin/stats/daily?from=2025-12-31&to=2026-01-10").get_json()
    assert [d["day"] for d in body["days"]] == [d.isoformat() for d in days]  # quiet days: zeros, not gaps
    assert body["days"][0]["activities"] == 0 and body["days"][0]["by_type"] == []
    assert body["complete_through"] == "2026-01-03"
    only_to = admin.get("/api/v1/admin/stats/daily?to=2026-01-02").get_json()
    assert (only_to["from"], [d["day"] for d in only_to["days"]]) == ("2025-12-04", ["2026-01-01", "2026-01-02"])
    default = admin.get("/api/v1/admin/stats/daily").get_json()
    assert default["to"] == (_today() - timedelta(days=1)).isoformat() or \
        default["to"] == (_today() - timedelta(days=2)).isoformat()  # just after midnight, inside the grace

    def refused(query: str, field: str) -> None:
        response = admin.get(f"/api/v1/admin/stats/daily?{query}")
        assert response.status_code == 422, response.get_json()
        assert field in response.get_json()["errors"]["query"], response.get_json()

    refused("from=2026-01-05&to=2026-01-01", "from")
    refused("from=2024-01-01&to=2026-01-01", "to")
    refused("from=yesterday", "from")
    refused("region=4306", "region")
    refused("region=999999", "region")
    refused("granularity=week", "granularity")
