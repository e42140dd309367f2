"""Leaderboards: ranks by certified grams per community and region, China weeks and months, the
cached boards always equal to a recount (Redis flushed, down, corrupted, or racing a rebuild)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select, update

from backend.app import create_app
from backend.db import db, utcnow
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import CommunityMember, Reduction, Region, Resident, User
from backend.services import activities, communities, leaderboards, ledger, residents, users
from backend.services.leaderboards import Board, Period
from tests.conftest import (
    PASSWORD,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    Api,
    clone_database,
    login,
    make_settings,
    make_staff,
    on_postgres,
    run_together,
    sign_up,
)
from tests.test_ingest import _bind, _partner, _results, _send
from tests.test_ingest import _trip as _ingest_trip

TODAY = datetime.now(CHINA_STANDARD_TIME).date()
WEEK = TODAY - timedelta(days=TODAY.weekday() + 21)  # a Monday three weeks ago: a whole week, over
ON_POSTGRES = (TEST_DATABASE_URL or "").startswith("postgres")


def _at(day: date, hour: int = 8, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=CHINA_STANDARD_TIME)


def _trip(app: Flask, resident_id: int, at: datetime, km: str = "10", region: str = "430204",
          kind: str = "bus_ride") -> int:
    with app.app_context():
        _, reduction = activities.record_one(activity_type=kind, occurred_at=at, region=region, source="demo",
                                             resident_id=resident_id, data={"distance_km": km, "duration_min": 40})
        db.session.commit()
        assert reduction is not None
        return reduction.id


def _grams(app: Flask, *reduction_ids: int) -> int:
    with app.app_context():
        return sum(db.session.get(Reduction, rid).grams for rid in reduction_ids)


def _person(api: Api, name: str, region: str = "430204", display: str | None = None) -> tuple[Api, int]:
    person = sign_up(api, name, region=region, display_name=display)
    return person, person.get("/api/v1/me").get_json()["id"]


def _board(caller: Api, path: str, status: int = 200, **params: Any) -> dict[str, Any]:
    response = caller.get(path, query_string=params)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def _reverse(app: Flask, reduction_id: int) -> None:
    with app.app_context():
        actor = db.session.scalar(select(User).where(User.username == "lb-admin"))
        if actor is None:
            actor = users.create_staff_user("lb-admin", PASSWORD, ["admin"], scope_region=None, actor=None)
        ledger.reverse_reduction(reduction_id, actor=actor, reason="found fraudulent")
        db.session.commit()


def _store(app: Flask) -> Any:
    return app.extensions["redis_store"]


def _dead_redis() -> redis.Redis:
    """Redis that is not there: every call raises ConnectionError at once (no retries)."""
    return redis.Redis(host="127.0.0.1", port=1, decode_responses=True, socket_connect_timeout=0.5,
                       retry=Retry(NoBackoff(), 0))


def _standing(app: Flask, board: Board, resident_id: int | None = None, limit: int = 100) -> leaderboards.Standing:
    with app.app_context():
        result = leaderboards.standing(board, resident_id=resident_id, limit=limit)
        db.session.commit()
        return result


def _recount(app: Flask, board: Board) -> list[tuple[int, int]]:
    with app.app_context():
        return sorted(leaderboards.recount(board).items(), key=lambda item: (-item[1], item[0]))


def _region(code: str, day: date = WEEK, kind: str = "week") -> Board:
    return Board("region", code, Period.containing(kind, day))


# --- ranks, scope, names ---------------------------------------------------------------------------------


def test_a_region_board_ranks_residents_and_includes_the_regions_below(app: Flask, api: Api) -> None:
    ann, ann_id = _person(api, "annie", display="安安")
    bo, bo_id = _person(api, "bobby", display="波波")
    cy, cy_id = _person(api, "cyril", region="430611", display="小翠")
    a = [_trip(app, ann_id, _at(WEEK)), _trip(app, ann_id, _at(WEEK + timedelta(days=2)), km="5")]
    b = [_trip(app, bo_id, _at(WEEK + timedelta(days=6), 20))]
    c = [_trip(app, cy_id, _at(WEEK + timedelta(days=1)), region="430611", km="3")]

    city = _board(cy, "/api/v1/regions/430200/leaderboard", date=WEEK.isoformat())  # Zhuzhou: Shifeng's city
    assert [(e["rank"], e["display_name"], e["grams"]) for e in city["entries"]] == [
        (1, "安安", _grams(app, *a)), (2, "波波", _grams(app, *b))]
    assert city["entries"][0]["kg"] == str(leaderboards.kg(_grams(app, *a)))
    assert city["me"] == {"rank": None, "grams": 0, "kg": "0.000"}          # Cy lives in Yueyang
    assert (city["scope"], city["name"], city["region"], city["participants"]) == ("region", "株洲市", "430200", 2)
    assert (city["period"], city["start"], city["end"]) == ("week", WEEK.isoformat(),
                                                            (WEEK + timedelta(days=6)).isoformat())
    assert city["starts_at"] == datetime.combine(WEEK - timedelta(days=1), time(16), tzinfo=UTC).isoformat()
    assert all(set(e) == {"rank", "display_name", "grams", "kg", "is_me"} for e in city["entries"])

    province = _board(ann, "/api/v1/regions/430000/leaderboard", date=WEEK.isoformat())
    assert [e["display_name"] for e in province["entries"]] == ["安安", "波波", "小翠"]
    assert province["me"]["rank"] == 1 and province["entries"][0]["is_me"] is True
    assert [e["display_name"] for e in _board(bo, "/api/v1/regions/430600/leaderboard",
                                              date=WEEK.isoformat())["entries"]] == ["小翠"]
    assert _grams(app, *c) > 0


def test_equal_grams_share_a_rank_and_the_own_rank_shows_outside_the_top(app: Flask, api: Api) -> None:
    people = [_person(api, f"person{i}", display=f"居民{i}") for i in range(5)]
    for (_, rid), km in zip(people, ["9", "7", "7", "4", "2"], strict=True):
        _trip(app, rid, _at(WEEK + timedelta(days=3)), km=km)
    last, _ = people[4]
    for _ in range(2):  # built from the database, then read from the cache: the same answer
        board = _board(last, "/api/v1/regions/430204/leaderboard", date=WEEK.isoformat(), limit=3)
        assert [(e["rank"], e["display_name"]) for e in board["entries"]] == [(1, "居民0"), (2, "居民1"), (2, "居民2")]
        assert board["me"]["rank"] == 5 and board["participants"] == 5
        assert not any(e["is_me"] for e in board["entries"])
    assert board["source"] == "cache"
    tied = _board(people[3][0], "/api/v1/regions/430204/leaderboard", date=WEEK.isoformat(), limit=100)
    assert [e["rank"] for e in tied["entries"]] == [1, 2, 2, 4, 5] and tied["me"]["rank"] == 4


def test_weeks_and_months_are_china_days(app: Flask, api: Api) -> None:
    person, rid = _person(api, "night-owl")
    sunday_night = _trip(app, rid, _at(WEEK + timedelta(days=6), 23, 59, 59))     # Sunday 15:59:59 UTC
    monday_midnight = _trip(app, rid, _at(WEEK + timedelta(days=7)), km="4")       # still Sunday in UTC
    week = _board(person, "/api/v1/regions/430204/leaderboard", date=(WEEK + timedelta(days=6)).isoformat())
    after = _board(person, "/api/v1/regions/430204/leaderboard", date=(WEEK + timedelta(days=7)).isoformat())
    assert week["me"]["grams"] == _grams(app, sunday_night)
    assert after["me"]["grams"] == _grams(app, monday_midnight) and after["start"] == (WEEK + timedelta(7)).isoformat()

    first = (TODAY.replace(day=1) - timedelta(days=40)).replace(day=1)              # a month well over
    last_day = first - timedelta(days=1)
    in_old = _trip(app, rid, _at(last_day, 23, 59, 59))
    in_new = _trip(app, rid, _at(first, 0, 0, 0), km="6")
    old = _board(person, "/api/v1/regions/430204/leaderboard", period="month", date=last_day.isoformat())
    new = _board(person, "/api/v1/regions/430204/leaderboard", period="month", date=first.isoformat())
    assert (old["start"], old["end"]) == (last_day.replace(day=1).isoformat(), last_day.isoformat())
    assert old["me"]["grams"] == _grams(app, in_old) and new["me"]["grams"] == _grams(app, in_new)
    assert new["ends_at"] == datetime.combine((first + timedelta(days=31)).replace(day=1) - timedelta(days=1),
                                              time(16), tzinfo=UTC).isoformat()


def test_bad_input_names_the_field(app: Flask, api: Api) -> None:
    person, _ = _person(api, "curious")
    path = "/api/v1/regions/430204/leaderboard"
    for params, name in (({"period": "year"}, "period"), ({"limit": 0}, "limit"), ({"limit": 101}, "limit"),
                         ({"date": "2024-13-01"}, "date"), ({"date": (TODAY + timedelta(days=1)).isoformat()}, "date"),
                         ({"date": "1999-12-31"}, "date"), ({"order": "asc"}, "order")):
        body = _board(person, path, status=422, **params)
        assert list(body["errors"]["query"]) == [name], (params, body)
    assert list(_board(person, "/api/v1/regions/4302/leaderboard", status=422)["errors"]["path"]) == ["code"]
    assert _board(person, "/api/v1/regions/999999/leaderboard", status=404)["error"] == "not_found"
    assert _board(person, "/api/v1/communities/999999/leaderboard", status=404)["error"] == "not_found"


# --- communities ------------------------------------------------------------------------------------------


def test_a_community_board_is_for_its_members(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    ann, ann_id = _person(api, "annie", display="安安")
    bo, bo_id = _person(api, "bobby", display="波波")
    cy, cy_id = _person(api, "cyril", display="小翠")
    club = ann.post("/api/v1/communities", {"name": "石峰骑行团", "region": "430204"}).get_json()
    path = f"/api/v1/communities/{club['id']}/leaderboard"
    bo.post(f"/api/v1/communities/{club['id']}/join")
    _trip(app, ann_id, _at(WEEK), km="3")
    bo_trip = _trip(app, bo_id, _at(WEEK + timedelta(days=1)), km="8")
    _trip(app, cy_id, _at(WEEK + timedelta(days=1)), km="12")                     # not a member

    board = _board(ann, path, date=WEEK.isoformat())
    assert [e["display_name"] for e in board["entries"]] == ["波波", "安安"]
    assert (board["scope"], board["community_id"], board["name"]) == ("community", club["id"], "石峰骑行团")
    assert _board(cy, path, status=403, date=WEEK.isoformat())["error"] == "not_a_member"
    assert _board(staff["operator1"], path, status=403)["error"] == "out_of_scope"   # Yueyang's operator
    assert _board(staff["admin1"], path, date=WEEK.isoformat())["me"] is None

    cy.post(f"/api/v1/communities/{club['id']}/join")      # a newcomer brings the whole period along
    assert [e["display_name"] for e in _board(cy, path, date=WEEK.isoformat())["entries"]] == ["小翠", "波波", "安安"]
    bo.post(f"/api/v1/communities/{club['id']}/leave")
    again = _board(ann, path, date=WEEK.isoformat())
    assert [e["display_name"] for e in again["entries"]] == ["小翠", "安安"]
    _reverse(app, bo_trip)
    bo.post(f"/api/v1/communities/{club['id']}/join")
    assert [e["display_name"] for e in _board(ann, path, date=WEEK.isoformat())["entries"]] == ["小翠", "安安"]


def test_region_scope_of_staff(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    assert _board(staff["operator1"], "/api/v1/regions/430602/leaderboard")["me"] is None
    assert _board(staff["auditor1"], "/api/v1/regions/430600/leaderboard")["participants"] == 0
    assert _board(staff["operator1"], "/api/v1/regions/430204/leaderboard", status=403)["error"] == "out_of_scope"
    assert _board(staff["operator1"], "/api/v1/regions/430000/leaderboard", status=403)["error"] == "out_of_scope"
    assert _board(staff["admin1"], "/api/v1/regions/430000/leaderboard")["source"] in ("cache", "database")


def test_who_may_look(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    make_staff(app, "till", "merchant_staff")
    shop = login(api, "till")
    founder, _ = _person(api, "founder")
    club = founder.post("/api/v1/communities", {"name": "晨跑团", "region": "430602"}).get_json()
    for path in (f"/api/v1/communities/{club['id']}/leaderboard", "/api/v1/regions/430602/leaderboard"):
        assert api.as_token(None).get(path).status_code == 401
        assert _board(shop, path, status=403)["error"] == "role_required"
        for role in ("operator1", "auditor1", "admin1"):           # all three hold Yueyanglou in scope
            assert _board(staff[role], path)["me"] is None
        assert _board(founder, path)["me"] == {"rank": None, "grams": 0, "kg": "0.000"}


# --- equal to a recount ------------------------------------------------------------------------------------


def test_new_and_reversed_reductions_reach_a_cached_board(app: Flask, api: Api) -> None:
    _, ann_id = _person(api, "annie")
    _, bo_id = _person(api, "bobby")
    board = _region("430200")
    first = _trip(app, ann_id, _at(WEEK))
    assert _standing(app, board).source == "database"          # built now
    assert _standing(app, board).source == "cache"
    second = _trip(app, bo_id, _at(WEEK + timedelta(days=2)), km="15")
    cached = _standing(app, board, ann_id)
    assert cached.source == "cache" and cached.top == _recount(app, board)
    assert cached.top == [(bo_id, _grams(app, second)), (ann_id, _grams(app, first))] and cached.me == (2, _grams(
        app, first))
    _reverse(app, second)
    after = _standing(app, board, bo_id)
    assert after.source == "cache" and after.top == [(ann_id, _grams(app, first))] and after.me == (None, 0)


def test_a_rolled_back_batch_never_counts(app: Flask, api: Api) -> None:
    _, ann_id = _person(api, "annie")
    board = _region("430204")
    kept = _trip(app, ann_id, _at(WEEK))
    assert _standing(app, board).top == [(ann_id, _grams(app, kept))]
    with app.app_context():
        activities.record_one(activity_type="bus_ride", occurred_at=_at(WEEK), region="430204", source="demo",
                              resident_id=ann_id, data={"distance_km": "20", "duration_min": 60})
        db.session.flush()
        db.session.rollback()
        db.session.commit()  # a later commit of the same session carries nothing of the rolled-back work
    assert _standing(app, board).top == [(ann_id, _grams(app, kept))] == _recount(app, board)
    with app.app_context():  # a savepoint rolled back inside a transaction that commits
        activities.record_one(activity_type="bus_ride", occurred_at=_at(WEEK), region="430204", source="demo",
                              resident_id=ann_id, data={"distance_km": "2", "duration_min": 10})
        nested = db.session.begin_nested()
        nested.rollback()
        db.session.commit()
    result = _standing(app, board)
    assert result.top == _recount(app, board) and result.top[0][1] > _grams(app, kept)


def test_partner_batches_and_review_approvals_reach_a_cached_board(app: Flask, api: Api, staff: dict[str, Api],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    client = app.test_client()
    person = sign_up(api, "rider", region="430602", display_name="骑手")
    rid = person.get("/api/v1/me").get_json()["id"]
    bus = _partner(staff["operator1"])
    _bind(person, bus, "card-1", app)
    soon = utcnow() - timedelta(days=3)
    board = Board("region", "430600", Period.containing("week", ledger.china_day(soon)))
    assert _standing(app, board).source == "database"
    assert _results(client, bus, [_ingest_trip("t1", "card-1", soon)])[0]["status"] == "credited"
    after = _standing(app, board, rid)
    assert after.source == "cache" and after.top == _recount(app, board) and after.me is not None and after.me[0] == 1

    def crash(_ids: list[int]) -> None:
        raise RuntimeError("killed while crediting")

    monkeypatch.setattr(ledger, "credit", crash)            # the batch is recorded, then the request fails
    assert _send(client, bus, [_ingest_trip("t2", "card-1", soon + timedelta(hours=2))]).status_code == 500
    monkeypatch.undo()
    same = _standing(app, board, rid)
    assert same.source == "cache" and same.top == after.top == _recount(app, board)

    kiosk = _partner(staff["operator1"], "回收亭", ("recycling",), kind="recycling")
    _bind(person, kiosk, "k-1", app)
    heavy = {"external_id": "r1", "user_ref": "k-1", "type": "recycling", "occurred_at": soon.isoformat(),
             "data": {"material": "cardboard", "weight_kg": "60"}}                # over 50 kg: review
    held = _results(client, kiosk, [heavy])[0]
    assert held["status"] == "pending_review" and _standing(app, board, rid).me == after.me
    assert staff["auditor1"].post(f"/api/v1/admin/review-queue/{held['activity_id']}/approve", {}).status_code == 200
    approved = _standing(app, board, rid)
    assert approved.source == "cache" and approved.top == _recount(app, board)
    assert approved.me == (1, after.me[1] + 60 * 3461)


def test_a_flushed_redis_is_rebuilt(app: Flask, api: Api) -> None:
    _, rid = _person(api, "annie")
    board = _region("430000", kind="month")
    _trip(app, rid, _at(WEEK))
    assert _standing(app, board).source == "database" and _standing(app, board).source == "cache"
    _store(app).flushdb()
    rebuilt = _standing(app, board, rid)
    assert rebuilt.source == "database" and rebuilt.top == _recount(app, board) and rebuilt.me[0] == 1
    assert _standing(app, board, rid).source == "cache"


def test_with_redis_down_the_database_answers_and_nothing_is_lost(app: Flask, api: Api,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _, ann_id = _person(api, "annie")
    _, bo_id = _person(api, "bobby")
    board = _region("430204")
    _trip(app, ann_id, _at(WEEK))
    assert _standing(app, board).source == "database" and _standing(app, board).source == "cache"
    live = _store(app).client
    monkeypatch.setattr(_store(app), "client", _dead_redis())
    late = _trip(app, bo_id, _at(WEEK + timedelta(days=1)), km="20")      # its marks cannot be written
    down = _standing(app, board, bo_id)
    assert down.source == "database" and down.top == _recount(app, board) and down.me == (1, _grams(app, late))
    monkeypatch.setattr(_store(app), "client", live)
    back = _standing(app, board, bo_id)                    # the process writes the marks it kept first
    assert back.source == "cache" and back.top == _recount(app, board) and back.me == (1, _grams(app, late))


def test_a_process_that_died_between_commit_and_hook_is_noticed(app: Flask, api: Api,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _, ann_id = _person(api, "annie")
    board = _region("430204")
    first = _trip(app, ann_id, _at(WEEK))
    assert _standing(app, board).source == "database"
    # The hook never runs (each _trip has a new session, which takes the patched listener).
    monkeypatch.setattr(leaderboards, "_after_commit", lambda session: session.info.pop(leaderboards._TOUCHED))
    _trip(app, ann_id, _at(WEEK + timedelta(days=1)), km="5")
    fresh = _standing(app, board)
    assert fresh.source == "cache" and fresh.top == [(ann_id, _grams(app, first))] != _recount(app, board)
    # Within the grace the pending entry is a commit in flight; past it, a reader recounts the member.
    monkeypatch.setattr(leaderboards, "PENDING_GRACE_MS", 0)
    healed = _standing(app, board)
    assert healed.source == "cache" and healed.top == _recount(app, board)


def test_backlog_overflow_retires_every_board(app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    _, rid = _person(api, "annie")
    board = _region("430204")
    _trip(app, rid, _at(WEEK))
    assert _standing(app, board).source == "database"
    live = _store(app).client
    monkeypatch.setattr(leaderboards, "BACKLOG_MAX", 1)
    monkeypatch.setattr(_store(app), "client", _dead_redis())
    _trip(app, rid, _at(WEEK + timedelta(days=1)))    # region chain x 2 periods: more marks than kept
    monkeypatch.setattr(_store(app), "client", live)
    with app.app_context():
        assert app.extensions["leaderboards.backlog"].retire_all is True
    assert _standing(app, board).source == "database"  # a new generation: rebuilt
    assert _store(app).get(leaderboards.GENERATION_KEY) == "1"
    assert _standing(app, board, rid).top == _recount(app, board)


@pytest.mark.parametrize("corrupt", [
    lambda s, b: s.hset(b.key("meta"), "n", "many"),
    lambda s, b: s.hset(b.key("meta"), "token", "not-a-token"),
    lambda s, b: s.zadd(b.key("z"), {"stranger": 5}),
    lambda s, b: s.zadd(b.key("z"), {f"{leaderboards.MEMBER_BASE - 1:019d}": 2.5}),
    lambda s, b: s.zadd(b.key("z"), {f"{leaderboards.MEMBER_BASE - 99:019d}": 10**9}),
    lambda s, b: (s.delete(b.key("z")), s.set(b.key("z"), "junk")),
    lambda s, b: (s.delete(b.key("meta")), s.set(b.key("meta"), "junk")),
    lambda s, b: s.zadd(b.key("dirty"), {"stranger": 3}),
    lambda s, b: s.zadd(b.key("dirty"), {f"{leaderboards.MEMBER_BASE - 1:019d}": 3.5}),
    lambda s, b: s.set(b.key("seq"), "x"),
    lambda s, b: (s.delete(b.key("dirty")), s.set(b.key("dirty"), "junk")),
    lambda s, b: s.zadd(b.key("pending"), {"garbage": 0}),
    lambda s, b: s.hset(b.key("meta"), "v", "0"),
    lambda s, b: (s.delete(leaderboards.GENERATION_KEY), s.hset(leaderboards.GENERATION_KEY, "x", "1")),
    lambda s, b: s.set(leaderboards.GENERATION_KEY, b"\xff\xfe"),
], ids=["count", "token", "member", "fraction", "stranger-id", "z-type", "meta-type", "dirty-member",
        "dirty-mark", "seq", "dirty-type", "pending", "format", "generation-type", "generation-bytes"])
def test_a_malformed_cached_value_is_discarded(app: Flask, api: Api, corrupt: Any) -> None:
    _, ann_id = _person(api, "annie")
    _, bo_id = _person(api, "bobby")
    board = _region("430204")
    _trip(app, ann_id, _at(WEEK))
    _trip(app, bo_id, _at(WEEK), km="4")
    assert _standing(app, board).source == "database" and _standing(app, board).source == "cache"
    corrupt(_store(app), board)
    _trip(app, bo_id, _at(WEEK + timedelta(days=1)), km="12")      # a change on top of the damage
    for _ in range(2):
        result = _standing(app, board, bo_id)
        assert result.top == _recount(app, board) and result.me == (1, result.top[0][1])
    assert _standing(app, board).source == "cache"                # repaired


def test_a_stranger_in_the_cache_is_not_shown(app: Flask, api: Api) -> None:
    person, rid = _person(api, "annie", display="安安")
    _trip(app, rid, _at(WEEK))
    board = _region("430204")
    assert _standing(app, board).source == "database"
    _store(app).zadd(board.key("z"), {f"{leaderboards.MEMBER_BASE - 10**12:019d}": 10**8})   # no such resident
    _store(app).hset(board.key("meta"), "n", 2)
    shown = _board(person, "/api/v1/regions/430204/leaderboard", date=WEEK.isoformat())
    assert [e["display_name"] for e in shown["entries"]] == ["安安"] and shown["participants"] == 1


def test_a_rebuild_racing_new_reductions_loses_nothing(app: Flask, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reduction committed while a board is recounted: the mark number taken first keeps it dirty."""
    _, ann_id = _person(api, "annie")
    _, bo_id = _person(api, "bobby")
    board = _region("430204")
    _trip(app, ann_id, _at(WEEK))
    assert _standing(app, board).source == "database"
    real = leaderboards._totals
    raced: list[int] = []

    def totals_then_commit(board_: Board, residents_: Any = None) -> dict[int, int]:
        result = real(board_, residents_)
        if residents_ is None and not raced:  # the full recount has read; now another writer commits
            db.session.rollback()  # (SQLite: let the writer in)
            raced.append(_trip(app, bo_id, _at(WEEK + timedelta(days=2)), km="15"))
        return result

    monkeypatch.setattr(leaderboards, "_totals", totals_then_commit)
    with app.app_context():
        assert leaderboards.rebuild(board) == 1
        db.session.rollback()
    monkeypatch.setattr(leaderboards, "_totals", real)
    result = _standing(app, board, bo_id)
    assert raced and result.source == "cache" and result.top == _recount(app, board) and result.me[0] == 1


