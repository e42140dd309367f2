"""Every request timed into the latency histogram, and (production) one JSON access-log line.

Hooked on Flask's ``request_started`` / ``request_finished`` signals, so the time covers the
before- and after-request hooks (rate limits, the unit of work's commit) and every answer,
errors included. The line names the Flask endpoint, never the query string, a header or a body:
no token, password or signature reaches the log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request, request_finished, request_started

from backend.observability import metrics

log = logging.getLogger("backend.access")


def instrument(app: Flask) -> None:
    """Time this app's requests (idempotent: the health blueprint calls it when registered)."""
    if app.extensions.get("observability.access"):
        return
    app.extensions["observability.access"] = True
    request_started.connect(_started, app, weak=False)
    request_finished.connect(_finished, app, weak=False)


def _started(sender: Flask, **_: Any) -> None:
    g._carbon_started = time.perf_counter()


def _finished(sender: Flask, response: Response, **_: Any) -> None:
    started = g.pop("_carbon_started", None)
    if started is None:
        return
    seconds = time.perf_counter() - started
    metrics.observe_request(request.endpoint, request.method, response.status_code, seconds)
    settings = sender.extensions.get("settings")
    if settings is not None and settings.access_log:
        log.log(logging.WARNING if response.status_code >= 500 else logging.INFO, "request",
                extra={"fields": access_fields(response, seconds)})


def access_fields(response: Response, seconds: float) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "endpoint": request.endpoint,
        "status": response.status_code,
        "duration_ms": round(seconds * 1000, 1),
        "request_id": g.get("request_id"),
        "remote_addr": request.remote_addr,
    }
    principal = g.get("principal")
    if principal is not None:
        fields["user_id"] = principal.user_id
    partner = g.get("partner")
    if partner is not None:
        fields["partner_id"] = partner.id
    return fields
