"""One error envelope for every failure: ``{code, status, error, message, errors}``.

``code`` is the HTTP status, ``status`` its name, ``error`` a stable machine-readable slug,
``message`` a sentence for people, ``errors`` field errors nested by location
(``{"json": {"field": ["..."]}}``), empty when the failure is not about a field.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import psycopg
from flask import Flask, g, jsonify
from sqlalchemy.exc import DataError, IntegrityError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by services and views; rendered in the envelope by the handler below."""

    status_code = 400
    error = "bad_request"
    # Commit what the request did before failing (e.g. revoking a stolen token family).
    keep_changes = False

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if error is not None:
            self.error = error
        self.errors = errors or {}
        self.headers = headers or {}


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401
    error = "unauthorized"

    def __init__(self, message: str = "Authentication is required.", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="carbon-points"'})
        super().__init__(message, **kwargs)


class Forbidden(ApiError):
    status_code = 403
    error = "forbidden"


class NotFound(ApiError):
    status_code = 404
    error = "not_found"


class Conflict(ApiError):
    status_code = 409
    error = "conflict"


class Unprocessable(ApiError):
    status_code = 422
    error = "invalid"


def field_error(field: str, message: str, *, error: str = "invalid", location: str = "json") -> Unprocessable:
    """A 422 that names the field at fault, in the same shape as schema validation errors."""
    return Unprocessable(f"{field}: {message}", error=error, errors={location: {field: [message]}})


def envelope(
    status_code: int,
    message: str,
    *,
    error: str | None = None,
    errors: dict[str, Any] | None = None,
) -> dict[str, Any]:
    phrase = HTTPStatus(status_code).phrase if status_code in HTTPStatus._value2member_map_ else "Error"
    body = {
        "code": status_code,
        "status": phrase,
        "error": error or phrase.lower().replace(" ", "_").replace("-", "_"),
        "message": message,
        "errors": errors or {},
    }
    request_id = g.get("request_id") if g else None
    if request_id:
        body["request_id"] = request_id
    return body


def _http_error_slug(exc: HTTPException) -> str:
    return {
        400: "bad_request",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
        422: "invalid",
        429: "rate_limited",
    }.get(exc.code or 500, "error")


def render_http_exception(exc: HTTPException) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Render werkzeug/webargs/flask-limiter exceptions in the envelope."""
    code = exc.code or 500
    data = getattr(exc, "data", None) or {}
    errors = data.get("errors") or data.get("messages") or {}
    message = data.get("message") or exc.description or HTTPStatus(code).phrase
    if code == 422 and errors:
        message = "The request has invalid fields: " + _describe_fields(errors)
    elif code == 400 and "Invalid JSON body." in str(errors):
        message = "The request body is not valid JSON."
        errors = {"json": {"_body": ["is not valid JSON"]}}
    headers = dict(data.get("headers") or {})
    valid_methods = getattr(exc, "valid_methods", None)
    if code == 405 and valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    return envelope(code, str(message), error=_http_error_slug(exc), errors=errors), code, headers


def _describe_fields(errors: dict[str, Any]) -> str:
    names: list[str] = []
    for location, fields in errors.items():
        if isinstance(fields, dict):
            names.extend(f"{location}.{name}" for name in fields)
        else:
            names.append(location)
    return ", ".join(names) or "body"


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):  # type: ignore[no-untyped-def]
        body = envelope(exc.status_code, exc.message, error=exc.error, errors=exc.errors)
        response = jsonify(body)
        response.status_code = exc.status_code
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(DataError)
    @app.errorhandler(psycopg.DataError)  # raised bare by the binary COPY of the bulk paths
    def _data(exc: DataError | psycopg.DataError):  # type: ignore[no-untyped-def]
        # A value the schemas let through but the database cannot hold (e.g. out of range).
        log.warning("value refused by the database: %s", getattr(exc, "orig", exc))
        body = envelope(422, "A value in the request is out of the range the platform stores.", error="out_of_range")
        return jsonify(body), 422

    @app.errorhandler(IntegrityError)
    def _constraint(exc: IntegrityError):  # type: ignore[no-untyped-def]
        # A constraint caught what a concurrent request changed between our check and our write.
        log.info("write refused by a database constraint: %s", exc.orig)
        body = envelope(409, "The change conflicts with another change made at the same time; try again.",
                        error="concurrent_change")
        return jsonify(body), 409

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        if isinstance(exc, HTTPException):
            body, code, headers = render_http_exception(exc)
            return jsonify(body), code, headers
        log.exception("unhandled error")
        body = envelope(500, "Something went wrong on our side; it has been logged.", error="internal")
        return jsonify(body), 500
