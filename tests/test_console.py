"""The web console through Flask's test client (issue #8 point 1): who may log in, CSRF, sessions,
each page for each role, four eyes and regional scope enforced by the services, bad input as
pages (never a 500), the language toggle, and the charts' and the diff's building blocks."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from backend.console import charts, diffview, formatting, i18n
from backend.db import db, utcnow
from tests.conftest import Api, make_staff, sign_up
from tests.console_client import (
    Console,
    audit_actions,
    china_today,
    console,
    error_of,
    held_activity,
    rolled_up_history,
    submitted_rules_version,
    submitted_version,
    version_status,
)

PAGES = ["/console/", "/console/versions", "/console/methodologies/travel/versions/1", "/console/rules/versions/1",
         "/console/review", "/console/audit", "/console/partners", "/console/merchants", "/console/projects",
         "/console/ledger"]
TEMPLATES = Path(__file__).resolve().parent.parent / "backend" / "templates" / "console"


@pytest.fixture
def people(app: Flask, staff: dict[str, Api]) -> dict[str, Api]:
    """The ``staff`` fixture's users (admin1, operator1 and auditor1/2 of Yueyang) and a Zhuzhou auditor."""
    make_staff(app, "zz-auditor", "auditor", scope="430200")
    return staff


def _text(response: Any) -> str:
    return response.get_data(as_text=True)


# --- logging in ------------------------------------------------------------------------------------


def test_staff_log_in_with_a_hardened_cookie_and_residents_and_merchant_staff_are_refused(
        app: Flask, api: Api, people: dict[str, Api]) -> None:
    sign_up(api, "lihua")
    make_staff(app, "till", "merchant_staff")
    for username, status in (("lihua", 403), ("till", 403)):
        view = console(app)
        refused = view.login(username)
        assert refused.status_code == status
        assert "operators, auditors and administrators" in _text(refused)
        assert view.get("/console/").status_code == 302  # still not logged in
    wrong = console(app).login("operator1", "not-the-password")
    assert wrong.status_code == 401 and "not correct" in _text(wrong)

    view = console(app)
    response = view.login("operator1")
    assert response.status_code == 303 and response.headers["Location"] == "/console/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("carbon_console=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie and "Expires=" in cookie
    home = view.get("/console/")
    assert home.status_code == 200 and "operator1" in _text(home)


@pytest.mark.parametrize("settings_overrides", [{"console_secure_cookie": True}])
def test_the_cookie_is_secure_when_configured(app: Flask, people: dict[str, Api]) -> None:
    response = console(app).login("auditor1")
    assert response.status_code == 303 and "; Secure" in response.headers["Set-Cookie"]


def test_production_makes_the_cookie_secure_by_default() -> None:
    from backend.config import load_settings

    env = {"CARBON_ENV": "production", "DATABASE_URL": "postgresql://x@db/carbon", "REDIS_URL": "redis://r:6379/0",
           "SECRET_KEY": "s" * 40}
    assert load_settings(env).console_secure_cookie is True
    assert load_settings({**env, "CONSOLE_SECURE_COOKIE": "false"}).console_secure_cookie is False
    assert load_settings({"CARBON_ENV": "testing", "SECRET_KEY": "s" * 40}).console_secure_cookie is False


