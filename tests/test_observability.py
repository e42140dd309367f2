"""Observability (issue #7 point 6): Prometheus metrics at /metrics (request latency by endpoint,
activities by status, points issued, job outcomes), correct across gunicorn workers; /healthz and
/readyz; structured JSON logs with a request id and no secrets."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, select, text
from sqlalchemy.exc import OperationalError

from backend.app import create_app
from backend.config import ConfigError, load_settings
from backend.db import db, utcnow
from backend.logs import JsonFormatter, TextFormatter, redact
from backend.models import Partner, User
from backend.observability import metrics, record_job
from backend.observability.readiness import script_heads
from backend.services import ingest
from tests.conftest import SECRET, Api, make_settings, sign_up
from tests.test_rate_limits import bind, days_ago, make_partner, send, signed_batch, trip

ROOT = Path(__file__).resolve().parent.parent


def sample(exposition: str, name: str, **labels: str) -> float:
    """One sample's value in a text exposition (0 when absent: a counter not yet incremented)."""
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def scrape(client: FlaskClient, **headers: str) -> str:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=")   # the text exposition format
    return response.get_data(as_text=True)


# --- /metrics --------------------------------------------------------------------------------------


def test_request_latency_is_by_endpoint_method_and_status_class(client: FlaskClient) -> None:
    count = "carbon_http_request_duration_seconds_count"
    before = scrape(client)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    for path in ("/no/such/thing", "/another/random/path"):
        assert client.get(path).status_code == 404
    assert client.post("/api/v1/auth/token", json={}).status_code == 422
    after = scrape(client)

    def delta(**labels: str) -> float:
        return sample(after, count, **labels) - sample(before, count, **labels)

    assert delta(endpoint="health.Healthz", method="GET", status="2xx") == 3
    # Unknown paths share one label: a scanner cannot grow the number of series.
    assert delta(endpoint="unmatched", method="GET", status="4xx") == 2
    assert delta(endpoint="auth.Token", method="POST", status="4xx") == 1
    assert sample(after, "carbon_http_request_duration_seconds_bucket", endpoint="health.Healthz",
                  method="GET", status="2xx", le="+Inf") >= 3
    assert "/no/such/thing" not in after
    assert "process_resident_memory_bytes" in after   # one process: its CPU and memory too


def test_activities_by_status_and_points_issued(app: Flask, api: Api, client: FlaskClient,
                                                staff: dict[str, Api]) -> None:
    person = sign_up(api, "rider", region="430602")
    bus = make_partner(staff["operator1"])
    bind(app, person, bus, "card-1")
    before = scrape(client)
    answer = send(client, signed_batch(bus, [trip("t1", "card-1", days_ago(3)), trip("t2", "card-1", days_ago(2)),
                                             trip("t1", "card-1", days_ago(3)), trip("u1", "nobody", days_ago(2))]))
    results = answer.get_json()["results"]
    assert [r["status"] for r in results] == ["credited", "credited", "duplicate", "rejected"]
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("carbon_activities_total", source="partner", status="credited") == 2
    assert delta("carbon_activities_total", source="partner", status="duplicate") == 1
    assert delta("carbon_activities_total", source="partner", status="rejected") == 1
    assert delta("carbon_activities_total", source="partner", status="pending_review") == 0
    points = sum(r["points"] for r in results if r["status"] == "credited")
    assert points > 0 and delta("carbon_points_issued_total", source="partner") == points


def test_points_issued_by_a_review_approval_are_counted(app: Flask, api: Api, client: FlaskClient,
                                                        staff: dict[str, Api]) -> None:
    person = sign_up(api, "rider", region="430602")
    bus = make_partner(staff["operator1"])
    bind(app, person, bus, "card-1")
    staff["admin1"].post(f"/api/v1/admin/partners/{bus['id']}/trust", {"trust_level": "probation"})
    [held] = send(client, signed_batch(bus, [trip("t1", "card-1", days_ago(2))])).get_json()["results"]
    assert held["status"] == "pending_review"
    before = scrape(client)
    approved = staff["auditor1"].post(f"/api/v1/admin/review-queue/{held['activity_id']}/approve", {})
    assert approved.status_code == 200 and approved.get_json()["points"] > 0
    after = scrape(client)
    assert sample(after, "carbon_points_issued_total", source="review") - \
        sample(before, "carbon_points_issued_total", source="review") == approved.get_json()["points"]


