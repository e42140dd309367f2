"""Extension objects, created bare and bound to the app in ``create_app`` (no import-time work)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import fakeredis
import redis
from flask import Flask
from flask_limiter import Limiter as _Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import Api as _Api
from flask_wtf.csrf import CSRFProtect
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend.errors import render_http_exception

log = logging.getLogger(__name__)
T = TypeVar("T")
REDIS_TIMEOUT = 2  # seconds to connect or to answer: past that, Redis counts as down
# A stored value that is not UTF-8 reads as text with U+FFFD in it, never as an exception: every
# reader already validates what it reads and discards what is malformed.
ENCODING_ERRORS = "replace"


class Api(_Api):
    """flask-smorest Api whose HTTP errors use the platform's one envelope."""

    def handle_http_exception(self, error):  # type: ignore[no-untyped-def]
        return render_http_exception(error)


class CircuitBreaker:
    """Fail fast while Redis is known to be down, so a request does not wait out a timeout per call.

    Closed: calls go through. A connection failure or timeout opens it: every call then raises
    ``redis.exceptions.ConnectionError`` at once (callers already catch ``RedisError`` and fall
    back to the database). After ``cooldown`` seconds one probe goes to Redis: with a ``probe``
    function, in a background thread, so no request ever waits on a silent server again; without
    one, the next call is the trial. Success closes the breaker; failure opens it for another
    cooldown. One warning when an outage starts and one when it ends, however many calls failed.
    """

    def __init__(self, cooldown: float, *, probe: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic, on_open: Callable[[], None] | None = None) -> None:
        self.cooldown = cooldown
        self._probe = probe
        self._clock = clock
        self._on_open = on_open
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None: closed
        self._down_since = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        trial = self._admit()
        try:
            result = fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self._failed(exc)
            raise
        except RedisError:
            self._answered()  # an error reply: Redis is there
            raise
        except BaseException:
            if trial:
                with self._lock:
                    self._probing = False
            raise
        self._answered()
        return result

    def _admit(self) -> bool:
        """False: go ahead (closed). True: go ahead as the trial call. Otherwise raise."""
        if self._open_until is None:
            return False
        with self._lock:
            if self._open_until is None:
                return False
            wait = self._open_until - self._clock()
            if wait <= 0 and not self._probing:
                self._probing = True
                if self._probe is None:
                    return True
                threading.Thread(target=self._run_probe, name="redis-probe", daemon=True).start()
        raise RedisConnectionError(f"Redis is unavailable (circuit open; next try in {max(wait, 0):.1f} s)")

    def _run_probe(self) -> None:
        assert self._probe is not None
        try:
            self._probe()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self._failed(exc)
        except RedisError:
            self._answered()
        except BaseException:
            with self._lock:
                self._probing = False
            raise
        else:
            self._answered()

    def _answered(self) -> None:
        if self._open_until is None and not self._probing:
            return
        with self._lock:
            if self._open_until is not None:
                log.warning("Redis is reachable again after %.1f s; caches and limits rebuild as they are used",
                            self._clock() - self._down_since)
            self._open_until = None
            self._probing = False

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            now = self._clock()
            opened = self._open_until is None
            if opened:
                self._down_since = now
            self._open_until = now + self.cooldown
            self._probing = False
        if opened:
            log.warning("Redis is unreachable (%s): calls fail fast and the API answers from the database; "
                        "probing again every %.1f s", exc, self.cooldown)
            if self._on_open is not None:
                self._on_open()


