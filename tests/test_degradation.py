"""Degradation (issue #7 point 4): Redis down, the API answers from the database; no credit doubled
or lost; what Redis held comes back when it does.

The end-to-end tests start a real ``redis-server`` of their own on a free port (never the shared
one), then kill, freeze and restart it under a running app. They run wherever redis-server is
installed; in CI (``CI`` set) a missing redis-server fails them instead of skipping them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from sqlalchemy import delete, func, select

from backend.app import create_app
from backend.db import db, utcnow
from backend.extensions import CircuitBreaker, GuardedRedis, limiter
from backend.jobs import runner, scheduler
from backend.models import JobRun, JournalEntry, PartnerNonce, Reduction
from backend.services import leaderboards
from backend.services.leaderboards import Board, Period
from backend.services.ledger import china_day
from backend.services.ledger_verify import verify
from backend.services.partners import REPLAY_KEY
from tests.conftest import Api, login, make_settings, make_staff, sign_up
from tests.test_rate_limits import (
    bind,
    days_ago,
    make_offer,
    make_partner,
    make_shop,
    reserve,
    send,
    signed_batch,
    trip,
)

REDIS_SERVER = shutil.which("redis-server") or next(
    (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if os.path.exists(p)), None)
needs_redis_server = pytest.mark.skipif(
    REDIS_SERVER is None and not os.environ.get("CI"),
    reason="needs redis-server on PATH (installed in CI, where this never skips)")


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, containing: str) -> list[str]:
        return [r.getMessage() for r in self.records if containing in r.getMessage()]


@pytest.fixture
def redis_log() -> Iterator[Captured]:
    """What the breaker and the limiter log (the ``backend`` loggers do not propagate to pytest)."""
    handler = Captured()
    loggers = [logging.getLogger("backend.extensions"), logging.getLogger("flask-limiter")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


# --- the circuit breaker, on a clock the test moves --------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refused() -> None:
    raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")


def test_the_breaker_fails_fast_for_a_cooldown_then_probes_once(redis_log: Captured) -> None:
    clock, opened = Clock(), []
    breaker = CircuitBreaker(5.0, clock=clock, on_open=lambda: opened.append(clock.now))
    calls: list[str] = []

    def ok() -> str:
        calls.append("ok")
        return "PONG"

    assert breaker.call(ok) == "PONG" and not breaker.is_open
    with pytest.raises(RedisConnectionError):
        breaker.call(_refused)
    assert breaker.is_open and opened == [1000.0]
    for _ in range(50):  # the cooldown: no call reaches Redis, every one fails at once
        with pytest.raises(RedisConnectionError, match="circuit open"):
            breaker.call(ok)
    assert calls == ["ok"]

    clock.now += 5.0
    with pytest.raises(RedisConnectionError, match="Connection refused"):  # the probe reaches Redis
        breaker.call(_refused)
    with pytest.raises(RedisConnectionError, match="circuit open"):       # a full cooldown again
        clock.now += 4.9
        breaker.call(ok)
    clock.now += 0.1
    assert breaker.call(ok) == "PONG" and not breaker.is_open
    assert breaker.call(ok) == "PONG"
    # One outage, one warning when it began and one when it ended; one outage counted.
    assert len(redis_log.messages("Redis is unreachable")) == 1
    assert len(redis_log.messages("reachable again")) == 1
    assert opened == [1000.0]


def test_only_one_call_probes_while_the_others_keep_failing_fast() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1.0, clock=clock)
    with pytest.raises(RedisConnectionError):
        breaker.call(_refused)
    clock.now += 1.0
    probing, release = threading.Event(), threading.Event()

    def slow_answer() -> str:
        probing.set()
        release.wait(5)
        return "PONG"

    results: list[Any] = []
    prober = threading.Thread(target=lambda: results.append(breaker.call(slow_answer)))
    prober.start()
    assert probing.wait(5)
    with pytest.raises(RedisConnectionError, match="circuit open"):
        breaker.call(lambda: "must not run")
    release.set()
    prober.join(5)
    assert results == ["PONG"] and not breaker.is_open


def test_with_a_probe_function_no_call_waits_for_the_probe() -> None:
    """The probe runs in the background: callers keep failing fast while it waits on Redis."""
    clock, answering, release = Clock(), threading.Event(), threading.Event()
    pings: list[str] = []

    def ping() -> str:
        pings.append("PING")
        answering.set()
        release.wait(5)
        return "PONG"

    breaker = CircuitBreaker(1.0, probe=ping, clock=clock)
    with pytest.raises(RedisConnectionError):
        breaker.call(_refused)
    clock.now += 1.0
    for _ in range(3):  # the first of these starts the probe; none of them waits for it
        with pytest.raises(RedisConnectionError, match="circuit open"):
            breaker.call(lambda: "must not run")
    assert answering.wait(5) and pings == ["PING"] and breaker.is_open
    release.set()
    deadline = time.monotonic() + 5
    while breaker.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not breaker.is_open and breaker.call(lambda: "PONG") == "PONG"


def test_an_error_reply_is_not_an_outage() -> None:
    breaker = CircuitBreaker(5.0, clock=Clock())

    def wrong_type() -> None:
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    with pytest.raises(ResponseError):
        breaker.call(wrong_type)
    assert not breaker.is_open


def test_a_client_on_a_dead_address_fails_fast_after_the_first_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = GuardedRedis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=1, socket_connect_timeout=1)
    client.breaker = CircuitBreaker(30.0)
    with pytest.raises(RedisConnectionError):
        client.ping()
    started = time.perf_counter()
    for call in (client.get, client.incr):
        with pytest.raises(RedisConnectionError, match="circuit open"):
            call("k")
    with pytest.raises(RedisConnectionError, match="circuit open"):
        client.pipeline().incr("a").expire("a", 10).execute()
    with pytest.raises(RedisConnectionError, match="circuit open"):
        client.register_script("return 1")()
    assert time.perf_counter() - started < 0.1


def test_a_silent_server_costs_one_timeout_not_one_per_call() -> None:
    """A server that accepts and never answers (frozen, or a black hole): the first call waits its
    timeout, the rest fail at once."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        client = GuardedRedis.from_url(f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                                       socket_timeout=0.3, socket_connect_timeout=0.3)
        client.breaker = CircuitBreaker(30.0)
        started = time.perf_counter()
        with pytest.raises(redis.exceptions.TimeoutError):
            client.get("k")
        assert time.perf_counter() - started >= 0.25
        started = time.perf_counter()
        for _ in range(20):
            with pytest.raises(RedisConnectionError):
                client.get("k")
        assert time.perf_counter() - started < 0.1


