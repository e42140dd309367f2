"""One error envelope for everything: 404, 405, 413, 500, validation."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from backend.api.common import UNSTORABLE
from tests.conftest import Api, sign_up


def test_404_and_405_use_the_envelope(api: Api) -> None:
    missing = api.get("/api/v1/nothing-here")
    assert (missing.status_code, missing.get_json()["error"]) == (404, "not_found")
    wrong_method = api.delete("/api/v1/regions")
    assert (wrong_method.status_code, wrong_method.get_json()["error"]) == (405, "method_not_allowed")
    assert "GET" in wrong_method.headers["Allow"]


def test_oversized_body_is_413(api: Api) -> None:
    response = api.client.post("/api/v1/residents", data=b"x" * (5 * 1024 * 1024), content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"


def test_unexpected_errors_are_500_in_the_envelope_without_details(app: Flask) -> None:
    @app.route("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == "internal" and "secret internals" not in body["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]


def test_a_value_the_binary_copy_refuses_is_422_not_500(app: Flask) -> None:
    """The bulk paths write with psycopg's COPY, whose errors are not SQLAlchemy's DataError."""
    import psycopg

    @app.route("/copy")
    def copy() -> None:
        raise psycopg.errors.CharacterNotInRepertoire('invalid byte sequence for encoding "UTF8": 0x00')

    response = app.test_client().get("/copy")
    assert (response.status_code, response.get_json()["error"]) == (422, "out_of_range")


def test_request_id_is_echoed_when_sane(api: Api) -> None:
    assert api.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    assert api.get("/healthz", headers={"X-Request-Id": "<script>"}).headers["X-Request-Id"] != "<script>"


def test_openapi_and_docs_are_served(api: Api) -> None:
    spec = api.get("/api/openapi.json").get_json()
    assert spec["info"]["title"] == "Carbon inclusion points platform"
    assert "bearerAuth" in spec["components"]["securitySchemes"]
    assert "/api/v1/residents" in spec["paths"]
    docs = api.get("/api/docs")
    assert docs.status_code == 200 and b"/api/docs-assets/swagger-ui-bundle.js" in docs.data
    assert api.get("/api/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_a_constraint_violation_that_escapes_is_409_not_500(app: Flask) -> None:
    from sqlalchemy import text

    from backend.db import db

    @app.route("/race")
    def race() -> None:
        db.session.execute(text("INSERT INTO regions (code, name, name_en, level) "
                                "VALUES ('430000', 'x', 'x', 'province')"))

    response = app.test_client().get("/race")
    assert (response.status_code, response.get_json()["error"]) == (409, "concurrent_change")


def test_ids_beyond_bigint_are_404_not_500(staff: dict[str, Api]) -> None:
    huge = 2**70
    assert staff["operator1"].get(f"/api/v1/admin/partners/{huge}").status_code == 404
    assert staff["operator1"].get(f"/api/v1/admin/partners/{2**63 - 1}").status_code == 404
    assert staff["operator1"].get("/api/v1/admin/partners/0").status_code == 404
    diff = staff["auditor1"].get(f"/api/v1/admin/methodologies/travel/versions/1/diff?against={huge}")
    assert diff.status_code == 422 and "against" in diff.get_json()["errors"]["query"]
    assert staff["auditor1"].get(f"/api/v1/admin/methodologies/travel/versions/{2**40}").status_code == 404
    too_far = staff["auditor1"].get(f"/api/v1/admin/methodologies/travel/versions/1/diff?against={2**40}")
    assert too_far.status_code == 404
    from backend.api.common import encode_cursor

    assert staff["operator1"].get(f"/api/v1/admin/partners?cursor={encode_cursor(huge)}").status_code == 422


_NEWCOMER = '{"username": "newcomer", "password": "long-enough-pw", "display_name": %s, "region": "430602"}'


def _raw(api: Api, path: str, body: str, token: str | None = None, **headers: str) -> object:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return api.client.post(path, data=body.encode(), content_type="application/json", headers=headers)


@pytest.mark.parametrize("escape", [r'"\ud800"', r'"li\udc00hua"', r'"a\u0000b"'])
def test_text_the_platform_cannot_store_is_refused_naming_its_field(api: Api, escape: str) -> None:
    """A NUL (PostgreSQL cannot store it) or half a surrogate pair (UTF-8 cannot encode it; JSON's
    escapes can make one) is a 422 naming the field, not a 500 from the database, the password
    hasher or the answer's own encoding (found by fuzzing on PostgreSQL)."""
    refused = _raw(api, "/api/v1/residents", _NEWCOMER % escape)
    assert refused.status_code == 422, refused.data
    assert refused.get_json()["errors"] == {"json": {"display_name": [UNSTORABLE]}}
    key = _raw(api, "/api/v1/residents", _NEWCOMER % ('"d", ' + escape + ': "1"'))
    assert key.status_code == 422 and key.get_json()["errors"]["json"] == {
        escape.strip('"').encode().decode("unicode_escape").encode("utf-8", "replace").decode(): [UNSTORABLE]}
    login = _raw(api, "/api/v1/auth/token", f'{{"username": "newcomer", "password": {escape}}}')
    assert login.status_code == 422 and "password" in login.get_json()["errors"]["json"]
    nested = _raw(api, "/api/v1/residents", f'{{"username": "x", "extra": {{"deeper": [1, {escape}]}}}}')
    assert nested.get_json()["errors"]["json"] == {"extra.deeper.1": [UNSTORABLE]}
    person = sign_up(api, "searcher")
    search = person.get("/api/v1/communities?q=a%00b")
    assert search.status_code == 422 and search.get_json()["errors"] == {"query": {"q": [UNSTORABLE]}}
    reserve = person.post("/api/v1/me/redemptions", {"offer_id": 1}, headers={"Idempotency-Key": "a\x00b"})
    assert reserve.status_code == 422 and "Idempotency-Key" in reserve.get_json()["errors"]["headers"]
    # A whole pair is one character (an emoji): welcome.
    assert _raw(api, "/api/v1/residents", _NEWCOMER % r'"\ud83c\udf33 newcomer"').status_code == 201


