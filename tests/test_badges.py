"""Badges: derived from the registry, with the China day each was earned; reversals can withdraw them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select

from backend.db import db
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import Reduction, User
from backend.services import activities, badges, ledger, users
from tests.conftest import PASSWORD, Api, sign_up

TODAY = datetime.now(CHINA_STANDARD_TIME).date()
MONTH = (TODAY.replace(day=1) - timedelta(days=35)).replace(day=1)   # the first of a month well over


def _at(day: date, hour: int = 8, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=CHINA_STANDARD_TIME)


def _record(app: Flask, resident_id: int, at: datetime, kind: str = "bus_ride", **data: Any) -> int:
    evidence = data or {"distance_km": "10", "duration_min": 40}
    with app.app_context():
        _, reduction = activities.record_one(activity_type=kind, occurred_at=at, data=evidence, region="430204",
                                             source="demo", resident_id=resident_id)
        db.session.commit()
        assert reduction is not None
        return reduction.id


def _reverse(app: Flask, reduction_id: int) -> None:
    with app.app_context():
        actor = db.session.scalar(select(User).where(User.username == "badge-admin")) or \
            users.create_staff_user("badge-admin", PASSWORD, ["admin"], scope_region=None, actor=None)
        ledger.reverse_reduction(reduction_id, actor=actor, reason="not a real trip")
        db.session.commit()


def _person(api: Api, name: str = "badger") -> tuple[Api, int]:
    person = sign_up(api, name, region="430204")
    return person, person.get("/api/v1/me").get_json()["id"]


def _badges(person: Api) -> dict[str, dict[str, Any]]:
    response = person.get("/api/v1/me/badges")
    assert response.status_code == 200, response.get_json()
    return {b["code"]: b for b in response.get_json()["badges"]}


def _grams(app: Flask, reduction_id: int) -> int:
    with app.app_context():
        return db.session.get(Reduction, reduction_id).grams


def test_nothing_earned_yet(api: Api) -> None:
    person, _ = _person(api)
    found = _badges(person)
    assert list(found) == ["first_green_trip", "kg_10", "kg_100", "green_commute_month"]
    assert not any(b["earned"] or b["earned_on"] or b["times"] for b in found.values())
    assert found["kg_10"]["progress"] == {"current": 0, "target": 10_000, "unit": "grams"}
    assert found["green_commute_month"]["progress"] == {"current": 0, "target": 20, "unit": "days"}


def test_the_first_green_trip_is_a_trip_and_its_day_is_a_china_day(app: Flask, api: Api) -> None:
    person, rid = _person(api)
    _record(app, rid, _at(MONTH, 9), kind="recycling", material="cardboard", weight_kg="3")
    assert _badges(person)["first_green_trip"]["earned"] is False        # recycling is not a trip
    late_night = datetime.combine(MONTH + timedelta(days=2), time(17, 30), tzinfo=UTC)   # 01:30 next day, China
    _record(app, rid, late_night)
    _record(app, rid, late_night + timedelta(days=3))
    first = _badges(person)["first_green_trip"]
    assert first["earned"] is True and first["earned_on"] == (MONTH + timedelta(days=3)).isoformat()
    assert datetime.fromisoformat(first["earned_at"]) == late_night and first["progress"]["current"] == 2


def test_kilograms_count_in_the_order_activities_happened(app: Flask, api: Api) -> None:
    person, rid = _person(api)
    long_ride = {"distance_km": "80", "duration_min": 100}                     # 4,160 g by bus
    day3 = _record(app, rid, _at(MONTH + timedelta(days=3)), **long_ride)
    day1 = _record(app, rid, _at(MONTH + timedelta(days=1)), **long_ride)      # reported later, happened earlier
    assert _badges(person)["kg_10"]["earned"] is False
    day5 = _record(app, rid, _at(MONTH + timedelta(days=5)), **long_ride)
    ten = _badges(person)["kg_10"]
    assert (ten["earned"], ten["earned_on"]) == (True, (MONTH + timedelta(days=5)).isoformat())
    assert ten["progress"]["current"] == 3 * _grams(app, day1) >= 10_000
    day2 = _record(app, rid, _at(MONTH + timedelta(days=2)), **long_ride)      # a late report moves it earlier
    assert _badges(person)["kg_10"]["earned_on"] == (MONTH + timedelta(days=3)).isoformat()
    _reverse(app, day2)                                                        # and a reversal moves it back
    assert _badges(person)["kg_10"]["earned_on"] == (MONTH + timedelta(days=5)).isoformat()
    _reverse(app, day5)                                                        # or withdraws it
    ten = _badges(person)["kg_10"]
    assert ten["earned"] is False and ten["earned_on"] is None and ten["progress"]["current"] == 2 * _grams(app, day3)


def test_a_hundred_kilograms(app: Flask, api: Api) -> None:
    person, rid = _person(api)
    ids = [_record(app, rid, _at(MONTH + timedelta(days=i % 28), 7 + i // 28), distance_km="80", duration_min=100)
           for i in range(24)]
    hundred = _badges(person)["kg_100"]
    assert hundred["earned"] is False and hundred["progress"]["current"] == 24 * _grams(app, ids[0]) < 100_000
    _record(app, rid, _at(MONTH + timedelta(days=27), 20), distance_km="80", duration_min=100)
    hundred = _badges(person)["kg_100"]
    assert hundred["earned"] is True and hundred["earned_on"] == (MONTH + timedelta(days=27)).isoformat()
    assert hundred["times"] == 1


def test_a_month_of_green_commuting_is_twenty_china_days(app: Flask, api: Api) -> None:
    person, rid = _person(api)
    for day in range(19):
        _record(app, rid, _at(MONTH + timedelta(days=day), 8))
        _record(app, rid, _at(MONTH + timedelta(days=day), 18), kind="bike_ride", distance_km="5", duration_min=20)
    # 23:30 China on the last day of the previous month is not this month, whatever UTC says.
    _record(app, rid, _at(MONTH - timedelta(days=1), 23, 30))
    month = _badges(person)["green_commute_month"]
    assert month["earned"] is False and month["times"] == 0
    twentieth = _record(app, rid, _at(MONTH + timedelta(days=24), 7, 45))
    month = _badges(person)["green_commute_month"]
    assert (month["earned"], month["earned_on"], month["times"]) == (True, (MONTH + timedelta(days=24)).isoformat(), 1)
    _reverse(app, twentieth)
    assert _badges(person)["green_commute_month"]["earned"] is False


def test_progress_of_the_month_badge_is_this_months_days(app: Flask, api: Api) -> None:
    person, rid = _person(api)
    this_month = {d for d in (TODAY - timedelta(days=b) for b in range(3)) if d.month == TODAY.month}
    for day in this_month:
        _record(app, rid, _at(day, 7))
        _record(app, rid, _at(day, 19))                                   # a second trip: the same day
    _record(app, rid, _at(TODAY.replace(day=1) - timedelta(days=1), 7))   # last month
    assert _badges(person)["green_commute_month"]["progress"]["current"] == len(this_month)


def test_badges_are_computed_per_resident_and_only_for_residents(app: Flask, api: Api,
                                                                 staff: dict[str, Api]) -> None:
    person, rid = _person(api)
    other, _ = _person(api, "neighbour")
    _record(app, rid, _at(MONTH))
    assert _badges(person)["first_green_trip"]["earned"] and not _badges(other)["first_green_trip"]["earned"]
    refused = staff["admin1"].get("/api/v1/me/badges")
    assert refused.status_code == 403
    with app.app_context():
        assert [b["code"] for b in badges.badges_of(rid) if b["earned"]] == ["first_green_trip"]