def test_points_released_from_the_queue_are_counted(app: Flask, api: Api, client: FlaskClient,
                                                    staff: dict[str, Api], monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.jobs import points as point_jobs
    from backend.services import ledger
    from tests.test_ledger import _credit, _resident, _small_budget, _trip

    _small_budget(app, staff, api, 52)
    _, rid = _resident(api)
    later = utcnow() + timedelta(seconds=1)
    results = _credit(app, *[_trip(app, rid, km="5", at=later + timedelta(minutes=i)) for i in range(4)])
    assert [r.status for r in results] == ["credited", "credited", "queued", "queued"]   # 2 × 26 fit in 52
    queued = sum(r.points for r in results if r.status == "queued")
    next_month = utcnow().replace(day=1) + timedelta(days=40)
    monkeypatch.setattr(ledger, "utcnow", lambda: next_month)
    before = scrape(client)
    with app.app_context():
        assert point_jobs.release_queued() == {"released": 2, "still_queued": 0}
        assert sample(scrape(client), "carbon_points_issued_total", source="release") == \
            sample(before, "carbon_points_issued_total", source="release")      # not before the commit
        db.session.commit()
    assert sample(scrape(client), "carbon_points_issued_total", source="release") - \
        sample(before, "carbon_points_issued_total", source="release") == queued


def test_a_batch_that_rolls_back_counts_nothing(app: Flask, api: Api, client: FlaskClient,
                                                staff: dict[str, Api]) -> None:
    person = sign_up(api, "rider", region="430602")
    bus = make_partner(staff["operator1"])
    bind(app, person, bus, "card-1")
    assert send(client, signed_batch(bus, [trip("t0", "card-1", days_ago(4))])).status_code == 200
    before = scrape(client)
    with app.app_context():
        partner = db.session.get(Partner, bus["id"])
        results = ingest.ingest(ingest.Reporter("partner", partner=partner), [trip("t1", "card-1", days_ago(3))])
        assert results[0]["status"] == "credited"
        with db.session.begin_nested():   # a savepoint released is not a commit
            pass
        db.session.rollback()
    middle = scrape(client)
    assert sample(middle, "carbon_activities_total", source="partner", status="credited") == \
        sample(before, "carbon_activities_total", source="partner", status="credited")
    with app.app_context():
        partner = db.session.get(Partner, bus["id"])
        results = ingest.ingest(ingest.Reporter("partner", partner=partner), [trip("t1", "card-1", days_ago(3))])
        with db.session.begin_nested():   # a savepoint that ends decides nothing
            pass
        db.session.commit()
    after = scrape(client)
    assert sample(after, "carbon_activities_total", source="partner", status="credited") == \
        sample(before, "carbon_activities_total", source="partner", status="credited") + 1
    assert sample(after, "carbon_points_issued_total", source="partner") == \
        sample(before, "carbon_points_issued_total", source="partner") + results[0]["points"]


def test_counts_wait_for_the_outer_commit(app: Flask) -> None:
    applied: list[str] = []
    with app.app_context():
        metrics.on_commit(lambda: applied.append("rolled back"))
        with db.session.begin_nested():
            db.session.execute(text("SELECT 1"))
        assert applied == []
        db.session.rollback()
        metrics.on_commit(lambda: applied.append("committed"))
        with db.session.begin_nested():
            db.session.execute(text("SELECT 1"))
        assert applied == []
        db.session.commit()
        db.session.commit()
    assert applied == ["committed"]
    metrics.on_commit(lambda: applied.append("no unit of work"))   # outside an app context: at once
    assert applied == ["committed", "no unit of work"]


def test_job_outcomes(client: FlaskClient) -> None:
    before = scrape(client)
    record_job("observability_test_job", "success", 0.25)
    record_job("observability_test_job", "failure", 1.5)
    record_job("observability_test_job", "skipped", 0.0)
    after = scrape(client)
    for outcome in ("success", "failure", "skipped"):
        assert sample(after, "carbon_job_runs_total", job="observability_test_job", outcome=outcome) == \
            sample(before, "carbon_job_runs_total", job="observability_test_job", outcome=outcome) + 1
    assert sample(after, "carbon_job_duration_seconds_count", job="observability_test_job") == \
        sample(before, "carbon_job_duration_seconds_count", job="observability_test_job") + 3
    last = sample(after, "carbon_job_last_success_timestamp_seconds", job="observability_test_job")
    assert abs(last - time.time()) < 60
    with pytest.raises(ValueError, match="outcome"):
        record_job("observability_test_job", "exploded", 1.0)
    with pytest.raises(ValueError, match="job_id"):
        record_job("", "success", 1.0)
    with pytest.raises(ValueError, match="source"):
        metrics.points_issued(5, "lottery")


def test_the_metrics_token(database_url: str, tmp_path: Path) -> None:
    token = "m" * 40
    app = create_app(make_settings(database_url, tmp_path, metrics_token=token))
    try:
        client = app.test_client()
        missing = client.get("/metrics")
        assert (missing.status_code, missing.get_json()["error"]) == (401, "token_missing")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 40})
        assert (wrong.status_code, wrong.get_json()["error"]) == (401, "token_invalid")
        assert "carbon_http_request_duration_seconds" in scrape(client, Authorization=f"Bearer {token}")
        assert client.get("/healthz").status_code == 200     # health stays open
    finally:
        app.extensions["database"].engine.dispose()