# --- the replay guard: Redis first, the database the truth ------------------------------------------


@pytest.fixture
def world(app: Flask, api: Api, staff: dict[str, Api]) -> dict[str, Any]:
    person = sign_up(api, "rider", region="430602")
    bus = make_partner(staff["operator1"])
    bind(app, person, bus, "card-1")
    return {"person": person, "bus": bus}


def test_a_replay_is_refused_by_the_cache_and_by_the_database(app: Flask, client: Any,
                                                              world: dict[str, Any]) -> None:
    request = signed_batch(world["bus"], [trip("t1", "card-1", days_ago(3))])
    assert send(client, request).status_code == 200
    signature = request[1]["X-Signature"]
    cache = app.extensions["redis_store"]
    assert cache.get(REPLAY_KEY + signature) == str(world["bus"]["id"])
    assert 0 < cache.ttl(REPLAY_KEY + signature) <= 301   # until the timestamp goes stale

    with app.app_context():  # the cache alone refuses it
        db.session.execute(delete(PartnerNonce))
        db.session.commit()
    assert send(client, request).get_json()["error"] == "replayed"

    request = signed_batch(world["bus"], [trip("t2", "card-1", days_ago(2))])
    assert send(client, request).status_code == 200
    cache.delete(REPLAY_KEY + request[1]["X-Signature"])        # the cache forgot (flushed, restarted)
    refused = send(client, request)
    assert (refused.status_code, refused.get_json()["error"]) == (401, "replayed")


def test_a_failed_request_may_be_sent_again(app: Flask, client: Any, world: dict[str, Any]) -> None:
    """A request that fails writes nothing, its nonce included; the cache must not refuse its retry."""
    request = signed_batch(world["bus"], [{"external_id": "x"}] * 1001)   # over the batch size: 422
    first = send(client, request)
    assert first.status_code == 422
    assert app.extensions["redis_store"].exists(REPLAY_KEY + request[1]["X-Signature"]) == 0
    assert send(client, request).status_code == 422                       # not 401 replayed