def test_an_older_build_does_not_overwrite_a_newer_one(app: Flask, api: Api) -> None:
    _, rid = _person(api, "annie")
    board = _region("430204")
    _trip(app, rid, _at(WEEK))
    with app.app_context():
        generation = leaderboards._generation()
        store = _store(app)
        old_seq = int(store.incr(board.key("seq")))       # an old build took its number, then stalled
        assert leaderboards.rebuild(board) == 1           # a newer one stored its board
        store.zadd(board.key("tmp:0123456789abcdef"), {"stale": 1})
        swapped = leaderboards._script(leaderboards._SWAP)(
            keys=[board.key("meta"), board.key("z"), board.key("dirty"), board.key("tmp:0123456789abcdef")],
            args=["0123456789abcdef", old_seq, generation, "x", "", board.expire_at, 1, leaderboards.FORMAT])
        assert swapped == 0
        db.session.rollback()
    assert _standing(app, board).top == _recount(app, board)


def test_rebuild_all_recounts_cached_boards_and_every_regions_current_ones(app: Flask, api: Api) -> None:
    _, rid = _person(api, "annie")
    _trip(app, rid, _at(WEEK))
    old = _region("430200")
    assert _standing(app, old).source == "database"
    _store(app).zadd(old.key("z"), {f"{leaderboards.MEMBER_BASE - rid:019d}": 1})     # drifted
    with app.app_context():
        counts = leaderboards.rebuild_all()
        regions = len(db.session.scalars(select(Region.code)).all())
    assert counts["boards"] == 2 * regions + 1 and counts["residents"] >= 1 and counts["redis_unreachable"] == 0
    assert _standing(app, old).top == _recount(app, old) and _standing(app, old).source == "cache"
    today = Board("region", "430204", Period.containing("week", TODAY))
    assert _store(app).exists(today.key("meta"))


