"""The application factory."""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Request, Response, current_app, g, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from backend import errors, logs
from backend.config import ConfigError, Settings, load_settings
from backend.db import BIGINT_MAX, db
from backend.extensions import Api, limiter, store
from backend.methodology.registry import load_registry
from backend.security.crypto import SecretBox, validate_fernet_keys

API_VERSION = "v1"


def create_app(config: Settings | None = None) -> Flask:
    """Build the app from ``config`` (default: the environment). Nothing runs at import time."""
    settings = config if config is not None else load_settings()
    problem = validate_fernet_keys(settings.encryption_keys)
    if problem:
        raise ConfigError(problem)

    app = Flask(__name__, instance_path=str(settings.instance_path.resolve()))
    app.url_map.converters["int"] = BoundedIntConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        DATABASE_URL=settings.database_url,
        DATABASE_PREPARED_STATEMENTS=settings.database_prepared_statements,
        REDIS_URL=settings.redis_url,
        TESTING=settings.env == "testing",
        MAX_CONTENT_LENGTH=4 * 1024 * 1024,
        API_TITLE="Carbon inclusion points platform",
        API_VERSION=API_VERSION,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/api/docs-assets/",
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_KEY_PREFIX="carbon:rl",
        # Redis unreachable: count in this process instead of failing the request (DESIGN §3.8).
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True,
    )
    app.json = JSONProvider(app)
    app.session_interface = ConsoleOnlySessions()
    app.extensions["settings"] = settings
    app.extensions["secret_box"] = SecretBox(settings.secret_key, settings.encryption_keys)
    app.extensions["methodologies"] = load_registry(settings.methodologies)
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies)  # type: ignore[method-assign]

    logs.init_app(app, settings)
    errors.init_app(app)
    db.init_app(app)
    store.init_app(app)
    limiter.init_app(app)
    api = Api(app, spec_kwargs={"info": {"description": _API_DESCRIPTION}})
    app.extensions["smorest_api"] = api

    from backend import console
    from backend.api import register_blueprints
    from backend.services import governance, id_cache, version_cache
    governance.init_app(app)
    version_cache.init_app(app)
    id_cache.init_app(app)
    register_blueprints(api)
    app.register_blueprint(_docs_assets())
    console.init_app(app, settings)  # before the unit of work wraps every view
    _install_request_hooks(app)
    _wrap_views_in_unit_of_work(app)
    return app


class BoundedIntConverter(IntegerConverter):
    """``<int:…>`` path segments are ids: 1 to the BIGINT maximum. Anything else is a 404 like any
    id that does not exist, never an overflow in the database."""

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min", 1)
        kwargs.setdefault("max", BIGINT_MAX)
        super().__init__(url_map, *args, **kwargs)


class ConsoleOnlySessions(SecureCookieSessionInterface):
    """Only the console keeps a Flask session (signed cookie, path ``SESSION_COOKIE_PATH``, set by
    ``backend.console``). The API is stateless (bearer tokens): for it no cookie is read, signed or
    set; Flask's default would build a signing serializer on every request for a cookie nobody sends."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        path = self.get_cookie_path(app)
        if path == "/" or not request.path.startswith(path):
            return None  # Flask then uses its NullSession, which refuses writes
        return super().open_session(app, request)


class JSONProvider(DefaultJSONProvider):
    """ISO 8601 dates (Flask's default is the HTTP date format), Decimal as text, UTF-8 as is."""

    ensure_ascii = False
    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, datetime | date):
            return o.isoformat()
        if isinstance(o, Decimal):
            return str(o)
        return DefaultJSONProvider.default(o)


def _docs_assets() -> Blueprint:
    """Swagger UI's files from a pinned package, so the docs page needs no CDN (intranets)."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    assert spec is not None and spec.submodule_search_locations, "flask-swagger-ui is not installed"
    folder = Path(spec.submodule_search_locations[0]) / "dist"
    return Blueprint("docs_assets", __name__, static_folder=str(folder), static_url_path="/api/docs-assets")


def _install_request_hooks(app: Flask) -> None:
    @app.before_request
    def _request_id() -> None:
        supplied = request.headers.get("X-Request-Id", "")
        valid = 0 < len(supplied) <= 64 and supplied.replace("-", "").isalnum()
        g.request_id = supplied if valid else secrets.token_hex(8)

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def _wrap_views_in_unit_of_work(app: Flask) -> None:
    """Commit at the request boundary: services flush, the view's outcome decides.

    A response under 400 commits; anything else (an error response or an exception) rolls back,
    so a failed request leaves nothing half-written.
    """
    for endpoint, view in list(app.view_functions.items()):
        if endpoint == "static":
            continue
        app.view_functions[endpoint] = _unit_of_work(view)


def _unit_of_work(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            rv = view(*args, **kwargs)
        except errors.ApiError as exc:
            if db.session_started():
                db.session.commit() if exc.keep_changes else db.session.rollback()
            raise
        except BaseException:
            if db.session_started():
                db.session.rollback()
            raise
        if not db.session_started():
            return rv
        response = current_app.make_response(rv)
        if response.status_code < 400:
            # A constraint refusing the commit answers 409 through the one handler in errors.py;
            # the teardown rolls the session back.
            db.session.commit()
        else:
            db.session.rollback()
        return response

    return wrapper


_API_DESCRIPTION = """
Carbon inclusion (碳普惠) points platform. Residents, households and online communities earn points
for verified low-carbon behaviour; partners report activities with HMAC-signed batches; merchants
redeem points; auditors govern methodologies and rules.

Authentication: `POST /api/v1/auth/token` returns a short-lived bearer token. Send it as
`Authorization: Bearer <token>`. Partners sign requests instead (see the partner section).

Every error has one shape: `{"code", "status", "error", "message", "errors"}`.
"""