# --- /healthz and /readyz --------------------------------------------------------------------------


def test_ready_when_database_redis_and_migrations_are(client: FlaskClient) -> None:
    started = time.perf_counter()
    answer = client.get("/readyz")
    assert time.perf_counter() - started < 1.0
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == \
        {"database": True, "redis": True, "migrations": True}
    assert body["checks"]["migrations"]["current"] == body["checks"]["migrations"]["head"] == sorted(script_heads())
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_not_ready_when_the_schema_is_not_at_head(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        db.session.execute(text("UPDATE alembic_version SET version_num = 'an_older_one'"))
        db.session.commit()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert (body["code"], body["error"], body["failed"]) == (503, "not_ready", ["migrations"])
    assert "migrations" in body["message"]
    assert body["checks"]["migrations"]["current"] == ["an_older_one"]


def test_not_ready_when_the_database_does_not_answer(app: Flask, client: FlaskClient,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable() -> Any:
        raise OperationalError("connect", {}, Exception('could not connect to "db.secret-host.internal"'))

    monkeypatch.setattr(app.extensions["database"].engine, "raw_connection", unreachable)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["failed"] == ["database", "migrations"]
    assert body["checks"]["database"]["detail"] == "unreachable: OperationalError"
    assert "secret-host" not in answer.get_data(as_text=True)   # unauthenticated: no internals


@pytest.mark.parametrize(("required", "status", "state"), [(True, 503, "not_ready"), (False, 200, "degraded")])
def test_redis_down_is_not_ready_unless_the_operator_says_otherwise(
        database_url: str, tmp_path: Path, required: bool, status: int, state: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(make_settings(database_url, tmp_path, redis_url=f"redis://127.0.0.1:{port}/0",
                                   readyz_requires_redis=required))
    try:
        answer = app.test_client().get("/readyz")
        assert answer.status_code == status
        body = answer.get_json()
        assert (body["error"] if status == 503 else body["status"]) == state
        assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True
    finally:
        app.extensions["database"].engine.dispose()


# --- logs ------------------------------------------------------------------------------------------


@pytest.fixture
def access_lines() -> Iterator[list[dict[str, Any]]]:
    lines: list[dict[str, Any]] = []
    formatter = JsonFormatter()

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(formatter.format(record)))

    logger = logging.getLogger("backend.access")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize("settings_overrides", [{"access_log": True}])
def test_one_access_log_line_per_request(app: Flask, api: Api, client: FlaskClient,
                                         access_lines: list[dict[str, Any]], staff: dict[str, Api]) -> None:
    person = sign_up(api, "rider", region="430602")
    access_lines.clear()
    token = person.token
    response = client.get("/api/v1/me?token=also-secret", headers={"Authorization": f"Bearer {token}",
                                                                 "X-Request-Id": "req-abc-123"})
    assert response.status_code == 200
    assert len(access_lines) == 1
    line = access_lines[0]
    assert {k: line[k] for k in ("logger", "message", "method", "path", "endpoint", "status", "request_id")} == {
        "logger": "backend.access", "message": "request", "method": "GET", "path": "/api/v1/me",
        "endpoint": "residents.Me", "status": 200, "request_id": "req-abc-123"}
    with app.app_context():
        assert line["user_id"] == db.session.scalar(select(User.id).where(User.username == "rider"))
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    raw = json.dumps(line)
    assert token not in raw and "also-secret" not in raw

    bus = make_partner(staff["operator1"])
    access_lines.clear()
    send(client, signed_batch(bus, [trip("x", "nobody", days_ago(2))]))
    assert access_lines[0]["partner_id"] == bus["id"] and "user_id" not in access_lines[0]
    assert bus["secret"] not in json.dumps(access_lines)


def test_no_access_lines_unless_configured(client: FlaskClient, access_lines: list[dict[str, Any]]) -> None:
    client.get("/healthz")
    assert access_lines == []


def test_json_lines_carry_fields_and_mask_credentials(app: Flask) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    record = logging.LogRecord("backend.test", logging.WARNING, __file__, 1,
                               "login for %s with password=%s and header Authorization: Bearer %s", (
                                   "lihua", "hunter2", jwt), None)
    record.fields = {"user_id": 7, "level": "forged"}
    with app.test_request_context(headers={"X-Request-Id": "r-1"}):
        from flask import g

        g.request_id = "r-1"
        line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["user_id"] == 7 and line["request_id"] == "r-1"
    assert "hunter2" not in line["message"] and jwt not in line["message"]
    assert "password=[redacted]" in line["message"] and "Bearer [redacted]" in line["message"]
    assert redact("token: abc.def refresh_token=zzz") == "token: [redacted] refresh_token=[redacted]"
    text_line = TextFormatter().format(record)
    assert "user_id=7" in text_line and "hunter2" not in text_line


# --- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("METRICS_TOKEN", "too-short"),
    ("METRICS_TOKEN", "x" * 20 + " " + "y" * 20),
    ("PROMETHEUS_MULTIPROC_DIR", "/no/such/directory"),
    ("REDIS_COOLDOWN", "soon"),
    ("REDIS_COOLDOWN", "0"),
    ("REDIS_COOLDOWN", "nan"),
    ("ACCESS_LOG", "sometimes"),
    ("READYZ_REQUIRES_REDIS", "perhaps"),
])
def test_a_bad_observability_setting_stops_start_up_naming_it(tmp_path: Path, name: str, value: str) -> None:
    env = {"CARBON_ENV": "testing", "SECRET_KEY": SECRET, "CARBON_INSTANCE_PATH": str(tmp_path), name: value}
    with pytest.raises(ConfigError, match=name):
        load_settings(env)


