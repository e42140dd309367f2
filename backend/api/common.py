"""Schemas and helpers shared by the blueprints: cursor pagination, the error shape."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import flask_smorest
import marshmallow as ma
from marshmallow import validate
from webargs.flaskparser import FlaskParser

from backend.db import BIGINT_MAX
from backend.errors import field_error


class StrictParser(FlaskParser):
    """Unknown query parameters are refused like unknown body fields: a typo'd filter must not
    silently return everything."""

    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": ma.RAISE,
                                   "querystring": ma.RAISE}


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictParser()


ID_RANGE = validate.Range(min=1, max=BIGINT_MAX, error="must be an id between 1 and 2^63 - 1")

REGION_CODE = validate.Regexp(r"^\d{6}$", error="must be a six-digit GB/T 2260 region code")


class PeriodArgs(ma.Schema):
    """A region and a reporting period (``backend/services/periods.py``): reports and public statistics."""

    region = ma.fields.String(required=True, validate=REGION_CODE,
                              metadata={"description": "GB/T 2260 code: this region and every region below it"})
    period = ma.fields.String(load_default=None, validate=validate.Length(max=16), metadata={
        "description": "a month `2026-11`, a quarter `2026-Q4` or a year `2026`, China time; or give from and to"})
    from_ = ma.fields.String(data_key="from", load_default=None, validate=validate.Length(max=16),
                             metadata={"description": "first month `YYYY-MM` of a range (mid-term reporting)"})
    to = ma.fields.String(load_default=None, validate=validate.Length(max=16),
                          metadata={"description": "last month `YYYY-MM` of a range"})


class CursorArgs(ma.Schema):
    limit = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = ma.fields.String(load_default=None, validate=validate.Length(max=64))


def decode_cursor(cursor: str | None) -> int | None:
    """Cursors are opaque to clients; inside, the id to continue below."""
    if cursor is None:
        return None
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = value.partition(":")
        if prefix != "id" or not number.isdigit() or int(number) > BIGINT_MAX:
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise field_error("cursor", "is not a cursor this API returned", location="query") from None


def encode_cursor(key: int | None) -> str | None:
    if key is None:
        return None
    return base64.urlsafe_b64encode(f"id:{key}".encode()).decode().rstrip("=")


def page(items: list[Any], next_key: int | None) -> dict[str, Any]:
    return {"items": items, "next_cursor": encode_cursor(next_key)}


def page_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    return ma.Schema.from_dict(
        {
            "items": ma.fields.List(ma.fields.Nested(item_schema)),
            "next_cursor": ma.fields.String(allow_none=True),
        },
        name=name,
    )


class ReasonSchema(ma.Schema):
    reason = ma.fields.String(load_default=None, validate=validate.Length(max=500))



_KEY = [validate.Length(min=1, max=80), validate.Regexp(r"\s*\S", error="must not be blank")]
_KEY_DOC = {"description": "a retry with the same key returns what the first try made (200) instead of a new one"}


class IdempotencyHeaders(ma.Schema):
    idempotency_key = ma.fields.String(data_key="Idempotency-Key", load_default=None, validate=_KEY,
                                       metadata=_KEY_DOC)


class RequiredIdempotencyHeaders(ma.Schema):
    idempotency_key = ma.fields.String(data_key="Idempotency-Key", required=True, validate=_KEY, metadata=_KEY_DOC)
