"""Test fixtures.

Every test gets a database of its own, migrated to head: a copy of a migrated SQLite file by
default, or, with ``TEST_DATABASE_URL`` set (PostgreSQL), a database cloned from a migrated
template. ``TEST_REDIS_URL`` points the app at real Redis (its db is flushed for each test);
without it the in-process store is used.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from backend.app import create_app
from backend.config import Settings, load_settings
from backend.migrate import upgrade

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
SECRET = "test-secret-key-that-is-long-enough-0123456789"
PASSWORD = "correct-horse-battery"

on_postgres = pytest.mark.skipif(
    not (TEST_DATABASE_URL or "").startswith("postgres"), reason="needs PostgreSQL (TEST_DATABASE_URL)"
)


def _admin_url(url: str) -> Any:
    return make_url(url).set(drivername="postgresql+psycopg", database="postgres")


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """argon2id at its cheapest: production's cost (about 0.1 s a hash, by design) spent on every
    test user and login was most of the suite's time. Still argon2id, still verified."""
    from argon2 import PasswordHasher, profiles

    from backend.security import passwords

    production = passwords._hasher
    passwords._hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
    passwords._dummy_hash.cache_clear()
    yield
    passwords._hasher = production
    passwords._dummy_hash.cache_clear()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head once per session; each test starts from a copy of it."""
    if TEST_DATABASE_URL:
        name = f"carbon_tpl_{uuid.uuid4().hex[:8]}"
        admin = create_engine(_admin_url(TEST_DATABASE_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(TEST_DATABASE_URL).set(drivername="postgresql+psycopg", database=name)
        _migrate_and_install(url.render_as_string(hide_password=False), tmp_path_factory)
        yield name
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        _migrate_and_install(f"sqlite:///{path}", tmp_path_factory)
        yield str(path)


def _migrate_and_install(url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """What `carbon-points db upgrade` does: migrate, then install the built-in defaults."""
    from backend.bootstrap import install_reference_data

    upgrade(url)
    app = create_app(make_settings(url, tmp_path_factory.mktemp("bootstrap")))
    install_reference_data(app)
    app.extensions["database"].engine.dispose()


def clone_database(template: str, workdir: Path) -> tuple[str, Callable[[], None]]:
    """A fresh database copied from ``template`` (see ``template_db``): its URL, and how to drop it."""
    if TEST_DATABASE_URL:
        name = f"carbon_t_{uuid.uuid4().hex[:10]}"
        admin = create_engine(_admin_url(TEST_DATABASE_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        url = make_url(TEST_DATABASE_URL).set(drivername="postgresql+psycopg", database=name)

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        return url.render_as_string(hide_password=False), drop
    path = workdir / f"db-{uuid.uuid4().hex}.db"
    shutil.copy(template, path)
    return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)


@pytest.fixture
def database_url(template_db: str, tmp_path: Path) -> Iterator[str]:
    url, drop = clone_database(template_db, tmp_path)
    yield url
    drop()


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    env = {
        "CARBON_ENV": "testing",
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        "CARBON_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    if TEST_REDIS_URL:
        env["REDIS_URL"] = TEST_REDIS_URL
    return load_settings(env).with_overrides(overrides)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings for its app."""
    return {}


@pytest.fixture
def app(database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]) -> Iterator[Flask]:
    application = create_app(make_settings(database_url, tmp_path, **settings_overrides))
    if TEST_REDIS_URL:
        application.extensions["redis_store"].client.flushdb()
    from backend.extensions import limiter

    limiter.reset()
    yield application
    application.extensions["database"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Api:
    """A small client that remembers a bearer token and checks the error envelope."""

    client: FlaskClient
    token: str | None = None

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        merged = dict(headers or {})
        if self.token:
            merged.setdefault("Authorization", f"Bearer {self.token}")
        return merged

    def call(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None,
             **kwargs: Any) -> Any:
        response = self.client.open(path, method=method, json=json, headers=self._headers(headers), **kwargs)
        if response.status_code >= 400 and response.is_json:
            body = response.get_json()
            assert set(body) >= {"code", "status", "error", "message", "errors"}, body
            assert body["code"] == response.status_code
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.call("POST", path, json=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.call("PATCH", path, json=json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.call("PUT", path, json=json, **kw)

    def delete(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.call("DELETE", path, json=json, **kw)

    def as_token(self, token: str | None) -> Api:
        return Api(self.client, token)


@pytest.fixture
def api(client: FlaskClient) -> Api:
    return Api(client)


def login(api: Api, username: str, password: str = PASSWORD) -> Api:
    response = api.as_token(None).post("/api/v1/auth/token", {"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    return api.as_token(response.get_json()["access_token"])


def sign_up(api: Api, username: str, region: str = "430602", display_name: str | None = None) -> Api:
    response = api.as_token(None).post("/api/v1/residents", {
        "username": username, "password": PASSWORD, "display_name": display_name or username.title(),
        "region": region,
    })
    assert response.status_code == 201, response.get_json()
    return login(api, username)


def make_staff(app: Flask, username: str, *roles: str, scope: str | None = None) -> None:
    from backend.db import db
    from backend.services import users

    with app.app_context():
        users.create_staff_user(username, PASSWORD, list(roles), scope_region=scope, actor=None)
        db.session.commit()


@pytest.fixture
def staff(app: Flask, api: Api) -> dict[str, Api]:
    """Logged-in staff: a province admin, a Yueyang operator, two Yueyang auditors."""
    make_staff(app, "admin1", "admin")
    make_staff(app, "operator1", "operator", scope="430600")
    make_staff(app, "auditor1", "auditor", scope="430600")
    make_staff(app, "auditor2", "auditor", scope="430600")
    return {name: login(api, name) for name in ("admin1", "operator1", "auditor1", "auditor2")}


@pytest.fixture
def resident(api: Api) -> Api:
    return sign_up(api, "lihua")


def run_together(target: Any, calls: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*args)`` for every call in its own thread, all released at the same instant;
    return the results (or the exceptions raised) in call order. For concurrency tests."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, args: tuple[Any, ...]) -> None:
        barrier.wait()
        try:
            results[index] = target(*args)
        except Exception as exc:  # returned for the test to inspect
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, args)) for i, args in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