def test_rebuild_all_leaves_long_past_boards_to_expire(app: Flask, api: Api) -> None:
    _, rid = _person(api, "annie")
    _trip(app, rid, _at(WEEK))
    ancient = _region("430204", TODAY - timedelta(days=200))
    assert _standing(app, ancient).source == "database"
    with app.app_context():
        regions = len(db.session.scalars(select(Region.code)).all())
        assert leaderboards.rebuild_all()["boards"] == 2 * regions
    ttl = _store(app).ttl(ancient.key("meta"))
    assert 0 < ttl <= 24 * 3600


def test_rebuild_all_with_redis_down(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_store(app), "client", _dead_redis())
    with app.app_context():
        assert leaderboards.rebuild_all()["redis_unreachable"] == 1


# --- PostgreSQL: concurrent writers and readers ----------------------------------------------------------


@on_postgres
def test_concurrent_batches_and_readers_end_equal_to_a_recount(app: Flask, api: Api) -> None:
    people = [_person(api, f"writer{i}")[1] for i in range(4)]
    board = _region("430200")
    assert _standing(app, board).source == "database"

    def write(i: int) -> None:
        for j in range(3):
            _trip(app, people[i % 4], _at(WEEK + timedelta(days=j), 8 + i), km=str(2 + i))

    def read(_: int) -> None:
        for _ in range(4):
            _standing(app, board, people[0])

    outcomes = run_together(lambda kind, i: write(i) if kind == "w" else read(i),
                            [("w", i) for i in range(4)] + [("r", i) for i in range(3)])
    assert all(o is None for o in outcomes), outcomes
    result = _standing(app, board)
    assert result.source == "cache" and result.top == _recount(app, board)


