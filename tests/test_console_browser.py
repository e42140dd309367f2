"""The console end to end in a real browser: Playwright driving Debian's headless chromium against the
app served on a free port (issue #8 point 1).

An author logs in and opens a version's side-by-side diff, and is refused when approving it (four
eyes); a second auditor simulates it and approves it; the dashboard's SVG charts have drawn bars and
lines of real size; the language switches; a form posted without its CSRF token gets the 400 page
and changes nothing; a tablet-width operator sees every page without sideways scrolling. Full-page
screenshots of each step are kept in ``test-artifacts/console/`` (laptop 1280 px and tablet 768 px).

Skipped where no chromium is installed (a newcomer's ``make test``); ``.ci/run`` installs it and sets
``CONSOLE_BROWSER_REQUIRED=1``, and then a missing browser fails the test instead.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import make_server

from backend.db import db, utcnow
from tests.conftest import PASSWORD, Api, make_staff, sign_up
from tests.console_client import (
    audit_actions,
    held_activity,
    rolled_up_history,
    submitted_rules_version,
    submitted_version,
    version_status,
)

CHROMIUM = os.environ.get("CONSOLE_BROWSER", "/usr/bin/chromium")
REQUIRED = os.environ.get("CONSOLE_BROWSER_REQUIRED", "") == "1"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "console"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAPTOP = {"width": 1280, "height": 800}
TABLET = {"width": 768, "height": 1024}


@pytest.fixture
def sync_playwright() -> Any:
    """Playwright's entry point, or a skip (a failure under CONSOLE_BROWSER_REQUIRED=1) before any set-up."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (pip install -e '.[dev]')"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"no chromium at {CHROMIUM} (apt-get install chromium)"
    if problem is not None:
        if REQUIRED:
            pytest.fail(f"CONSOLE_BROWSER_REQUIRED=1 but {problem}")
        pytest.skip(problem)
    return sync_playwright


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The app on a free port, served from a thread, against this test's database."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="console-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def world(app: Flask, api: Api) -> dict[str, Any]:
    """Yueyang as the console shows it: two auditors and an operator, a submitted travel version, a
    held-back drop-off with a fraud signal, partners, a merchant, a welfare project, credited
    trips, and two weeks of rolled-up statistics."""
    from backend.models import User
    from backend.services import activities, ledger, merchants, partners, projects

    for name, role in (("li-auditor", "auditor"), ("wang-auditor", "auditor"), ("zhao-operator", "operator")):
        make_staff(app, name, role, scope="430600")
    make_staff(app, "hunan-admin", "admin")
    residents = [sign_up(api, name, region=region, display_name=display)
                 for name, region, display in (("lihua", "430602", "李华"), ("zhangwei", "430611", "张伟"))]
    people = [resident.get("/api/v1/me").get_json()["id"] for resident in residents]
    cycling = residents[0].post("/api/v1/communities", {"name": "南湖绿色骑行团", "region": "430602"}).get_json()
    assert residents[1].post(f"/api/v1/communities/{cycling['id']}/join").status_code in (200, 201)
    residents[1].post("/api/v1/communities", {"name": "君山植树志愿者", "region": "430611"})
    with app.app_context():
        operator = db.session.scalar(select(User).where(User.username == "zhao-operator"))
        admin = db.session.scalar(select(User).where(User.username == "hunan-admin"))
        for name, kind, types in (("岳阳市公共交通集团", "transit", ["bus_ride"]),
                                  ("岳阳共享单车运营中心", "bike_share", ["bike_ride"]),
                                  ("岳阳绿色回收智能柜", "recycling", ["recycling"])):
            partners.create(name, kind, types, "430600", actor=operator)
        merchants.create("岳阳楼区绿色生活超市", "430602", actor=operator)
        projects.create("君山岛植树", "在君山岛种下一千棵树。", "430611", 50_000, actor=admin)
        reductions = []
        for day in range(1, 8):
            for resident, km in zip(people, ("12", "8"), strict=True):
                _, reduction = activities.record_one(
                    activity_type="bus_ride", occurred_at=utcnow() - timedelta(days=day, hours=2), region="430602",
                    source="demo", resident_id=resident, data={"distance_km": km, "duration_min": 35})
                reductions.append(reduction.id)
        db.session.flush()
        ledger.credit(reductions)
        db.session.commit()
    activity = held_activity(app, people[0])
    rolled_up_history(app, days=14)
    with app.app_context():
        from backend.jobs import scheduler

        for job in ("verify_ledger", "verify_audit"):  # last night's checks
            assert scheduler.run_now(app, job, actor=None).outcome == "ok"
        db.session.commit()
    return {"version": submitted_version(app, "li-auditor"), "activity": activity,
            "rules": submitted_rules_version(app, "zhao-operator", bus_per_kg="50")}