def test_production_writes_the_access_log(tmp_path: Path) -> None:
    env = {"CARBON_ENV": "production", "SECRET_KEY": SECRET, "CARBON_INSTANCE_PATH": str(tmp_path),
           "DATABASE_URL": "postgresql://carbon@db/carbon", "REDIS_URL": "redis://redis:6379/0"}
    settings = load_settings(env)
    assert settings.access_log and settings.log_json and settings.readyz_requires_redis
    assert settings.metrics_token is None and settings.redis_cooldown == 5.0
    assert not load_settings({**env, "ACCESS_LOG": "false"}).access_log


# --- gunicorn: several workers, one set of numbers -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _workers(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads worker pids from /proc")
def test_metrics_add_up_across_gunicorn_workers(database_url: str, tmp_path: Path) -> None:
    port, directory = _free_port(), tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_4242.db").write_bytes(b"stale")      # a previous run's leftovers
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "CARBON_ENV": "development", "DATABASE_URL": database_url,
           "SECRET_KEY": SECRET, "CARBON_INSTANCE_PATH": str(tmp_path / "instance"), "RUN_SCHEDULER": "false",
           "PROMETHEUS_MULTIPROC_DIR": str(directory), "PORT": str(port), "WEB_WORKERS": "2", "WEB_THREADS": "1"}
    log_file = tmp_path / "gunicorn.log"
    with log_file.open("wb") as log:
        server = subprocess.Popen(  # noqa: S603 (our own gunicorn)
            [str(ROOT / ".venv/bin/gunicorn"), "-c", "python:backend.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
             "backend.wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(_workers(server.pid)) < 2 or _get_or_none(port) != 200:
            assert server.poll() is None and time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)
        assert not (directory / "counter_4242.db").exists()      # emptied at start

        def healthz_count() -> float:
            status, body = _get(port, "/metrics")
            assert status == 200, body
            return sample(body, "carbon_http_request_duration_seconds_count", endpoint="health.Healthz",
                          method="GET", status="2xx")

        before = healthz_count()
        for _ in range(40):
            assert _get(port, "/healthz")[0] == 200
        assert {healthz_count() - before for _ in range(6)} == {40}   # whichever worker answers

        first = _workers(server.pid)
        counted = _file_pids(directory) & first
        assert counted                                                # workers write files of their own
        for pid in first:     # every worker that counted exits; its counts must stay
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while not (len(_workers(server.pid)) == 2 and not _workers(server.pid) & first) or _get_or_none(port) != 200:
            assert server.poll() is None and time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.2)
        assert {healthz_count() - before for _ in range(6)} == {40}
        assert counted <= _file_pids(directory)                       # the dead workers' files, still summed
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def _file_pids(directory: Path) -> set[int]:
    return {int(f.stem.rsplit("_", 1)[1]) for f in directory.glob("*.db")}