class GuardedRedis(redis.Redis):
    """A redis-py client whose every round trip (commands, scripts, locks, pipelines) passes the
    breaker. Errors keep redis-py's types, so ``except RedisError`` stays the one contract."""

    breaker: CircuitBreaker

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self.breaker.call(super().execute_command, *args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> GuardedPipeline:
        pipe = GuardedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.breaker = self.breaker
        return pipe


class GuardedPipeline(redis.client.Pipeline):
    breaker: CircuitBreaker

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        return self.breaker.call(super().execute, raise_on_error)

    def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        return self.breaker.call(super().immediate_execute_command, *args, **options)


class RedisStore:
    """Redis, or the in-process Redis-compatible store in the embedded mode.

    Only rebuildable state lives here (DESIGN invariant 8): counters, caches, locks, limits. A real
    Redis sits behind a circuit breaker (see ``CircuitBreaker``); the in-process store cannot fail.
    """

    def __init__(self) -> None:
        self.client: redis.Redis | None = None
        self.breaker: CircuitBreaker | None = None

    def init_app(self, app: Flask) -> None:
        url = app.config.get("REDIS_URL")
        if url:
            settings = app.extensions.get("settings")
            client = GuardedRedis.from_url(url, decode_responses=True, encoding_errors=ENCODING_ERRORS,
                                           socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
            # The probe bypasses the breaker (redis.Redis's own execute_command).
            self.breaker = client.breaker = CircuitBreaker(
                settings.redis_cooldown if settings is not None else 5.0,
                probe=lambda: redis.Redis.execute_command(client, "PING"), on_open=_count_outage)
            self.client = client
        else:
            self.breaker = None
            self.client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True,
                                              encoding_errors=ENCODING_ERRORS)
        app.extensions["redis_store"] = self

    @property
    def embedded(self) -> bool:
        return self.breaker is None

    def __getattr__(self, name: str) -> Any:
        if self.client is None:
            raise RuntimeError("RedisStore.init_app was not called")
        return getattr(self.client, name)


def _count_outage() -> None:
    from backend.observability import metrics

    metrics.redis_outage()


class Limiter(_Limiter):
    """Flask-Limiter, made to survive Redis going away and coming back.

    Its own in-memory fallback (``RATELIMIT_IN_MEMORY_FALLBACK_ENABLED``) counts in this process
    while Redis is down, with the same limits. Added here: timeouts on its Redis connection
    (redis-py's default is to wait forever on a silent server); errors after the limit check (the
    failure-only deductions) logged instead of turning an answered request into a 500; and the
    "is Redis back?" check moved off the request: Flask-Limiter asks it inline (a frozen Redis would
    hold that request for the whole timeout) and backs off up to 32 s; here a background probe runs
    every ``redis_cooldown`` seconds and the inline question is answered from its last result.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("swallow_errors", True)
        super().__init__(*args, **kwargs)
        self._probe_every = 5.0
        self._next_probe = 0.0
        self._probing = False
        self._probe_lock = threading.Lock()
        self._real_check: Callable[[], bool] | None = None

    def init_app(self, app: Flask) -> None:
        # One Limiter object serves every app a process makes (tests make many): start each healthy.
        self._storage_dead = False
        self._next_probe = 0.0
        settings = app.extensions.get("settings")
        if settings is not None:
            self._probe_every = settings.redis_cooldown
        if str(app.config.get("RATELIMIT_STORAGE_URI", "")).startswith(("redis://", "rediss://")):
            options = app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {})
            options.setdefault("socket_timeout", REDIS_TIMEOUT)
            options.setdefault("socket_connect_timeout", REDIS_TIMEOUT)
        super().init_app(app)
        self._real_check = self._storage.check if self._storage is not None else None
        if self._storage is not None:
            self._storage.check = self._answer_check  # type: ignore[method-assign]

    @property
    def on_fallback(self) -> bool:
        """True while limits are counted in this process because Redis is unreachable."""
        return bool(self._storage_dead)

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        if self._storage_dead:
            self._answer_check()
        super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)

    def _answer_check(self) -> bool:
        """Is the storage back? From the last background probe; start the next one when it is due."""
        if not self._storage_dead:
            return True
        storage, check = self._storage, self._real_check
        now = time.monotonic()
        with self._probe_lock:
            if self._next_probe == 0.0:  # it has just failed over: the first probe waits a cooldown
                self._next_probe = now + self._probe_every
            elif now >= self._next_probe and not self._probing and check is not None:
                self._probing = True
                threading.Thread(target=self._probe, args=(storage, check), name="ratelimit-probe",
                                 daemon=True).start()
        return False

    def _probe(self, storage: Any, check: Callable[[], bool]) -> None:
        try:
            back = bool(check())
        except Exception:
            back = False
        with self._probe_lock:
            self._probing = False
            self._next_probe = time.monotonic() + self._probe_every
            if back and storage is self._storage and self._storage_dead:
                self._storage_dead = False
                self._next_probe = 0.0
                log.warning("rate-limit storage is reachable again: limits are shared across processes again")


api = Api()
store = RedisStore()
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
# CSRF tokens for the console's forms; checked by the console alone (the API takes no cookies).
csrf = CSRFProtect()