def test_with_redis_unreachable_the_database_refuses_replays(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(make_settings(database_url, tmp_path, redis_url=f"redis://127.0.0.1:{port}/0",
                                   redis_cooldown=30.0))
    try:
        api = Api(app.test_client())
        make_staff(app, "operator1", "operator", scope="430600")
        bus = make_partner(login(api, "operator1"))
        person = sign_up(api, "rider", region="430602")
        bind(app, person, bus, "card-1")
        request = signed_batch(bus, [trip("t1", "card-1", days_ago(3))])
        client = app.test_client()
        answer = send(client, request)
        assert answer.status_code == 200 and answer.get_json()["results"][0]["status"] == "credited"
        again = send(client, request)
        assert (again.status_code, again.get_json()["error"]) == (401, "replayed")
        assert app.extensions["redis_store"].breaker.is_open
    finally:
        app.extensions["database"].engine.dispose()


# --- a real Redis that the test kills, freezes and restarts ------------------------------------------


class RedisServer:
    """A throwaway redis-server on a free port, no persistence: a restart is an empty Redis."""

    def __init__(self, directory: Path) -> None:
        if REDIS_SERVER is None:
            pytest.fail("redis-server is not installed (CI must have it: apt-get install redis-server)")
        self.directory = directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (the installed redis-server, our arguments)
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                if probe.ping():
                    break
            except redis.exceptions.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        probe.close()

    def kill(self) -> None:
        """A crash: SIGKILL, everything it held is gone."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait(10)

    def freeze(self) -> None:
        """A hang: the port still accepts connections, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def inspect(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()


COOLDOWN = 0.5


@pytest.fixture
def live(database_url: str, tmp_path: Path, redis_server: RedisServer) -> Iterator[Flask]:
    app = create_app(make_settings(database_url, tmp_path, redis_url=redis_server.url, redis_cooldown=COOLDOWN))
    yield app
    app.extensions["database"].engine.dispose()


def _timed(call: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def _failed_logins(api: Api, username: str, times: int) -> list[int]:
    return [api.post("/api/v1/auth/token", {"username": username, "password": "not-the-password"}).status_code
            for _ in range(times)]


def _wait_until_ready(api: Api, seconds: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        answer = api.get("/readyz")
        if answer.status_code == 200 or time.monotonic() > deadline:
            return answer.get_json()
        time.sleep(COOLDOWN / 2)


def _wait_for_shared_limits(seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while limiter.on_fallback and time.monotonic() < deadline:
        limiter._answer_check()  # what a limited request asks: starts the probe when one is due
        time.sleep(COOLDOWN / 2)
    assert not limiter.on_fallback, "the rate limiter did not return to Redis"


@needs_redis_server
def test_redis_crashes_mid_run_and_comes_back_empty(live: Flask, redis_server: RedisServer,
                                                    redis_log: Captured) -> None:
    app, api, client = live, Api(live.test_client()), live.test_client()
    peek = redis_server.inspect()
    make_staff(app, "operator1", "operator", scope="430600")
    operator = login(api, "operator1")
    bus = make_partner(operator)
    person = sign_up(api, "rider", region="430602")
    bind(app, person, bus, "card-1")
    shop = make_shop(app, api, operator)
    offer = make_offer(shop, price=30)
    credited: dict[str, int] = {}

    def batch(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], tuple[bytes, dict[str, str]]]:
        request = signed_batch(bus, items)
        answer = send(client, request)
        assert answer.status_code == 200, answer.get_json()
        results = answer.get_json()["results"]
        for r in results:
            if r["status"] == "credited":
                assert r["external_id"] not in credited, "credited twice"
                credited[r["external_id"]] = r["points"]
        return results, request

    # 1. Redis up: everything goes through it.
    results, first_request = batch([trip("t1", "card-1", days_ago(4)), trip("t2", "card-1", days_ago(3))])
    assert [r["status"] for r in results] == ["credited", "credited"]
    assert peek.exists(REPLAY_KEY + first_request[1]["X-Signature"])
    assert _failed_logins(api, "victim", 6) == [401] * 5 + [429]
    assert peek.keys("*user:victim*"), "the login limit is counted in Redis"
    assert api.get("/readyz").status_code == 200

    # 2. Redis crashes.
    redis_server.kill()
    balance, seconds = _timed(lambda: person.get("/api/v1/me/balance"))
    assert balance.status_code == 200 and balance.get_json()["points"] == sum(credited.values())
    assert seconds < 2
    login(api, "rider")                                                    # logging in still works
    results, second_request = batch([trip("t3", "card-1", days_ago(2)),   # new: credited
                                     trip("t1", "card-1", days_ago(4)),   # again: a duplicate
                                     trip("u1", "stranger", days_ago(2))])  # unbound: rejected
    assert [r["status"] for r in results] == ["credited", "duplicate", "rejected"]
    for replay in (first_request, second_request):                         # the database refuses replays
        refused = send(client, replay)
        assert (refused.status_code, refused.get_json()["error"]) == (401, "replayed")
    reserved = reserve(person, offer["id"], "while-down")
    assert reserved.status_code == 201, reserved.get_json()
    again = reserve(person, offer["id"], "while-down")                     # a retry: the same hold
    assert again.status_code == 200 and again.get_json()["id"] == reserved.get_json()["id"]
    confirmed = shop.post("/api/v1/merchant/redemptions/confirm", {"code": reserved.get_json()["code"]})
    assert confirmed.status_code == 200 and confirmed.get_json()["status"] == "fulfilled"
    assert person.get("/api/v1/me/balance").get_json()["points"] == sum(credited.values()) - 30
    # Limits still hold, counted in this process.
    assert _failed_logins(api, "victim2", 6) == [401] * 5 + [429]
    assert limiter.on_fallback
    not_ready = api.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.get_json()["failed"] == ["redis"] and not_ready.get_json()["error"] == "not_ready"
    assert api.get("/metrics").status_code == 200
    with app.app_context():
        assert verify().breaches == []

    # 3. Redis is back, empty: caches and limits rebuild as they are used.
    redis_server.start()
    ready = _wait_until_ready(api)
    assert ready["status"] == "ready", ready
    results, third_request = batch([trip("t4", "card-1", days_ago(1))])
    assert [r["status"] for r in results] == ["credited"]
    assert peek.exists(REPLAY_KEY + third_request[1]["X-Signature"])       # the replay cache again
    assert send(client, third_request).get_json()["error"] == "replayed"
    assert send(client, second_request).get_json()["error"] == "replayed"  # not in the cache: the database
    # The limiter probes on its own schedule; counts made while it switches back are split between
    # this process and Redis (a failover's known slack), so the exact count is checked once it is back.
    _wait_for_shared_limits()
    assert _failed_logins(api, "victim3", 6) == [401] * 5 + [429]
    assert peek.keys("*user:victim3*") and not limiter.on_fallback        # shared limits again
    assert ready["checks"]["redis"]["rate_limits"] == "shared" or not limiter.on_fallback

    # Nothing doubled, nothing lost.
    assert person.get("/api/v1/me/balance").get_json()["points"] == sum(credited.values()) - 30
    with app.app_context():
        assert verify().breaches == []
        reductions = db.session.scalar(select(func.count()).select_from(Reduction))
        credits = db.session.scalar(select(func.count()).select_from(JournalEntry)
                                    .where(JournalEntry.idempotency_key.like("credit:%")))
    assert reductions == credits == len(credited) == 4
    assert len(redis_log.messages("Redis is unreachable")) == 1
    assert len(redis_log.messages("Redis is reachable again")) == 1


@needs_redis_server
def test_with_redis_killed_a_board_is_recounted_and_jobs_wait_for_their_lock(live: Flask,
                                                                            redis_server: RedisServer) -> None:
    """A region leaderboard read while Redis is down answers from the database, equal to a recount;
    the leaderboard rebuild job does not run without its lock (recorded as skipped); when Redis is
    back, empty, the job runs and the board is rebuilt in Redis, equal to the recount again."""
    app, api, client = live, Api(live.test_client()), live.test_client()
    make_staff(app, "operator1", "operator", scope="430600")
    bus = make_partner(login(api, "operator1"))
    names: dict[int, str] = {}
    for ref, username in (("card-1", "rider"), ("card-2", "walker")):
        person = sign_up(api, username, region="430602")
        bind(app, person, bus, ref)
        names[person.get("/api/v1/me").get_json()["id"]] = username.title()
    viewer = person
    morning = days_ago(2, hour=1)                              # 09:00 China time; the trips stay on its day
    day = china_day(morning)
    board = Board("region", "430600", Period.containing("week", day))

    def credit(*items: dict[str, Any]) -> None:
        answer = send(client, signed_batch(bus, list(items)))
        assert answer.status_code == 200, answer.get_json()
        assert [r["status"] for r in answer.get_json()["results"]] == ["credited"] * len(items)

    def shown() -> tuple[str, list[tuple[str, int]]]:
        answer = viewer.get("/api/v1/regions/430600/leaderboard", query_string={"date": day.isoformat()})
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        return body["source"], [(e["display_name"], e["grams"]) for e in body["entries"]]

    def recounted() -> list[tuple[str, int]]:
        with app.app_context():
            totals = leaderboards.recount(board)
        return [(names[rid], grams) for rid, grams in sorted(totals.items(), key=lambda item: (-item[1], item[0]))]

    spec = scheduler.find("rebuild_leaderboards")
    ran: list[dict[str, Any]] = []

    def rebuild() -> dict[str, Any]:
        ran.append(spec.func())
        return ran[-1]

    counted = replace(spec, func=rebuild)

    # 1. Redis up: the board is kept in Redis.
    credit(trip("t1", "card-1", morning), trip("t2", "card-2", morning + timedelta(hours=2), km="15"))
    assert shown()[1] == recounted() and [name for name, _ in recounted()] == ["Walker", "Rider"]
    assert shown() == ("cache", recounted())

    # 2. Redis crashes: the board is recounted from the database, the new trip included.
    redis_server.kill()
    credit(trip("t3", "card-1", morning + timedelta(hours=4), km="12"))
    source, entries = shown()
    assert source == "database" and entries == recounted() and [name for name, _ in entries] == ["Rider", "Walker"]
    at = utcnow().replace(microsecond=0)
    skipped = runner.run(app, counted, at)
    assert (skipped.outcome, skipped.reason, ran) == ("skipped", runner.REDIS_DOWN, [])
    with app.app_context():
        [row] = db.session.scalars(select(JobRun).where(JobRun.job_id == spec.id)).all()
        assert (row.outcome, row.started_at) == ("skipped", None) and "Redis is unreachable" in row.error

    # 3. Redis is back, empty: the job takes its lock and runs; the board is rebuilt, equal again.
    redis_server.start()
    assert _wait_until_ready(api)["status"] == "ready"
    done = runner.run(app, counted, at + timedelta(minutes=1))
    assert done.outcome == "ok" and len(ran) == 1 and ran[0]["redis_unreachable"] == 0 and ran[0]["boards"] > 0
    assert shown()[1] == recounted() == entries
    assert shown() == ("cache", entries) and redis_server.inspect().exists(board.key("meta"))


@needs_redis_server
def test_a_frozen_redis_costs_one_timeout_then_requests_fail_over_at_once(
        live: Flask, redis_server: RedisServer, redis_log: Captured) -> None:
    app, api, client = live, Api(live.test_client()), live.test_client()
    make_staff(app, "operator1", "operator", scope="430600")
    bus = make_partner(login(api, "operator1"))
    person = sign_up(api, "rider", region="430602")
    bind(app, person, bus, "card-1")
    assert send(client, signed_batch(bus, [trip("t1", "card-1", days_ago(4))])).status_code == 200

    redis_server.freeze()
    try:
        # The first request meets the silent server: its Redis calls time out once each (2 s).
        answer, first = _timed(lambda: send(client, signed_batch(bus, [trip("t2", "card-1", days_ago(3))])))
        assert answer.status_code == 200 and answer.get_json()["results"][0]["status"] == "credited"
        # Then the breaker and the limiter's fallback answer at once: no request waits for Redis.
        timings = []
        for i, day in enumerate((2, 1)):
            request = signed_batch(bus, [trip(f"t{3 + i}", "card-1", days_ago(day))])
            answer, seconds = _timed(lambda request=request: send(client, request))
            assert answer.status_code == 200 and answer.get_json()["results"][0]["status"] == "credited"
            timings.append(seconds)
        readiness, ready_seconds = _timed(lambda: api.get("/readyz"))
        assert readiness.status_code == 503 and readiness.get_json()["failed"] == ["redis"]
        assert max(timings) < 1.5 < first and ready_seconds < 1.0, (first, timings, ready_seconds)
    finally:
        redis_server.thaw()

    ready = _wait_until_ready(api)
    assert ready["status"] == "ready", ready
    assert send(client, signed_batch(bus, [trip("t5", "card-1", days_ago(5))])).status_code == 200
    assert person.get("/api/v1/me/balance").get_json()["points"] > 0
    with app.app_context():
        assert verify().breaches == []
        assert db.session.scalar(select(func.count()).select_from(Reduction)) == 5
    assert len(redis_log.messages("Redis is unreachable")) == 1