def _get_or_none(port: int) -> int | None:
    try:
        return _get(port, "/readyz")[0]
    except OSError:
        return None


# --- the scheduler's metrics and the container's web role --------------------------------------------


def test_a_process_without_a_web_server_serves_its_own_metrics() -> None:
    """The scheduler's job outcomes live in its process: ``metrics.serve`` exposes them, with the
    same token rule as the web's /metrics."""
    token = "t" * 40
    server = metrics.serve(0, host="127.0.0.1", token=token)
    port = server.server_address[1]
    try:
        record_job("served_test_job", "success", 0.5)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                         headers={"Authorization": f"Bearer {token}"})
        body = urllib.request.urlopen(request, timeout=10).read().decode()  # noqa: S310 (http, built here)
        assert sample(body, "carbon_job_runs_total", job="served_test_job", outcome="success") >= 1
        with pytest.raises(urllib.error.HTTPError) as elsewhere:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/other", headers={
                "Authorization": f"Bearer {token}"}), timeout=10)
        assert elsewhere.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_the_containers_web_role_runs_gunicorn_with_the_metrics_settings(tmp_path: Path) -> None:
    """docker/entrypoint.sh's ``web``: gunicorn with backend/gunicorn_conf.py (workers' metrics summed
    at /metrics, our access log only), the worker and thread counts from the environment."""
    stub = tmp_path / "gunicorn"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "WEB_WORKERS": "3", "WEB_THREADS": "5"}
    out = subprocess.run(["/bin/sh", str(ROOT / "docker/entrypoint.sh"), "web", "--timeout", "60"],  # noqa: S603
                         env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["-c", "python:backend.gunicorn_conf"], out
    assert out[out.index("--workers") + 1] == "3" and out[out.index("--threads") + 1] == "5"
    assert "--access-logfile" not in out                          # one access line per request: ours
    assert out[out.index("--timeout") + 1] == "60" and out[-2] == "backend.wsgi:app"


@pytest.mark.skipif(not (os.environ.get("TEST_DATABASE_URL") or "").startswith("postgres"),
                    reason="the read-only pool is PostgreSQL's")
def test_not_ready_when_the_read_only_pool_cannot_connect_or_would_write(app: Flask, client: FlaskClient,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    database = app.extensions["database"]
    assert client.get("/readyz").get_json()["checks"]["database"]["detail"] == "reachable"

    def refused() -> Any:  # e.g. a pooler that does not accept the startup option
        raise OperationalError("connect", {}, Exception("unsupported startup parameter: options"))

    with monkeypatch.context() as patch:
        patch.setattr(database.read_only_engine, "raw_connection", refused)
        answer = client.get("/readyz")
        assert answer.status_code == 503 and answer.get_json()["failed"] == ["database"]
        assert answer.get_json()["checks"]["database"]["detail"] == "read-only pool unreachable: OperationalError"
    engine = database.read_only_engine  # a pooler that drops the option silently: writes would pass

    def writable(conn: Any, _record: Any) -> None:
        conn.execute("SET default_transaction_read_only = off")

    engine.dispose()
    event.listen(engine, "connect", writable)
    try:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert "accept writes" in answer.get_json()["checks"]["database"]["detail"]
    finally:
        event.remove(engine, "connect", writable)
        engine.dispose()
    assert client.get("/readyz").status_code == 200
