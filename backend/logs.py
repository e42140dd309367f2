"""Logging: readable lines in development, one JSON object per line in production.

A line carries the request id of the request that wrote it, so one request's lines can be found
together (clients may send ``X-Request-Id``; the answer always has it). Structured fields go in
``extra={"fields": {...}}``. Credentials never belong in a log; as a second line of defence the
formatters mask bearer tokens, JWTs and ``password=…``-style pairs in messages and tracebacks.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from flask import Flask, g, has_request_context

from backend.config import Settings

# Our loggers, and libraries whose warnings an operator needs (Redis fallback of rate limits).
LOGGERS = {"backend": None, "flask-limiter": logging.WARNING}

_SECRETS = (
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[redacted]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)\b(password|passwd|secret|api[_-]?key|access_token|refresh_token|token)"
                r"(\"?'?\s*[:=]\s*\"?'?)[^\s\"',;}&]+"), r"\1\2[redacted]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if has_request_context() and g.get("request_id"):
            entry["request_id"] = g.request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update((k, v) for k, v in fields.items() if k not in ("ts", "level", "logger", "message"))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Development lines: the message, then any structured fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        return line


def init_app(app: Flask, settings: Settings) -> None:
    root = logging.getLogger("backend")
    if getattr(root, "_carbon_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json else TextFormatter())
    for name, level in LOGGERS.items():
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level or (logging.INFO if settings.env != "testing" else logging.WARNING))
        logger.propagate = False
    root._carbon_configured = True  # type: ignore[attr-defined]