def test_a_body_nested_past_the_recursion_limit_is_bad_json(api: Api) -> None:
    for body in ("[" * 5000 + "]" * 5000, '{"a": ' * 3000 + "1" + "}" * 3000):
        for path in ("/api/v1/residents", "/api/v1/auth/token"):
            response = _raw(api, path, body)
            assert response.status_code == 400, (path, response.data[:200])
            assert response.get_json()["code"] == 400


def test_the_calendars_ends_and_giant_numbers_are_refused_naming_the_field(api: Api, staff: dict[str, Api]) -> None:
    """Dates at the calendar's ends overflow when converted to UTC or moved by a day, and a decimal
    exponent is written out in full; each used to be a 500 (or a gigabyte) found by fuzzing."""
    operator, auditor = staff["operator1"], staff["auditor1"]

    def refused(response: Any, field: str) -> None:
        assert response.status_code == 422, response.get_json()
        assert field in str(response.get_json()["errors"]), response.get_json()

    for day in ("0001-01-01", "9999-12-31"):
        refused(auditor.get(f"/api/v1/admin/stats/daily?to={day}"), "to")
        refused(auditor.get(f"/api/v1/admin/stats/daily?from={day}"), "from")
    for period in ("9999-12", "\uff12\uff10\uff12\uff16-11"):  # the last in full-width digits
        refused(operator.post("/api/v1/admin/settlements", {"period": period}), "period")
        refused(operator.get(f"/api/v1/admin/settlements?period={period}"), "period")
    draft = {"region": "430600", "parameters": {}, "effective_from": "9999-12-31T23:59:59-12:00"}
    refused(operator.post("/api/v1/admin/methodologies/travel/versions", draft), "effective_from")
    factors = operator.get("/api/v1/admin/methodologies/travel/versions/1").get_json()["parameters"]
    for giant in ("1E+999999999", "1E-999999999", "1." + "0" * 40):
        name = next(iter(factors))
        body = {"region": "430600", "parameters": {**factors, name: {**factors[name], "value": giant}}}
        response = operator.post("/api/v1/admin/methodologies/travel/versions", body)
        refused(response, name)
        assert "significant digits" in str(response.get_json()["errors"])
    for price in ("1E+400", "1e999999999"):
        refused(operator.post("/api/v1/admin/market/batches/1/sales",
                              {"buyer": "b", "price_yuan_per_tonne": price, "tonnes": 1}), "price_yuan_per_tonne")


def test_an_unknown_region_in_the_query_is_named_as_a_query_field(api: Api, staff: dict[str, Api]) -> None:
    for path in ("/api/v1/public/rules?region=999999", "/api/v1/public/methodologies?region=000000"):
        response = api.get(path)
        assert response.get_json()["errors"] == {"query": {"region": [f"unknown region code '{path[-6:]}'"]}}
    liability = staff["admin1"].get("/api/v1/admin/liability?region=000000").get_json()
    assert list(liability["errors"]) == ["query"]