def test_pages_ask_anonymous_visitors_to_log_in_and_come_back(app: Flask, people: dict[str, Api]) -> None:
    view = console(app)
    response = view.get("/console/versions?x=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/login?next=/console/versions?x%3D1"
    page = view.get(response.headers["Location"])
    assert "Please log in" in _text(page)
    token = csrf_token_of(view)
    back = view.client.post("/console/login", data={"username": "auditor1", "password": "correct-horse-battery",
                                                      "next": "/console/versions?x=1", "csrf_token": token})
    assert back.status_code == 303 and back.headers["Location"] == "/console/versions?x=1"
    # A "next" that leaves the console is ignored (no open redirect).
    other = console(app)
    evil = other.client.post("/console/login", data={"username": "auditor1", "password": "correct-horse-battery",
                                                      "next": "//evil.example/x", "csrf_token": other.token()})
    assert evil.headers["Location"] == "/console/"


def csrf_token_of(view: Console) -> str:
    return view.token()


def test_logging_out_ends_the_session_on_the_server(app: Flask, people: dict[str, Api]) -> None:
    view = console(app, "auditor1")
    stolen = view.client.get_cookie("carbon_console", path="/console")
    assert stolen is not None
    assert view.post("/console/logout").status_code == 303
    assert view.get("/console/").status_code == 302
    # A copy of the cookie taken before the logout no longer opens anything.
    thief = app.test_client()
    thief.set_cookie("carbon_console", stolen.value, path="/console")
    assert thief.get("/console/").status_code == 302


def test_disabling_the_account_ends_its_console_session(app: Flask, people: dict[str, Api]) -> None:
    from backend.models import User
    from backend.services import users

    view = console(app, "operator1")
    assert view.get("/console/").status_code == 200
    with app.app_context():
        admin = db.session.query(User).filter_by(username="admin1").one()
        users.set_active(db.session.query(User).filter_by(username="operator1").one(), False, actor=admin)
        db.session.commit()
    assert view.get("/console/").status_code == 302


@pytest.mark.parametrize("settings_overrides", [{"console_idle_timeout": 60}])
def test_an_idle_session_ends(app: Flask, people: dict[str, Api]) -> None:
    view = console(app, "operator1")
    assert view.get("/console/versions").status_code == 200
    with view.client.session_transaction("/console/") as session:
        assert session["uid"] and session["sid"]
        session["seen"] = int(time.time()) - 120
    response = view.get("/console/versions")
    assert response.status_code == 302
    page = view.get("/console/login")
    assert "session has ended" in _text(page)


@pytest.mark.parametrize("settings_overrides", [{"login_failures_per_user": "3 per minute"}])
def test_failed_logins_share_the_apis_budget(app: Flask, api: Api, people: dict[str, Api]) -> None:
    view = console(app)
    assert view.login("auditor1", "wrong").status_code == 401
    wrong = {"username": "Auditor1", "password": "wrong"}
    assert [api.post("/api/v1/auth/token", wrong).status_code for _ in range(2)] == [401, 401]
    blocked = view.login("auditor1", "wrong")  # the fourth failure, whichever door
    assert blocked.status_code == 429 and error_of(blocked) == "rate_limited"
    assert api.post("/api/v1/auth/token", wrong).status_code == 429
    assert console(app).login("auditor2").status_code == 303  # another user is not locked out


# --- CSRF ------------------------------------------------------------------------------------------


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(app: Flask, people: dict[str, Api]) -> None:
    number = submitted_version(app, "auditor1")
    view = console(app, "auditor2")
    path = f"/console/methodologies/travel/versions/{number}/approve"
    before = audit_actions(app)
    missing = view.post(path, token=None)
    assert missing.status_code == 400 and error_of(missing) == "csrf"
    assert "CSRF" in _text(missing) and "The CSRF token is missing." in _text(missing)
    forged = view.post(path, token="not-a-token")
    assert forged.status_code == 400 and "The CSRF token is invalid." in _text(forged)
    other_session = console(app, "auditor2").token("/console/")
    mismatch = view.post(path, token=other_session)
    assert mismatch.status_code == 400 and "do not match" in _text(mismatch)
    assert version_status(app, number) == "submitted" and audit_actions(app) == before
    # The login form itself is protected too (login CSRF).
    assert console(app).client.post("/console/login", data={"username": "auditor2",
                                                             "password": "correct-horse-battery"}).status_code == 400
    approved = view.post(path)
    assert approved.status_code == 303 and version_status(app, number) == "approved"


# --- pages and roles -------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["operator1", "auditor1", "admin1"])
def test_every_page_renders_for_each_console_role(app: Flask, people: dict[str, Api], username: str) -> None:
    view = console(app, username)
    for path in PAGES:
        response = view.get(path)
        assert response.status_code == 200, (path, _text(response)[:300])
        assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert response.headers["X-Frame-Options"] == "DENY"
        assert 'name="viewport"' in _text(response)


def test_auditors_decide_operators_read_and_admins_verify(app: Flask, api: Api, people: dict[str, Api]) -> None:
    number = submitted_version(app, "operator1")
    resident = sign_up(api, "lihua").get("/api/v1/me").get_json()["id"]
    activity = held_activity(app, resident)
    operator, auditor, admin = console(app, "operator1"), console(app, "auditor1"), console(app, "admin1")

    page = _text(operator.get(f"/console/methodologies/travel/versions/{number}"))
    assert "/approve" not in page  # no decision buttons for an operator ...
    refused = operator.post(f"/console/methodologies/travel/versions/{number}/approve")
    assert refused.status_code == 403 and error_of(refused) == "role_required"  # ... nor a way round them
    assert operator.post(f"/console/review/{activity}/approve").status_code == 403
    assert version_status(app, number) == "submitted"
    assert admin.post(f"/console/methodologies/travel/versions/{number}/reject", {"reason": "x"}).status_code == 403

    assert auditor.post("/console/ledger/verify").status_code == 403
    ran = admin.post("/console/ledger/verify")
    assert ran.status_code == 303 and "job.run" in audit_actions(app)
    ledger = _text(admin.get("/console/ledger"))
    assert "passed" in ledger


def test_four_eyes_the_author_is_refused_and_a_second_auditor_approves(app: Flask, people: dict[str, Api]) -> None:
    number = submitted_version(app, "auditor1")
    author, second = console(app, "auditor1"), console(app, "auditor2")
    path = f"/console/methodologies/travel/versions/{number}"

    refused = author.post(f"{path}/approve")
    assert refused.status_code == 403 and error_of(refused) == "own_version"
    assert "four-eyes" in _text(refused)  # the service's own message
    assert version_status(app, number) == "submitted"
    assert audit_actions(app)[-1] == "methodology.approve_refused"  # the refusal itself is kept

    approved = second.post(f"{path}/approve")
    assert approved.status_code == 303 and approved.headers["Location"] == path
    assert version_status(app, number) == "approved"
    assert audit_actions(app)[-1] == "methodology.approve"
    shown = _text(second.get(path))
    assert f"travel@{number} is approved." in shown
    assert second.post(f"{path}/approve").status_code == 409  # decided once


def test_reject_needs_a_reason_and_a_draft_is_submitted_by_its_author(app: Flask, people: dict[str, Api]) -> None:
    number = submitted_version(app, "operator1")
    auditor = console(app, "auditor2")
    path = f"/console/methodologies/travel/versions/{number}"
    blank = auditor.post(f"{path}/reject", {"reason": "   "})
    assert blank.status_code == 422 and error_of(blank) == "reason_required"
    assert version_status(app, number) == "submitted"
    assert auditor.post(f"{path}/reject", {"reason": "The fleet records are not attached."}).status_code == 303
    assert version_status(app, number) == "rejected"

    draft = submitted_version(app, "operator1", submit=False)
    assert console(app, "auditor2").post(f"/console/methodologies/travel/versions/{draft}/submit").status_code == 403
    assert console(app, "operator1").post(f"/console/methodologies/travel/versions/{draft}/submit").status_code == 303
    assert version_status(app, draft) == "submitted"


def test_regional_scope_comes_from_the_services(app: Flask, api: Api, people: dict[str, Api]) -> None:
    number = submitted_version(app, "admin1", region="430200")  # a Zhuzhou version
    yueyang = console(app, "auditor1")
    refused = yueyang.post(f"/console/methodologies/travel/versions/{number}/approve")
    assert refused.status_code == 403 and error_of(refused) == "out_of_scope"
    assert version_status(app, number) == "submitted"
    zhuzhou = console(app, "zz-auditor")
    assert zhuzhou.post(f"/console/methodologies/travel/versions/{number}/approve").status_code == 303

    resident = sign_up(api, "lihua").get("/api/v1/me").get_json()["id"]
    in_yueyang = held_activity(app, resident, region="430602")
    in_shifeng = held_activity(app, resident, region="430204", signal=False)
    queue = _text(yueyang.get("/console/review"))
    assert f'id="activity-{in_yueyang}"' in queue and f'id="activity-{in_shifeng}"' not in queue
    assert yueyang.post(f"/console/review/{in_shifeng}/reject", {"reason": "no"}).status_code == 403
    queue = _text(zhuzhou.get("/console/review"))
    assert f'id="activity-{in_shifeng}"' in queue and f'id="activity-{in_yueyang}"' not in queue


def test_the_review_queue_shows_evidence_findings_and_signals_and_credits_once(
        app: Flask, api: Api, people: dict[str, Api]) -> None:
    resident = sign_up(api, "lihua").get("/api/v1/me").get_json()["id"]
    activity = held_activity(app, resident)
    other = held_activity(app, resident, signal=False)
    auditor = console(app, "auditor1")
    page = _text(auditor.get("/console/review"))
    assert "steel" in page and "80" in page  # the evidence
    assert "heavy" in page.lower()  # the finding
    assert "15 h on the move on one day" in page  # the fraud signal
    assert "Unusually heavy drop-off" in page  # the finding and the reason for review, in words
    chinese = _text(console(app, "auditor1", headers={"Accept-Language": "zh-CN"}).get("/console/review"))
    assert "单次投放异常偏重" in chinese and "出行时长超出一天" in chinese
    approved = auditor.post(f"/console/review/{activity}/approve", {"note": "weighed at the kiosk"})
    assert approved.status_code == 303
    shown = _text(auditor.get("/console/review"))
    assert f"Activity {activity} is certified" in shown
    assert auditor.post(f"/console/review/{activity}/approve").status_code == 409
    assert auditor.post(f"/console/review/{other}/reject", {"reason": "The receipt is unreadable."}).status_code == 303
    assert "activity.approve" in audit_actions(app) and "activity.reject" in audit_actions(app)


def test_simulating_shows_the_result_and_writes_only_the_audit_note(app: Flask, api: Api,
                                                                   people: dict[str, Api]) -> None:
    from backend.services import activities

    resident = sign_up(api, "lihua").get("/api/v1/me").get_json()["id"]
    with app.app_context():
        activities.record_one(activity_type="bus_ride", occurred_at=utcnow() - timedelta(days=2), region="430602",
                              source="demo", resident_id=resident, data={"distance_km": "12", "duration_min": 40})
        db.session.commit()
    number = submitted_version(app, "auditor1")
    response = console(app, "operator1").post(f"/console/methodologies/travel/versions/{number}/simulate",
                                              {"days": "30"})
    page = _text(response)
    assert response.status_code == 200 and 'class="simulation"' in page
    assert "Simulation over 30 days: activities recomputed, 1" in page
    # A bus emitting 60 g instead of 52 g per passenger-km saves less against the car baseline.
    assert re.search(r"<td>-[\d.,]+ (g|kg)</td>", page)
    assert audit_actions(app)[-1] == "methodology.simulate" and version_status(app, number) == "submitted"
    bad = console(app, "operator1").post(f"/console/methodologies/travel/versions/{number}/simulate", {"days": "0"})
    assert bad.status_code == 422


def test_a_rule_version_is_simulated_from_its_page(app: Flask, api: Api, people: dict[str, Api]) -> None:
    from backend.services import activities, ledger

    make_staff(app, "zz-operator", "operator", scope="430200")
    resident = sign_up(api, "lihua", region="430204").get("/api/v1/me").get_json()["id"]
    with app.app_context():
        reductions = [activities.record_one(
            activity_type="bus_ride", occurred_at=utcnow() - timedelta(days=2, minutes=30 * i), region="430204",
            source="demo", resident_id=resident, data={"distance_km": "10", "duration_min": 15})[1].id
            for i in range(2)]
        ledger.credit(reductions)
        db.session.commit()
    number = submitted_rules_version(app, "zz-operator", region="430204")
    view = console(app, "zz-auditor")
    path = f"/console/rules/versions/{number}"
    page = _text(view.get(path))
    assert f'action="{path}/simulate#simulate"' in page and "Replays the certified reductions" in page
    refused = view.post(f"{path}/simulate", {"days": "30"}, token=None)
    assert refused.status_code == 400 and error_of(refused) == "csrf"
    response = view.post(f"{path}/simulate", {"days": "30"}, page=path)
    page = _text(response)
    assert response.status_code == 200 and 'class="simulation rules-simulation"' in page
    assert "Simulation over 30 days: 2 reductions of 1 accounts replayed" in page
    # Two 520 g rides at Shifeng's 100 points per kg: 104 points; at 50 per kg, 52.
    kpis = dict(re.findall(r'<span class="kpi-label">([^<]+)</span><span class="kpi-value">([^<]+)</span>', page))
    assert (kpis["Credited"], kpis["Proposed"], kpis["Change"]) == ("104", "52", "-52")
    row = re.search(r'<table class="sim-accounts">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert row is not None and re.findall(r"<td>([^<]*)</td>", row.group(1)) == \
        [f"Resident {resident}", "2", "104", "104", "52", "-52"]
    assert "What the figures assume" in page and "within the budget" in page
    from backend.services.rules_simulation import ASSUMPTIONS

    assert {f"sim.assumption.{code}" for code in ASSUMPTIONS} <= set(i18n.EN) & set(i18n.ZH)
    assert audit_actions(app)[-1] == "rules.simulate"
    assert version_status(app, number, "exchange", "rules") == "submitted"
    assert view.post(f"{path}/simulate", {"days": "400"}, page=path).status_code == 422
    chinese = console(app, "zz-auditor", headers={"Accept-Language": "zh-CN"})
    assert "重放 1 个账户的 2 笔减排量" in _text(chinese.post(f"{path}/simulate", {"days": "30"}, page=path))
    outsider = console(app, "auditor1").post(f"{path}/simulate", {"days": "30"}, page=path)
    assert outsider.status_code == 403 and error_of(outsider) == "out_of_scope"


def test_rule_versions_are_decided_with_four_eyes_in_the_console(app: Flask, people: dict[str, Api]) -> None:
    number = submitted_rules_version(app, "auditor1")
    path = f"/console/rules/versions/{number}"
    author, second, operator = console(app, "auditor1"), console(app, "auditor2"), console(app, "operator1")

    refused = author.post(f"{path}/approve")
    assert refused.status_code == 403 and error_of(refused) == "own_version"
    assert audit_actions(app)[-1] == "rules.approve_refused"
    assert operator.post(f"{path}/approve").status_code == 403
    assert version_status(app, number, "exchange", "rules") == "submitted"
    approved = second.post(f"{path}/approve")
    assert approved.status_code == 303 and approved.headers["Location"] == path
    assert version_status(app, number, "exchange", "rules") == "approved"
    assert audit_actions(app)[-1] == "rules.approve"
    assert f"exchange@{number} is approved." in _text(second.get(path))

    other = submitted_rules_version(app, "operator1", bus_per_kg="90")
    path = f"/console/rules/versions/{other}"
    blank = second.post(f"{path}/reject", {"reason": "  "})
    assert blank.status_code == 422 and error_of(blank) == "reason_required"
    assert version_status(app, other, "exchange", "rules") == "submitted"
    assert second.post(f"{path}/reject", {"reason": "The bus rate needs its source."}).status_code == 303
    assert version_status(app, other, "exchange", "rules") == "rejected"
    assert audit_actions(app)[-1] == "rules.reject"


def test_the_version_page_compares_side_by_side_with_the_version_in_force(app: Flask, people: dict[str, Api]) -> None:
    number = submitted_version(app, "auditor1")
    view = console(app, "auditor2")
    page = _text(view.get(f"/console/methodologies/travel/versions/{number}"))
    assert f"Entries that differ between travel@1 and travel@{number}: 1." in page
    changed = re.search(r'<tbody id="entry-bus_g_per_pkm" class="changed">(.*?)</tbody>', page, re.S)
    assert changed is not None and ">52<" in changed.group(1) and ">60<" in changed.group(1)
    assert '<tbody id="entry-walk_g_per_pkm" class="same">' in page
    against = _text(view.get(f"/console/methodologies/travel/versions/{number}?against={number}"))
    assert f"travel@{number} and travel@{number} have the same content." in against
    rules = _text(view.get("/console/rules/versions/2"))  # Shifeng's installed rules: approved
    assert "caps" in rules and "Only a draft or submitted version can be simulated." in rules
    assert "/simulate" not in rules


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "status"), [
    ("/console/?from=yesterday", 422), ("/console/?from=2026-02-30", 422), ("/console/?region=abc", 422),
    ("/console/?region=999999", 422), ("/console/?from=2020-01-01&to=2026-01-01", 422),
    ("/console/?region=430200", 403),  # outside a Yueyang operator's scope
    ("/console/methodologies/nope/versions/1", 404), ("/console/methodologies/travel/versions/999", 404),
    ("/console/methodologies/travel/versions/1?against=0", 422),
    ("/console/methodologies/travel/versions/1?against=99999999999", 422),
    ("/console/review?before=abc", 422), ("/console/audit?before=-1", 422),
    ("/console/audit?action=" + "x" * 65, 422),
    # Found by fuzzing (were 500s): digits str.isdigit() takes and int() does not; the calendar's ends.
    ("/console/audit?before=%C2%B2", 422), ("/console/methodologies/travel/versions/1?against=%C2%B3", 422),
    ("/console/?from=0001-01-01", 422), ("/console/?to=9999-12-31", 422), ("/console/?to=0001-01-01", 422),
])
def test_bad_input_is_a_page_naming_the_problem_never_a_500(app: Flask, people: dict[str, Api], path: str,
                                                          status: int) -> None:
    response = console(app, "operator1").get(path)
    assert response.status_code == status, _text(response)[:500]
    assert 'class="card error-page"' in _text(response)


