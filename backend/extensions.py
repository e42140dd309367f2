"""Extension objects, created bare and bound to the app in ``create_app`` (no import-time work)."""

from __future__ import annotations

from typing import Any

import fakeredis
import redis
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import Api as _Api

from backend.errors import render_http_exception


class Api(_Api):
    """flask-smorest Api whose HTTP errors use the platform's one envelope."""

    def handle_http_exception(self, error):  # type: ignore[no-untyped-def]
        return render_http_exception(error)


class RedisStore:
    """Redis, or the in-process Redis-compatible store in the embedded mode.

    Only rebuildable state lives here (DESIGN invariant 8): counters, caches, locks, limits.
    """

    def __init__(self) -> None:
        self.client: redis.Redis | None = None

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        if url:
            self.client = redis.Redis.from_url(
                url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
            )
        else:
            self.client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        app.extensions["redis_store"] = self

    def __getattr__(self, name: str) -> Any:
        if self.client is None:
            raise RuntimeError("RedisStore.init_app was not called")
        return getattr(self.client, name)


api = Api()
store = RedisStore()
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