class Screens:
    """Full-page screenshots, numbered in the order the story takes them."""

    def __init__(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for old in ARTIFACTS.glob("*.png"):
            old.unlink()
        self.count = 0

    def take(self, page: Any, name: str) -> Path:
        self.count += 1
        path = ARTIFACTS / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


def _log_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/console/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("form.stack button[type=submit]")
    assert "/console/login" not in page.url, page.inner_text("main")


def _log_out(page: Any) -> None:
    with page.expect_navigation():
        page.click("header form button.link")
    assert page.url.endswith("/console/login")


def _submit(page: Any, selector: str) -> Any:
    """Click a form's button; the response to its POST."""
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click(selector)
    page.wait_for_load_state()
    return posted.value


def _drawn(page: Any, chart: str) -> dict[str, Any]:
    """What the browser laid out for a chart: its bars' and lines' rendered boxes."""
    return page.evaluate("""(id) => {
        const svg = document.querySelector(`#${id} svg.chart`);
        if (!svg) { return {svg: null}; }
        const box = (el) => { const r = el.getBoundingClientRect(); return [r.width, r.height]; };
        return {svg: box(svg),
                bars: [...svg.querySelectorAll('rect.bar')].map(box),
                lines: [...svg.querySelectorAll('polyline.line')].map((l) => l.getTotalLength())};
    }""", chart)


def test_the_console_in_a_real_browser(sync_playwright: Any, app: Flask, server: str, world: dict[str, Any]) -> None:
    number, activity = world["version"], world["activity"]
    version_path = f"/console/methodologies/travel/versions/{number}"
    screens = Screens()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            laptop = browser.new_context(viewport=LAPTOP, locale="en-US")
            page = laptop.new_page()
            page.on("dialog", lambda dialog: dialog.accept())
            # Script errors and CSP violations show in the browser's console; refused requests are expected.
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error"
                    and not m.text.startswith("Failed to load resource") else None)
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400
                    and "/console/" not in r.url else None)

            # Anonymous: sent to log in. The author opens the version's side-by-side diff.
            page.goto(f"{server}/console/")
            assert "/console/login" in page.url
            screens.take(page, "login-laptop")
            _log_in(page, server, "li-auditor")
            page.click("a[href='/console/versions']")
            page.click(f"table.versions-awaiting a[href='{version_path}']")
            summary = page.inner_text("#diff .summary")
            assert summary.startswith(f"Entries that differ between travel@1 and travel@{number}: 1.")
            changed = page.locator("tbody#entry-bus_g_per_pkm.changed")
            assert changed.locator("td.left").all_inner_texts()[3] == "52"
            assert changed.locator("td.right").all_inner_texts()[3] == "60"
            page.check("input.changed-only")  # the script folds the unchanged entries away
            assert not page.is_visible("tbody#entry-walk_g_per_pkm") and page.is_visible("tbody#entry-bus_g_per_pkm")
            page.uncheck("input.changed-only")
            screens.take(page, "version-diff-laptop")

            # Four eyes: the author's approval is refused with the service's message; nothing changes.
            refused = _submit(page, "form.approve-form button")
            assert refused.status == 403
            assert "An auditor other than the author must decide on this version (four-eyes rule)." in \
                page.inner_text("main")
            screens.take(page, "four-eyes-refused-laptop")
            assert version_status(app, number) == "submitted"
            _log_out(page)

            # A second auditor simulates the version, then approves it.
            _log_in(page, server, "wang-auditor")
            page.goto(f"{server}{version_path}")
            simulated = _submit(page, "#simulate form button")
            assert simulated.status == 200
            assert "Simulation over 30 days: activities recomputed, 14" in page.inner_text("#simulate")
            screens.take(page, "simulation-laptop")
            approved = _submit(page, "form.approve-form button")
            assert approved.status == 303
            assert f"travel@{number} is approved." in page.inner_text("main .flash")
            assert page.inner_text("h1 .badge") == "approved"
            assert version_status(app, number) == "approved"
            actions = audit_actions(app)
            assert actions[-1] == "methodology.approve" and "methodology.approve_refused" in actions
            screens.take(page, "version-approved-laptop")

            # The same auditor simulates a proposed bus rate of 50 points per kg for Yueyang: the
            # fourteen credited rides (seven of 624 g, seven of 416 g) would earn 7 × (31 + 20).
            page.goto(f"{server}/console/rules/versions/{world['rules']}")
            simulated = _submit(page, "#simulate form button")
            assert simulated.status == 200
            replay = page.inner_text("#simulate")
            assert "Simulation over 30 days: 14 reductions of 2 accounts replayed" in replay
            kpis = dict(zip(page.locator("#simulate .kpi-label").all_inner_texts(),
                            page.locator("#simulate .kpi-value").all_inner_texts(), strict=True))
            credited, proposed, change = (int(kpis[k].replace(",", "").replace("+", ""))
                                          for k in ("Credited", "Proposed", "Change"))
            assert (proposed, change) == (357, 357 - credited) and credited > proposed, kpis
            assert version_status(app, world["rules"], subject="exchange", kind="rules") == "submitted"
            screens.take(page, "rules-simulation-laptop")

            # The dashboard: every chart drawn, with bars and lines of real size.
            page.click("a[href='/console/']")
            for chart in ("chart-by-type", "chart-by-region"):
                drawn = _drawn(page, chart)
                assert drawn["svg"] and drawn["svg"][0] > 300 and drawn["svg"][1] > 100, (chart, drawn)
                assert len(drawn["bars"]) >= 14 and all(w > 0 and h > 0 for w, h in drawn["bars"]), (chart, drawn)
            for chart in ("chart-participants", "chart-points"):
                drawn = _drawn(page, chart)
                assert drawn["lines"] and all(length > 100 for length in drawn["lines"]), (chart, drawn)
            ranking = _drawn(page, "chart-communities")
            assert len(ranking["bars"]) == 2 and all(w > 0 and h > 0 for w, h in ranking["bars"]), ranking
            names = page.locator("#chart-communities svg text.rowlabel").all_text_contents()
            assert names == ["南湖绿色骑行团", "君山植树志愿者"], names  # two riders beat one
            assert page.is_visible("#chart-by-type .legend") and "Bus ride" in page.inner_text("#chart-by-type")
            screens.take(page, "dashboard-laptop")

            # The review queue, the audit log with its chain verified, the ledger's health, the lists.
            page.click("a[href='/console/review']")
            assert "steel" in page.inner_text(f"#activity-{activity}")
            assert "15 h on the move on one day" in page.inner_text(f"#activity-{activity}")
            screens.take(page, "review-queue-laptop")
            page.click("a[href='/console/audit']")
            page.click("#chain form button")
            assert page.inner_text("#chain .chain-status").startswith("Checked just now: Intact:")
            assert "passed" in page.inner_text("#chain .chain-nightly")
            assert "methodology.approve" in page.inner_text("table.audit")
            screens.take(page, "audit-log-laptop")
            page.click("a[href='/console/ledger']")
            assert int(page.inner_text("#outstanding-points").replace(",", "")) > 0
            assert "passed" in page.inner_text("#verification")
            screens.take(page, "ledger-laptop")
            for name in ("partners", "merchants", "projects"):
                page.click(f"a[href='/console/{name}']")
                assert page.locator("main table tbody tr").count() >= 1, name
                screens.take(page, f"{name}-laptop")

            # Bad input: the reject form posted without its CSRF token is refused and changes nothing.
            page.click("a[href='/console/review']")
            form = f"form[action='/console/review/{activity}/reject']"
            page.fill(f"{form} input[name=reason]", "Receipt unreadable")
            page.eval_on_selector(f"{form} input[name=csrf_token]", "el => el.remove()")
            refused = _submit(page, f"{form} button")
            assert refused.status == 400
            assert "without a valid security token (CSRF), so nothing was changed" in page.inner_text("main")
            assert "The CSRF token is missing." in page.inner_text("main")
            screens.take(page, "csrf-refused-laptop")
            with app.app_context():
                from backend.models import Activity

                assert db.session.get(Activity, activity).status == "pending_review"
            assert "activity.reject" not in audit_actions(app)

            # The language: Chinese labels, remembered across pages.
            page.goto(f"{server}/console/")
            with page.expect_navigation():
                page.click("form.lang button[value=zh]")
            assert page.inner_text("h1") == "数据看板" and page.get_attribute("html", "lang") == "zh-CN"
            page.click("a[href='/console/versions']")
            assert page.inner_text("h1") == "方法学与兑换规则"
            page.click("a[href='/console/']")
            screens.take(page, "dashboard-zh-laptop")
            assert problems == [], problems
            laptop.close()

            # A tablet: an operator reads everything (no decisions), and nothing scrolls sideways.
            tablet = browser.new_context(viewport=TABLET, locale="zh-CN")
            page = tablet.new_page()
            _log_in(page, server, "zhao-operator")
            assert page.inner_text("h1") == "数据看板"
            for path, name in (("/console/", "dashboard"), (version_path, "version"), ("/console/review", "review"),
                               ("/console/ledger", "ledger")):
                page.goto(f"{server}{path}")
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= TABLET["width"], (path, width)
                screens.take(page, f"{name}-tablet")
            assert page.locator("form.approve-form").count() == 0
            page.goto(f"{server}/console/")
            drawn = _drawn(page, "chart-by-type")
            assert drawn["bars"] and all(w > 0 and h > 0 for w, h in drawn["bars"])
            tablet.close()
        finally:
            browser.close()
    assert len(list(ARTIFACTS.glob("*.png"))) == screens.count >= 16
