"""One error envelope for everything: 404, 405, 413, 500, validation."""

from __future__ import annotations

from flask import Flask

from tests.conftest import Api


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