# --- any sequence: a state machine against an independent recount ----------------------------------------

BASE = (TODAY.replace(day=1) - timedelta(days=1)).replace(day=1)   # the first of last month
DAYS = [BASE - timedelta(days=2), BASE - timedelta(days=1), BASE, BASE + timedelta(days=5), BASE + timedelta(days=6),
        BASE + timedelta(days=7)]
PEOPLE = (("430204", "甲"), ("430204", "乙"), ("430611", "丙"))
REGIONS = ("430000", "430200", "430204", "430600")


class BoardMachine(RuleBasedStateMachine):
    template: str
    workdir: Path

    def __init__(self) -> None:
        super().__init__()
        self.url, self.cleanup = clone_database(self.template, self.workdir)
        self.app = create_app(make_settings(self.url, self.workdir / uuid.uuid4().hex))
        if TEST_REDIS_URL:
            self.app.extensions["redis_store"].client.flushdb()
        self.live = self.app.extensions["redis_store"].client
        self.residents: list[int] = []
        self.communities: list[int] = []
        self.certified: list[int] = []
        self.turn = 0

    def teardown(self) -> None:
        self.app.extensions["redis_store"].client = self.live
        self.app.extensions["database"].engine.dispose()
        self.cleanup()

    @initialize()
    def people(self) -> None:
        with self.app.app_context():
            for region, name in PEOPLE:
                self.residents.append(residents.sign_up(f"r{uuid.uuid4().hex[:10]}", PASSWORD, name, region).id)
            for name in ("骑行团", "步行团"):
                founder = db.session.get(Resident, self.residents[0])
                self.communities.append(communities.create(founder, name, "430204", "").id)
            db.session.commit()

    @rule(who=st.integers(0, 2), day=st.integers(0, len(DAYS) - 1), hour=st.integers(0, 23),
          km=st.integers(1, 15), commit=st.booleans(), moved=st.booleans())
    def trip(self, who: int, day: int, hour: int, km: int, commit: bool, moved: bool) -> None:
        resident = self.residents[who]
        region = "430602" if moved else PEOPLE[who][0]
        with self.app.app_context():
            _, reduction = activities.record_one(
                activity_type="bike_ride", occurred_at=_at(DAYS[day], hour, 30), region=region, source="demo",
                resident_id=resident, data={"distance_km": str(km), "duration_min": 60})
            db.session.flush()
            if commit:
                db.session.commit()
                self.certified.append(reduction.id)
            else:
                db.session.rollback()

    @precondition(lambda self: bool(self.certified))
    @rule(pick=st.integers(0, 100))
    def reverse(self, pick: int) -> None:
        _reverse(self.app, self.certified.pop(pick % len(self.certified)))

    @rule(who=st.integers(0, 2), which=st.integers(0, 1))
    def join_or_leave(self, who: int, which: int) -> None:
        with self.app.app_context():
            person = db.session.get(Resident, self.residents[who])
            community = self.communities[which]
            if communities.is_member(person.id, community):
                communities.leave(person, community)
            else:
                communities.join(person, community)
            db.session.commit()

    @rule()
    def flush_redis(self) -> None:
        self.live.flushdb()

    @rule(who=st.integers(0, 2), day=st.integers(0, len(DAYS) - 1))
    def trip_while_redis_is_down(self, who: int, day: int) -> None:
        self.app.extensions["redis_store"].client = _dead_redis()
        try:
            _trip(self.app, self.residents[who], _at(DAYS[day], 12), km="5", region=PEOPLE[who][0])
        finally:
            self.app.extensions["redis_store"].client = self.live

    @rule(board=st.integers(0, 100), how=st.sampled_from(["count", "member", "fraction"]))
    def corrupt(self, board: int, how: str) -> None:
        """Malformed values (a well-formed wrong total cannot be told from a right one without a recount:
        that is the scheduled rebuild's job)."""
        target = self._boards()[board % len(self._boards())]
        if how == "fraction":
            self.live.zadd(target.key("z"), {f"{leaderboards.MEMBER_BASE - self.residents[0]:019d}": 0.5})
        elif how == "count":
            self.live.hset(target.key("meta"), "n", "7")
        else:
            self.live.zadd(target.key("z"), {"x": 1})

    def _boards(self) -> list[Board]:
        periods = sorted({Period.containing(kind, day) for day in DAYS for kind in leaderboards.PERIODS})
        return [Board("region", code, p) for code in REGIONS for p in periods] + \
            [Board("community", str(c), p) for c in self.communities for p in periods]

    @invariant()
    def every_board_equals_a_recount(self) -> None:
        if not self.residents:
            return
        expected = _independent_recount(self.app)
        self.turn += 1
        me = self.residents[self.turn % len(self.residents)]
        with self.app.app_context():
            for board in self._boards():
                want = sorted(expected(board).items(), key=lambda item: (-item[1], item[0]))
                first = leaderboards.standing(board, resident_id=me, limit=100)
                second = leaderboards.standing(board, resident_id=me, limit=100)
                assert first.top == want, (board, first, want)
                assert second.top == want and second.source == "cache", (board, second, want)
                grams = dict(want).get(me, 0)
                rank = 1 + sum(1 for _, g in want if g > grams) if grams else None
                assert first.me == second.me == (rank, grams)
            db.session.rollback()


