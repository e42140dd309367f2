"""Helpers for the console's tests: a test client that logs in through the form and posts forms with
their CSRF token, and the data the console shows (a submitted version, a held-back activity,
rolled-up statistics)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from backend.db import db, utcnow
from backend.methodology import CHINA_STANDARD_TIME
from tests.conftest import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def error_of(response: Any) -> str | None:
    """The ``data-error`` slug of a console error page."""
    found = re.search(r'data-error="([^"]*)"', response.get_data(as_text=True))
    return found.group(1) if found else None


@dataclass
class Console:
    client: FlaskClient

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)

    def token(self, page: str = "/console/login") -> str:
        return csrf_token(self.client.get(page).get_data(as_text=True))

    def post(self, path: str, data: dict[str, Any] | None = None, *, token: str | None = "fetch",
             page: str | None = None) -> Any:
        """POST a form with the CSRF token of this session (``token=None``: without one)."""
        form = dict(data or {})
        if token == "fetch":
            token = self.token(page or ("/console/" if self.logged_in else "/console/login"))
        if token is not None:
            form["csrf_token"] = token
        return self.client.post(path, data=form)

    @property
    def logged_in(self) -> bool:
        return self.client.get("/console/login").status_code == 302

    def login(self, username: str, password: str = PASSWORD) -> Any:
        return self.client.post("/console/login", data={
            "username": username, "password": password, "csrf_token": self.token()})


def console(app: Flask, username: str | None = None, *, headers: dict[str, str] | None = None) -> Console:
    """A browser on the console (English unless ``headers`` say otherwise), logged in as ``username``."""
    client = app.test_client()
    headers = {"Accept-Language": "en", **(headers or {})}
    client.environ_base.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()})
    view = Console(client)
    if username is not None:
        response = view.login(username)
        assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return view


# --- data --------------------------------------------------------------------------------------------


def submitted_version(app: Flask, author: str, *, region: str = "430600", bus: str = "60",
                      submit: bool = True) -> int:
    """A travel methodology version with a higher bus factor, drafted (and submitted) by ``author``."""
    from backend.methodology.registry import registry
    from backend.models import User
    from backend.services import governance

    with app.app_context():
        actor = db.session.scalar(select(User).where(User.username == author))
        parameters = copy.deepcopy(registry().get("travel").defaults)
        parameters["bus_g_per_pkm"].update(value=bus, vintage="2025", source="岳阳市公共交通集团 2025 fleet records")
        version = governance.create_draft("methodology", "travel", region=region, payload=parameters,
                                          effective_from=None, note="Higher bus factor from the 2025 fleet records.",
                                          actor=actor)
        if submit:
            governance.submit("methodology", "travel", version.version, actor=actor)
        db.session.commit()
        return version.version


def submitted_rules_version(app: Flask, author: str, *, region: str = "430600", bus_per_kg: str = "50",
                            submit: bool = True) -> int:
    """An exchange-rule version for ``region``: the rules in force there with another bus rate,
    drafted (and submitted) by ``author``."""
    from backend.models import User
    from backend.services import governance

    with app.app_context():
        actor = db.session.scalar(select(User).where(User.username == author))
        in_force = governance.in_force("rules", "exchange", region, utcnow())
        assert in_force is not None
        payload = copy.deepcopy(in_force.payload)
        payload["points"]["per_kg"]["bus_ride"] = bus_per_kg
        version = governance.create_draft("rules", "exchange", region=region, payload=payload, effective_from=None,
                                          note="A different rate for bus rides.", actor=actor)
        if submit:
            governance.submit("rules", "exchange", version.version, actor=actor)
        db.session.commit()
        return version.version


def version_status(app: Flask, number: int, subject: str = "travel", kind: str = "methodology") -> str:
    from backend.services import governance

    with app.app_context():
        return governance.get(kind, subject, number).status


def audit_actions(app: Flask) -> list[str]:
    from backend.models import AuditLog

    with app.app_context():
        return list(db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


def held_activity(app: Flask, resident_id: int, *, region: str = "430602", signal: bool = True) -> int:
    """A recycling drop-off heavy enough to be held for review, with a fraud signal on it."""
    from backend.models import FraudSignal
    from backend.services import activities

    with app.app_context():
        activity, reduction = activities.record_one(
            activity_type="recycling", occurred_at=utcnow() - timedelta(hours=3), region=region, source="demo",
            data={"material": "steel", "weight_kg": "80"}, resident_id=resident_id)
        assert activity.status == "pending_review" and reduction is None
        if signal:
            db.session.add(FraudSignal(kind="too_many_hours", resident_id=resident_id, activity_id=activity.id,
                                       region_code=region, detail="15 h on the move on one day"))
        db.session.commit()
        return activity.id


def china_today() -> date:
    return utcnow().astimezone(CHINA_STANDARD_TIME).date()


def rolled_up_history(app: Flask, days: int = 14) -> None:
    """Statistics for the ``days`` days before today, as the nightly roll-up writes them: every
    scenario in two districts, participants, and points issued, spent and expired."""
    from backend.models import DailyActivityStats, DailyRegionStats, StatsRollup

    today = china_today()
    kinds = {"bus_ride": 5200, "bike_ride": 2100, "recycling": 3400, "walk": 600}
    with app.app_context():
        for back in range(days, 0, -1):
            day = today - timedelta(days=back)
            wave = 1 + (back % 5) / 4
            for region, share in (("430602", 1.0), ("430611", 0.6)):
                for kind, grams in kinds.items():
                    db.session.add(DailyActivityStats(
                        day=day, region_code=region, activity_type=kind, activities=12, credited=10,
                        residents=8, households=3, grams=int(grams * wave * share * 10),
                        points_issued=int(grams * wave * share)))
                db.session.add(DailyRegionStats(
                    day=day, region_code=region, residents=int(30 * wave * share), households=int(11 * share),
                    points_redeemed=int(900 * wave * share), points_donated=int(250 * share), points_rights=80,
                    points_expired=int(40 * share) if back % 7 == 0 else 0))
            db.session.add(StatsRollup(day=day, computed_at=utcnow(), activity_rows=8, region_rows=2))
        db.session.commit()
