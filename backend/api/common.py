"""Schemas and helpers shared by the blueprints: cursor pagination, the error shape."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import flask_smorest
import marshmallow as ma
from marshmallow import validate
from webargs.flaskparser import FlaskParser

from backend.db import BIGINT_MAX
from backend.errors import field_error

# A JSON escape that decodes to NUL or to half of a surrogate pair: only then is a body walked.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
UNSTORABLE = "must not contain a NUL character or half of a UTF-16 surrogate pair"


def unstorable_text(value: Any, path: str = "") -> str | None:
    """The path (``a.3.b``) of the first key or string holding a NUL (PostgreSQL cannot store it)
    or a lone surrogate (UTF-8 cannot encode it; JSON's ``\\ud800`` escape makes one), or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return path or "_body"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "_body"
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and unstorable_text(key) is not None:
            return where.encode("utf-8", "replace").decode("utf-8")
        found = unstorable_text(item, where)
        if found is not None:
            return found
    return None


class StrictParser(FlaskParser):
    """Unknown query parameters are refused like unknown body fields: a typo'd filter must not
    silently return everything. Text the platform could not store or send back (a NUL, a lone
    surrogate) is refused naming its field, and a body nested past Python's recursion limit is
    invalid JSON, before any schema sees them."""

    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": ma.RAISE,
                                   "querystring": ma.RAISE}

    def _raw_load_json(self, req: Any) -> Any:
        try:
            data = super()._raw_load_json(req)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", "(the body)", 0) from None  # "" would read as no body
        if _SUSPECT_ESCAPE.search(req.get_data(cache=True)):
            where = unstorable_text(data)
            if where is not None:
                raise ma.ValidationError({where: [UNSTORABLE]})
        return data

    def load_querystring(self, req: Any, schema: ma.Schema) -> Any:
        self._refuse_nul(req.args)
        return super().load_querystring(req, schema)

    def load_form(self, req: Any, schema: ma.Schema) -> Any:
        self._refuse_nul(req.form)
        return super().load_form(req, schema)

    def load_headers(self, req: Any, schema: ma.Schema) -> Any:
        for name in schema.fields:
            key = schema.fields[name].data_key or name
            if "\x00" in req.headers.get(key, ""):
                raise ma.ValidationError({key: [UNSTORABLE]})
        return super().load_headers(req, schema)

    @staticmethod
    def _refuse_nul(values: Any) -> None:
        for key, value in values.items(multi=True):
            if "\x00" in key or "\x00" in value:
                raise ma.ValidationError({key.replace("\x00", "\\0"): [UNSTORABLE]})


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
