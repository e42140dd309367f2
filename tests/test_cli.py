"""The carbon-points command line: staff users, the demo seed, the scheduler's jobs."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from backend.cli import main
from backend.db import db, utcnow
from backend.models import Partner, PartnerNonce, RefreshToken, Resident, User
from tests.conftest import PASSWORD, Api, login


def _run(app: Flask, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), obj={"app": app}, input=input)


def test_users_create(app: Flask, api: Api) -> None:
    result = _run(app, "users", "create", "ops", "--role", "operator", "--role", "auditor",
                  "--password", PASSWORD, "--scope-region", "430600")
    assert result.exit_code == 0, result.output
    assert "roles auditor, operator" in result.output
    assert login(api, "ops").get("/api/v1/admin/partners").status_code == 200


def test_users_create_refuses_bad_input_cleanly(app: Flask) -> None:
    weak = _run(app, "users", "create", "ops", "--role", "operator", "--password", "short")
    assert weak.exit_code != 0 and "password" in weak.output
    region = _run(app, "users", "create", "ops", "--role", "operator", "--password", PASSWORD,
                  "--scope-region", "999999")
    assert region.exit_code != 0 and "scope_region" in region.output
    role = _run(app, "users", "create", "ops", "--role", "resident", "--password", PASSWORD)
    assert role.exit_code == 2 and "resident" in role.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_password_prompt(app: Flask) -> None:
    result = _run(app, "users", "create", "ops", "--role", "admin", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output


def test_demo_seed_is_idempotent(app: Flask, api: Api) -> None:
    first = _run(app, "demo", "seed")
    assert first.exit_code == 0, first.output
    assert "household 李华家" in first.output and "partner 岳阳市公共交通集团" in first.output
    second = _run(app, "demo", "seed")
    assert second.exit_code == 0 and "household" not in second.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Resident)) == 5
        assert db.session.scalar(select(func.count()).select_from(Partner)) == 4
    lihua = login(api, "lihua", "carbon-demo-2026")
    me = lihua.get("/api/v1/me").get_json()
    assert me["household"]["name"] == "李华家"
    assert {c["name"] for c in me["communities"]} == {"南湖绿色骑行团", "君山植树志愿者"}
    assert _run(app, "audit", "verify").exit_code == 0
    replay = _run(app, "reductions", "replay")
    assert replay.exit_code == 0 and " 0 do not" in replay.output


def test_demo_seed_refused_in_production(app: Flask) -> None:
    from backend.config import current_settings

    with app.app_context():
        settings = current_settings()
    app.extensions["settings"] = settings.with_overrides({"env": "production"})
    result = _run(app, "demo", "seed")
    assert result.exit_code == 1 and "not seeded in production" in result.output


def test_housekeeping_prunes_only_what_can_no_longer_matter(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    from backend.jobs import housekeeping

    partner = staff["operator1"].post("/api/v1/admin/partners", {
        "name": "P", "kind": "transit", "activity_types": ["bus_ride"], "region": "430600"}).get_json()
    with app.app_context():
        now = utcnow()
        db.session.add_all([
            PartnerNonce(signature="a" * 64, partner_id=partner["id"], seen_at=now - timedelta(hours=1)),
            PartnerNonce(signature="b" * 64, partner_id=partner["id"], seen_at=now),
        ])
        token = db.session.scalars(select(RefreshToken)).first()
        token.expires_at = now - timedelta(days=8)
        db.session.commit()
        counts = housekeeping.run()
        assert counts == {"nonces_pruned": 1, "refresh_tokens_deleted": 1}
        assert db.session.get(PartnerNonce, "b" * 64) is not None


def test_the_scheduler_declares_the_ledger_jobs(app: Flask) -> None:
    from backend.jobs import points, scheduler

    jobs = scheduler.build(app, blocking=False)
    assert {job.id for job in jobs.get_jobs()} >= {"housekeeping", "expire_points", "release_queued", "expire_holds",
                                                   "expire_grants"}
    assert str(jobs.get_job("expire_points").trigger) == "cron[hour='0', minute='5']"
    with app.app_context():
        assert points.expire_points() == {"entries": 0, "points": 0, "lots": 0}
        assert points.release_queued() == {"released": 0, "still_queued": 0}
        assert points.expire_holds() == {"expired": 0}
        assert points.expire_grants() == {"expired": 0}


def test_methodologies_list_shows_id_version_types_and_package(app: Flask) -> None:
    result = _run(app, "methodologies", "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["id", "formula", "types", "package"]
    travel = next(line for line in lines if line.startswith("travel "))
    assert "bike_ride, bus_ride, metro_ride, walk" in travel and "(methodologies.travel:Travel)" in travel
    assert len(lines) == 7  # the header and the six built-ins
