"""Every endpoint × every role: allowed, or 401/403 — from an explicit table, not from the code.

A new endpoint fails ``test_every_endpoint_is_in_the_matrix`` until someone decides here who may
call it; the matrix is the reviewable statement of the platform's access policy.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask

from tests.conftest import Api, login, make_staff, sign_up
from tests.partner_client import partner_call

ANON, RES, SHOP, PARTNER = "anonymous", "resident", "merchant_staff", "partner"
OP, AUD, ADM = "operator", "auditor", "admin"
ROLES = (ANON, RES, SHOP, OP, AUD, ADM, PARTNER)
PUBLIC = frozenset(ROLES)
READERS = frozenset({OP, AUD, ADM})
MANAGERS = frozenset({OP, ADM})
ADMIN = frozenset({ADM})
RESIDENT = frozenset({RES})
PEOPLE = frozenset({RES, SHOP, OP, AUD, ADM})
AUTHORS = frozenset({OP, AUD})
AUDITORS = frozenset({AUD})
V = "/api/v1/admin/methodologies/<string:methodology_id>/versions"
R = "/api/v1/admin/rules/versions"

MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/api/openapi.json"): PUBLIC,
    ("GET", "/api/docs"): PUBLIC,
    ("GET", "/api/docs-assets/<path:filename>"): PUBLIC,
    ("GET", "/static/<path:filename>"): PUBLIC,
    ("GET", "/api/v1/regions"): PUBLIC,
    ("POST", "/api/v1/residents"): PUBLIC,
    ("POST", "/api/v1/auth/token"): PUBLIC,
    ("POST", "/api/v1/auth/refresh"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): PUBLIC,
    ("GET", "/api/v1/me"): RESIDENT,
    ("PATCH", "/api/v1/me"): RESIDENT,
    ("DELETE", "/api/v1/me"): RESIDENT,
    ("GET", "/api/v1/me/export"): RESIDENT,
    ("POST", "/api/v1/me/password"): PEOPLE,
    ("POST", "/api/v1/households"): RESIDENT,
    ("POST", "/api/v1/households/join"): RESIDENT,
    ("GET", "/api/v1/households/<int:household_id>"): RESIDENT,
    ("POST", "/api/v1/households/<int:household_id>/invite-code"): RESIDENT,
    ("POST", "/api/v1/households/<int:household_id>/transfer"): RESIDENT,
    ("POST", "/api/v1/households/<int:household_id>/leave"): RESIDENT,
    ("DELETE", "/api/v1/households/<int:household_id>/members/<int:resident_id>"): RESIDENT,
    ("GET", "/api/v1/communities"): RESIDENT,
    ("POST", "/api/v1/communities"): RESIDENT,
    ("GET", "/api/v1/communities/<int:community_id>"): RESIDENT,
    ("POST", "/api/v1/communities/<int:community_id>/join"): RESIDENT,
    ("POST", "/api/v1/communities/<int:community_id>/leave"): RESIDENT,
    ("GET", "/api/v1/enterprises"): RESIDENT,
    ("POST", "/api/v1/enterprises"): RESIDENT,
    ("GET", "/api/v1/enterprises/<int:enterprise_id>"): RESIDENT,
    ("GET", "/api/v1/merchant/me"): frozenset({SHOP}),
    ("GET", "/api/v1/admin/projects"): READERS,
    ("POST", "/api/v1/admin/projects"): MANAGERS,
    ("POST", "/api/v1/admin/projects/<int:project_id>/close"): MANAGERS,
    ("GET", "/api/v1/projects"): PUBLIC,
    ("GET", "/api/v1/projects/<int:project_id>"): PUBLIC,
    ("GET", "/api/v1/me/donations"): RESIDENT,
    ("POST", "/api/v1/me/donations"): RESIDENT,
    ("POST", "/api/v1/admin/settlements"): MANAGERS,
    ("GET", "/api/v1/admin/settlements"): READERS,
    ("GET", "/api/v1/admin/settlements/<int:statement_id>"): READERS,
    ("GET", "/api/v1/admin/settlements/<int:statement_id>/csv"): READERS,
    ("POST", "/api/v1/admin/settlements/<int:statement_id>/paid"): MANAGERS,
    ("GET", "/api/v1/admin/liability"): READERS,
    ("GET", "/api/v1/merchant/statements"): frozenset({SHOP}),
    ("GET", "/api/v1/merchant/statements/<int:statement_id>"): frozenset({SHOP}),
    ("GET", "/api/v1/merchant/statements/<int:statement_id>/csv"): frozenset({SHOP}),
    ("GET", "/api/v1/admin/rights"): READERS,
    ("POST", "/api/v1/admin/rights"): MANAGERS,
    ("POST", "/api/v1/admin/rights/<int:right_id>/withdraw"): MANAGERS,
    ("GET", "/api/v1/rights"): RESIDENT,
    ("GET", "/api/v1/me/level"): RESIDENT,
    ("POST", "/api/v1/me/rights/<int:right_id>/claim"): RESIDENT,
    ("GET", "/api/v1/me/rights"): RESIDENT,
    ("POST", "/api/v1/partner/rights/check"): frozenset({PARTNER}),
    ("POST", "/api/v1/partner/rights/consume"): frozenset({PARTNER}),
    ("GET", "/api/v1/offers"): PUBLIC,
    ("GET", "/api/v1/offers/<int:offer_id>"): PUBLIC,
    ("GET", "/api/v1/merchant/offers"): frozenset({SHOP}),
    ("POST", "/api/v1/merchant/offers"): frozenset({SHOP}),
    ("PATCH", "/api/v1/merchant/offers/<int:offer_id>"): frozenset({SHOP}),
    ("GET", "/api/v1/merchant/redemptions"): frozenset({SHOP}),
    ("POST", "/api/v1/merchant/redemptions/confirm"): frozenset({SHOP}),
    ("GET", "/api/v1/me/redemptions"): RESIDENT,
    ("POST", "/api/v1/me/redemptions"): RESIDENT,
    ("GET", "/api/v1/me/redemptions/<int:redemption_id>"): RESIDENT,
    ("POST", "/api/v1/me/redemptions/<int:redemption_id>/cancel"): RESIDENT,
    ("GET", "/api/v1/partner/me"): frozenset({PARTNER}),
    ("GET", "/api/v1/admin/partners"): READERS,
    ("POST", "/api/v1/admin/partners"): MANAGERS,
    ("GET", "/api/v1/admin/partners/<int:partner_id>"): READERS,
    ("PATCH", "/api/v1/admin/partners/<int:partner_id>"): MANAGERS,
    ("POST", "/api/v1/admin/partners/<int:partner_id>/rotate"): MANAGERS,
    ("POST", "/api/v1/admin/partners/<int:partner_id>/disable"): MANAGERS,
    ("POST", "/api/v1/admin/partners/<int:partner_id>/enable"): MANAGERS,
    ("GET", "/api/v1/admin/merchants"): READERS,
    ("POST", "/api/v1/admin/merchants"): MANAGERS,
    ("GET", "/api/v1/admin/merchants/<int:merchant_id>"): READERS,
    ("GET", "/api/v1/admin/merchants/<int:merchant_id>/staff"): READERS,
    ("POST", "/api/v1/admin/merchants/<int:merchant_id>/staff"): MANAGERS,
    ("POST", "/api/v1/admin/merchants/<int:merchant_id>/disable"): MANAGERS,
    ("POST", "/api/v1/admin/merchants/<int:merchant_id>/enable"): MANAGERS,
    ("GET", "/api/v1/admin/enterprises"): READERS,
    ("POST", "/api/v1/admin/enterprises/<int:enterprise_id>/approve"): MANAGERS,
    ("POST", "/api/v1/admin/enterprises/<int:enterprise_id>/reject"): MANAGERS,
    ("POST", "/api/v1/admin/enterprises/<int:enterprise_id>/suspend"): MANAGERS,
    ("GET", "/api/v1/admin/users"): ADMIN,
    ("POST", "/api/v1/admin/users"): ADMIN,
    ("GET", "/api/v1/admin/users/<int:user_id>"): ADMIN,
    ("PUT", "/api/v1/admin/users/<int:user_id>/roles"): ADMIN,
    ("POST", "/api/v1/admin/users/<int:user_id>/disable"): ADMIN,
    ("POST", "/api/v1/admin/users/<int:user_id>/enable"): ADMIN,
    ("POST", "/api/v1/admin/regions"): ADMIN,
    ("GET", "/api/v1/admin/audit-log"): READERS,
    ("GET", "/api/v1/admin/audit-log/verify"): READERS,
    ("GET", "/api/v1/public/methodologies"): PUBLIC,
    ("GET", "/api/v1/admin/methodologies"): READERS,
    ("GET", V): READERS,
    ("POST", V): AUTHORS,
    ("GET", f"{V}/<int:version>"): READERS,
    ("PATCH", f"{V}/<int:version>"): AUTHORS,
    ("GET", f"{V}/<int:version>/diff"): READERS,
    ("POST", f"{V}/<int:version>/submit"): AUTHORS,
    ("POST", f"{V}/<int:version>/approve"): AUDITORS,
    ("POST", f"{V}/<int:version>/reject"): AUDITORS,
    ("POST", f"{V}/<int:version>/retire"): AUDITORS,
    ("POST", f"{V}/<int:version>/simulate"): AUTHORS,
    ("GET", R): READERS,
    ("POST", R): AUTHORS,
    ("GET", f"{R}/<int:version>"): READERS,
    ("PATCH", f"{R}/<int:version>"): AUTHORS,
    ("GET", f"{R}/<int:version>/diff"): READERS,
    ("POST", f"{R}/<int:version>/submit"): AUTHORS,
    ("POST", f"{R}/<int:version>/approve"): AUDITORS,
    ("POST", f"{R}/<int:version>/reject"): AUDITORS,
    ("POST", f"{R}/<int:version>/retire"): AUDITORS,
    ("POST", f"{R}/<int:version>/simulate"): AUTHORS,
    ("GET", "/api/v1/public/rules"): PUBLIC,
    ("GET", "/api/v1/me/balance"): RESIDENT,
    ("GET", "/api/v1/me/ledger"): RESIDENT,
    ("GET", "/api/v1/me/reductions"): RESIDENT,
    ("GET", "/api/v1/me/expiring"): RESIDENT,
    ("POST", "/api/v1/admin/reductions/<int:reduction_id>/reverse"): AUDITORS,
    ("GET", "/api/v1/admin/ledger/verify"): READERS,
    ("POST", "/api/v1/partner/activities"): frozenset({PARTNER}),
    ("POST", "/api/v1/admin/partners/<int:partner_id>/trust"): MANAGERS,
    ("GET", "/api/v1/me/bindings"): RESIDENT,
    ("POST", "/api/v1/me/bindings"): RESIDENT,
    ("DELETE", "/api/v1/me/bindings/<int:binding_id>"): RESIDENT,
    ("GET", "/api/v1/me/activities"): RESIDENT,
    ("POST", "/api/v1/me/activities"): RESIDENT,
    ("GET", "/api/v1/admin/review-queue"): READERS,
    ("POST", "/api/v1/admin/review-queue/<int:activity_id>/approve"): AUDITORS,
    ("POST", "/api/v1/admin/review-queue/<int:activity_id>/reject"): AUDITORS,
    ("GET", "/api/v1/admin/fraud-signals"): READERS,
    ("POST", "/api/v1/admin/fraud-signals/<int:signal_id>/resolve"): AUDITORS,
    # Running it (#7): jobs and alerts, statistics, leaderboards and badges, health and metrics.
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,  # unless METRICS_TOKEN is set: keep /metrics on the internal network
    ("GET", "/api/v1/admin/jobs"): ADMIN,
    ("GET", "/api/v1/admin/jobs/runs"): ADMIN,
    ("POST", "/api/v1/admin/jobs/<string:job_id>/run"): ADMIN,
    ("GET", "/api/v1/admin/alerts"): frozenset({AUD, ADM}),
    ("GET", "/api/v1/admin/alerts/<int:alert_id>"): frozenset({AUD, ADM}),
    ("POST", "/api/v1/admin/alerts/<int:alert_id>/acknowledge"): ADMIN,
    ("GET", "/api/v1/admin/stats/daily"): READERS,
    ("GET", "/api/v1/communities/<int:community_id>/leaderboard"): frozenset({RES, OP, AUD, ADM}),
    ("GET", "/api/v1/regions/<string:code>/leaderboard"): frozenset({RES, OP, AUD, ADM}),
    ("GET", "/api/v1/me/badges"): RESIDENT,
    # Carbon markets and bank linkage (#8).
    ("GET", "/api/v1/admin/market/available"): READERS,
    ("GET", "/api/v1/admin/market/batches"): READERS,
    ("POST", "/api/v1/admin/market/batches"): MANAGERS,
    ("GET", "/api/v1/admin/market/batches/<int:batch_id>"): READERS,
    ("GET", "/api/v1/admin/market/batches/<int:batch_id>/reductions"): READERS,
    ("GET", "/api/v1/admin/market/batches/<int:batch_id>/export.csv"): READERS,
    ("GET", "/api/v1/admin/market/batches/<int:batch_id>/export.json"): READERS,
    ("POST", "/api/v1/admin/market/batches/<int:batch_id>/issue"): READERS,
    ("POST", "/api/v1/admin/market/batches/<int:batch_id>/discard"): MANAGERS,
    ("POST", "/api/v1/admin/market/batches/<int:batch_id>/sales"): MANAGERS,
    ("POST", "/api/v1/admin/market/batches/<int:batch_id>/retirements"): MANAGERS,
    ("POST", "/api/v1/admin/market/batches/<int:batch_id>/replace"): AUDITORS,
    ("GET", "/api/v1/admin/market/exclusions"): READERS,
    ("POST", "/api/v1/admin/market/exclusions"): AUTHORS,
    ("POST", "/api/v1/admin/market/exclusions/<int:exclusion_id>/lift"): AUDITORS,
    ("GET", "/api/v1/public/keys"): PUBLIC,
    ("GET", "/api/v1/public/certificates/<string:token>"): PUBLIC,
    ("GET", "/certificates/<string:token>"): PUBLIC,
    ("GET", "/api/v1/bank-partners"): RESIDENT,
    ("GET", "/api/v1/me/bank-shares"): RESIDENT,
    ("POST", "/api/v1/me/bank-shares"): RESIDENT,
    ("GET", "/api/v1/me/bank-shares/<int:share_id>"): RESIDENT,
    ("DELETE", "/api/v1/me/bank-shares/<int:share_id>"): RESIDENT,
    ("GET", "/api/v1/admin/bank-partners"): READERS,
    ("POST", "/api/v1/admin/bank-partners"): MANAGERS,
    ("POST", "/api/v1/admin/bank-partners/<int:partner_id>/disable"): MANAGERS,
    ("GET", "/api/v1/partner/bank-shares/<int:share_id>"): frozenset({PARTNER}),
    ("POST", "/api/v1/partner/bank-shares/verify"): frozenset({PARTNER}),
    # Reports and public statistics (#8.2): staff read the reports of their region; anyone the aggregates.
    ("GET", "/api/v1/admin/reports"): READERS,
    ("GET", "/api/v1/admin/reports.csv"): READERS,
    ("GET", "/api/v1/public/stats"): PUBLIC,
}

# The web console (#8): the same role sets as the API endpoints each page calls. Signed in with the
# console's own login (a session cookie, not a bearer token); everyone else is sent to log in.
CV = "/console/methodologies/<string:subject>/versions/<int:version>"
CR = "/console/rules/versions/<int:version>"
CONSOLE: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/console/login"): PUBLIC,
    ("POST", "/console/login"): PUBLIC,
    ("POST", "/console/logout"): PUBLIC,
    ("POST", "/console/lang"): PUBLIC,
    ("GET", "/console/"): READERS,
    ("GET", "/console/versions"): READERS,
    ("GET", CV): READERS,
    ("POST", f"{CV}/simulate"): AUTHORS,
    ("POST", f"{CV}/submit"): AUTHORS,
    ("POST", f"{CV}/approve"): AUDITORS,
    ("POST", f"{CV}/reject"): AUDITORS,
    ("GET", CR): READERS,
    ("POST", f"{CR}/simulate"): AUTHORS,
    ("POST", f"{CR}/submit"): AUTHORS,
    ("POST", f"{CR}/approve"): AUDITORS,
    ("POST", f"{CR}/reject"): AUDITORS,
    ("GET", "/console/review"): READERS,
    ("POST", "/console/review/<int:activity_id>/approve"): AUDITORS,
    ("POST", "/console/review/<int:activity_id>/reject"): AUDITORS,
    ("POST", "/console/signals/<int:signal_id>/resolve"): AUDITORS,
    ("GET", "/console/audit"): READERS,
    ("GET", "/console/partners"): READERS,
    ("GET", "/console/merchants"): READERS,
    ("GET", "/console/projects"): READERS,
    ("GET", "/console/ledger"): READERS,
    ("POST", "/console/ledger/verify"): ADMIN,
}

# The refusals that mean "not you": anything else (404, 409, 422, an object-level 403) is an answer.
DENIALS = {"token_missing", "role_required", "signature_missing", "not_a_resident"}


def _endpoints(app: Flask) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def test_every_endpoint_is_in_the_matrix(app: Flask) -> None:
    endpoints = _endpoints(app)
    listed = set(MATRIX) | set(CONSOLE)
    assert set(MATRIX) & set(CONSOLE) == set()
    assert endpoints - listed == set(), "add these endpoints to MATRIX (or CONSOLE) with the roles allowed"
    assert listed - endpoints == set(), "these MATRIX rows match no endpoint"


def _concrete(rule: str) -> str:
    path = re.sub(r"<int:\w+>", "1", rule)
    path = re.sub(r"<string:\w+>", "travel", path)
    return re.sub(r"<path:\w+>", "index.css", path)


@pytest.fixture
def callers(app: Flask, api: Api, staff: dict[str, Api]) -> dict[str, object]:
    make_staff(app, "till", "merchant_staff")
    # Partner 1 is what the admin rows act on (rotate, disable): the calling partner is another one.
    staff["operator1"].post("/api/v1/admin/partners", {
        "name": "Matrix target", "kind": "transit", "activity_types": ["bus_ride"], "region": "430600"})
    partner = staff["operator1"].post("/api/v1/admin/partners", {
        "name": "Matrix partner", "kind": "transit", "activity_types": ["bus_ride"], "region": "430600",
    }).get_json()
    return {
        ANON: api.as_token(None),
        RES: sign_up(api, "matrix-resident"),
        SHOP: login(api, "till"),
        OP: staff["operator1"],
        AUD: staff["auditor1"],
        ADM: staff["admin1"],
        PARTNER: partner,
    }


def test_each_role_is_allowed_or_refused_as_the_matrix_says(app: Flask, callers: dict[str, object]) -> None:
    wrong: list[str] = []
    client = app.test_client()
    for (method, rule), allowed in sorted(MATRIX.items()):
        path = _concrete(rule)
        for role in ROLES:
            if role == PARTNER:
                partner = callers[PARTNER]
                response = partner_call(client, partner["key_id"], partner["secret"], method, path, {})  # type: ignore[index]
            else:
                caller: Api = callers[role]  # type: ignore[assignment]
                response = caller.call(method, path, json={})
            body = response.get_json(silent=True) or {}
            denied = (response.status_code in (401, 403) and body.get("error") in DENIALS) or (
                response.status_code == 401 and body.get("error") in {"unknown_key", "signature_invalid"}
            )
            if role in allowed and denied:
                wrong.append(f"{role} refused on {method} {rule}: {response.status_code} {body.get('error')}")
            if role not in allowed:
                expected = 401 if role in (ANON, PARTNER) or rule.startswith("/api/v1/partner") else 403
                if response.status_code != expected or not denied:
                    wrong.append(f"{role} not refused on {method} {rule}: {response.status_code} {body.get('error')}")
    assert wrong == []


def test_console_pages_allow_or_refuse_as_the_console_matrix_says(app: Flask, callers: dict[str, object]) -> None:
    """Staff sign in through the console's form; residents and till staff are refused there and stay
    anonymous, like a partner (whose signature means nothing to the console). A refusal is a
    redirect to the login page (not signed in) or a 403 page naming the missing role; every POST
    carries its session's CSRF token, so what is tested is the role, not the token."""
    from tests.console_client import console, error_of

    people = {OP: "operator1", AUD: "auditor1", ADM: "admin1", RES: "matrix-resident", SHOP: "till"}
    views = {}
    for role in ROLES:
        view = console(app)
        if role in people:
            signed_in = view.login(people[role], "correct-horse-battery").status_code == 303
            assert signed_in == (role in (OP, AUD, ADM)), role
        views[role] = view
    partner = callers[PARTNER]
    headers = {"X-Key-Id": partner["key_id"], "X-Timestamp": "0", "X-Signature": "0" * 64}  # type: ignore[index]
    wrong: list[str] = []
    # Logging out last: it ends the session the other rows use.
    for (method, rule), allowed in sorted(CONSOLE.items(), key=lambda item: item[0][1] == "/console/logout"):
        path = _concrete(rule)
        for role in ROLES:
            view = views[role]
            if method == "GET":
                response = view.client.get(path, headers=headers if role == PARTNER else None)
            else:
                token = view.token("/console/" if role in (OP, AUD, ADM) else "/console/login")
                response = view.client.post(path, data={"csrf_token": token},
                                            headers=headers if role == PARTNER else None)
            to_login = response.status_code in (302, 303) and \
                response.headers.get("Location", "").startswith("/console/login")
            denied = to_login or (response.status_code == 403 and error_of(response) == "role_required")
            if role in allowed and denied and rule != "/console/logout":
                wrong.append(f"{role} refused on {method} {rule}: {response.status_code}")
            if role not in allowed:
                expected = 403 if role in (OP, AUD, ADM) else "login"
                if not denied or (expected == 403) != (response.status_code == 403):
                    wrong.append(f"{role} not refused on {method} {rule}: {response.status_code}")
            assert response.status_code < 500, (role, method, rule)
    assert wrong == []