def _independent_recount(app: Flask) -> Any:
    """The boards computed in Python from the rows, without the service's queries."""
    with app.app_context():
        parents = dict(db.session.execute(select(Region.code, Region.parent_code)).all())
        rows = db.session.execute(select(Reduction.resident_id, Reduction.region_code, Reduction.occurred_at,
                                         Reduction.grams).where(Reduction.status == "certified")).all()
        members = defaultdict(set)
        for community_id, resident_id in db.session.execute(
                select(CommunityMember.community_id, CommunityMember.resident_id)):
            members[str(community_id)].add(resident_id)
        db.session.rollback()

    def chain(code: str | None) -> set[str]:
        found = set()
        while code is not None:
            found.add(code)
            code = parents.get(code)
        return found

    def compute(board: Board) -> dict[int, int]:
        totals: dict[int, int] = defaultdict(int)
        for resident_id, region, occurred_at, grams in rows:
            day = occurred_at.astimezone(CHINA_STANDARD_TIME).date()
            if not board.period.first <= day < board.period.next:
                continue
            if board.scope == "region" and board.ident not in chain(region):
                continue
            if board.scope == "community" and resident_id not in members[board.ident]:
                continue
            totals[resident_id] += grams
        return {r: g for r, g in totals.items() if g > 0}

    return compute


def test_boards_equal_a_recount_under_any_sequence(template_db: str, tmp_path: Path) -> None:
    BoardMachine.template = template_db
    BoardMachine.workdir = tmp_path
    machine = BoardMachine.TestCase
    machine.settings = settings(max_examples=8 if ON_POSTGRES else 10, stateful_step_count=12, deadline=None,
                                database=None, suppress_health_check=[HealthCheck.too_slow])
    machine().runTest()


def test_joined_at_does_not_matter(app: Flask, api: Api) -> None:
    """Members count with their whole period, whenever they joined (stated in the service)."""
    ann, ann_id = _person(api, "annie", display="安安")
    club = ann.post("/api/v1/communities", {"name": "晨跑团", "region": "430204"}).get_json()
    _trip(app, ann_id, _at(WEEK))
    with app.app_context():
        db.session.execute(update(CommunityMember).values(joined_at=datetime.now(UTC)))
        db.session.commit()
    board = _board(ann, f"/api/v1/communities/{club['id']}/leaderboard", date=WEEK.isoformat())
    assert board["me"]["rank"] == 1 and board["entries"][0]["display_name"] == "安安"
