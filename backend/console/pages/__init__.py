"""The console's pages, one module per area; importing them attaches their routes to the blueprint."""

from __future__ import annotations

from flask import request

from backend.db import BIGINT_MAX
from backend.errors import field_error

PAGE_SIZE = 50


def before_arg() -> int | None:
    """``?before=ID``: the next page of a newest-first list (the services' keyset pagination)."""
    raw = request.args.get("before", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= BIGINT_MAX:
        raise field_error("before", "must be an id", location="query")
    return int(raw)


def text_arg(name: str, limit: int) -> str | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if len(raw) > limit:
        raise field_error(name, f"at most {limit} characters", location="query")
    return raw