def test_bad_forms_are_refused_with_a_page(app: Flask, people: dict[str, Api]) -> None:
    auditor = console(app, "auditor1")
    assert auditor.post("/console/lang", {"lang": "fr"}).status_code == 422
    assert auditor.post("/console/signals/1/resolve", {"status": "maybe", "resolution": "x"}).status_code == 422
    assert auditor.post("/console/signals/1/resolve", {"status": "dismissed", "resolution": "x"}).status_code == 404
    assert auditor.post("/console/methodologies/travel/versions/1/reject", {"reason": "x" * 2001}).status_code == 422
    assert auditor.post("/console/review/1/reject", {"reason": "x" * 501}).status_code == 422
    stranger = console(app)
    too_long = stranger.client.post("/console/login", data={"username": "u" * 5000, "password": "p" * 5000,
                                                             "csrf_token": stranger.token()})
    assert too_long.status_code == 401


# --- language -----------------------------------------------------------------------------------------


def test_the_language_follows_the_browser_until_the_person_chooses(app: Flask, people: dict[str, Api]) -> None:
    chinese = console(app, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert "登录" in _text(chinese.get("/console/login"))
    english = console(app, headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert "Log in" in _text(english.get("/console/login"))
    assert english.login("operator1").status_code == 303
    assert "Dashboard" in _text(english.get("/console/"))
    switched = english.post("/console/lang", {"lang": "zh", "next": "/console/versions"})
    assert switched.status_code == 303 and switched.headers["Location"] == "/console/versions"
    page = _text(english.get("/console/versions"))
    assert "方法学与兑换规则" in page and '<html lang="zh-CN">' in page
    assert english.post("/console/lang", {"lang": "en", "next": "https://evil.example/"}).headers["Location"] == \
        "/console/"


def test_both_catalogues_hold_every_label_the_console_uses() -> None:
    assert set(i18n.EN) == set(i18n.ZH)
    assert all(i18n.ZH[key].count("{") == i18n.EN[key].count("{") for key in i18n.EN)
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(['"]([\w.]+)['"]""", template.read_text()))
    for module in (Path(__file__).resolve().parent.parent / "backend" / "console").rglob("*.py"):
        used |= set(re.findall(r"""translate\(['"]([\w.]+)['"]""", module.read_text()))
    assert used and used - set(i18n.EN) == set()


def test_every_finding_and_reason_for_review_has_a_label_in_both_languages() -> None:
    """An auditor reading the queue in Chinese sees what was found in Chinese, not only the code:
    every check a methodology can raise and every reason an activity can wait for review."""
    root = Path(__file__).resolve().parent.parent
    sources = "\n".join(path.read_text() for folder in ("backend", "methodologies")
                        for path in (root / folder).rglob("*.py"))
    findings = set(re.findall(r'Finding\("(\w+)"', sources)) | set(re.findall(r'high_code="(\w+)"', sources))
    waiting = set(re.findall(r'decide\("pending_review", "(\w+)"', sources)) \
        | set(re.findall(r'NotQuantifiable\("(\w+)"', sources)) | {"impossible_travel", "too_many_hours"}
    review_findings = {"heavy_drop_off", "high_consumption", "high_generation"}
    assert {"implausible_distance", "double_counted", "high_generation"} <= findings and "self_reported" in waiting
    for catalogue in (i18n.EN, i18n.ZH):
        assert {f"finding.{code}" for code in findings} <= set(catalogue)
        assert {f"reason.{code}" for code in waiting | review_findings} <= set(catalogue)


# --- the dashboard's charts -------------------------------------------------------------------------


def test_the_dashboard_charts_the_rolled_up_days(app: Flask, api: Api, people: dict[str, Api]) -> None:
    rolled_up_history(app, days=10)
    view = console(app, "operator1")
    page = _text(view.get("/console/"))
    for chart in ("chart-by-type", "chart-by-region", "chart-participants", "chart-points"):
        figure = re.search(rf'<figure class="card chart-card" id="{chart}">(.*?)</figure>', page, re.S)
        assert figure is not None and "<svg" in figure.group(1), chart
    bars = re.findall(r'<rect class="bar s(\d)" x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="([\d.]+)"', page)
    assert len(bars) >= 10 * 4 and all(float(w) > 0 and float(h) > 0 for _, w, h in bars)
    assert "Bus ride" in page and "Yueyanglou District" in page and "Junshan District" in page
    # Residents, households; points issued, redeemed, donated, paid for rights, expired.
    assert page.count('<polyline class="line') == 7 and "Redeemed at merchants" in page
    first = (china_today() - timedelta(days=3)).isoformat()
    narrow = _text(view.get(f"/console/?from={first}&region=430611"))
    assert narrow.count('<rect class="bar') < len(bars)
    assert "Yueyanglou District</li>" not in narrow and "Junshan District</li>" in narrow


def test_chart_geometry_is_proportional() -> None:
    from datetime import date

    days = [date(2026, 11, d) for d in (1, 2, 3)]
    chart = charts.stacked_bars(days, [("a", [100, 0, 300]), ("b", [100, 200, 0]), ("none", [0, 0, 0])],
                                formatting.grams, day_label="Day")
    assert [name for _, name in chart.legend] == ["a", "b"]
    heights = {(b.title.split()[0], b.series): b.height for b in chart.bars}
    assert heights[("2026-11-01", 0)] == heights[("2026-11-01", 1)]
    assert heights[("2026-11-03", 0)] == pytest.approx(3 * heights[("2026-11-01", 0)], rel=1e-3)
    assert chart.y_ticks[0].label == "0 g" and chart.rows[2] == ["2026-11-03", "300 g", "0 g"]
    assert charts.stacked_bars(days, [("a", [0, 0, 0])], formatting.grams, day_label="Day").empty
    assert [charts.nice_step(m) for m in (9, 95, 1000, 4321)] == [5, 50, 500, 2000]
    ranking = charts.ranking([("南湖绿色骑行团", 5000, ""), ("x", 2500, ""), ("zero", 0, "")], formatting.grams,
                             header=["c", "g", "n"])
    assert len(ranking.bars) == 2 and ranking.bars[0].width == pytest.approx(2 * ranking.bars[1].width, rel=1e-3)


def test_grams_read_in_the_unit_that_suits_them() -> None:
    assert [formatting.grams(g) for g in (0, 999, 1000, 12345, 1_234_567, -1500)] == \
        ["0 g", "999 g", "1 kg", "12.3 kg", "1.23 t", "-1.5 kg"]
    assert [formatting.grams(g) for g in (2_000_000, 2_500_000, 2_050_000)] == ["2 t", "2.5 t", "2.05 t"]
    assert formatting.yuan_of_fen(123456) == "1,234.56" and formatting.signed(2000) == "+2 kg"


def test_the_side_by_side_rows_cover_both_payloads() -> None:
    left = {"points": {"default_per_kg": "100"}, "caps": [{"grams": 300, "types": ["walk"]}], "gone": 1}
    right = {"points": {"default_per_kg": "120"}, "caps": [{"grams": 300, "types": ["walk"]},
                                                          {"grams": 2000, "types": ["bike_ride"]}], "new": {}}
    entries = {e.name: e for e in diffview.side_by_side(left, right)}
    assert set(entries) == {"points", "caps", "gone", "new"}
    assert [(r.field, r.left, r.right) for r in entries["points"].rows] == [("default_per_kg", "100", "120")]
    caps = entries["caps"]
    assert [r.field for r in caps.rows] == ["[0].grams", "[0].types", "[1].grams", "[1].types"]
    assert caps.rows[1].left == '["walk"]' and caps.rows[2].left is None and caps.changed
    assert entries["gone"].rows[0].right is None and entries["new"].rows[0].right == "{}"
    assert not any(e.changed for e in diffview.side_by_side(right, right))
