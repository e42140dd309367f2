"""Governed methodology versions: four eyes, in-force resolution, simulate, transparency, replay."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from backend.db import db, utcnow
from backend.methodology.registry import registry
from backend.models import Activity, PolicyVersion, Reduction
from backend.services import activities
from backend.services.governance import VersionIndex
from backend.services.quantification import Quantifier, replay_many
from tests.conftest import Api, login, make_staff, sign_up

V = "/api/v1/admin/methodologies/travel/versions"


def travel_parameters(app: Flask, **changes: str) -> dict[str, Any]:
    with app.app_context():
        payload = copy.deepcopy(registry().get("travel").defaults)
    for name, value in changes.items():
        payload[name]["value"] = value
        payload[name]["source"] = "岳阳市公交集团 2025 fleet fuel data (example)"
        payload[name]["vintage"] = "2025"
    return payload


def draft(api: Api, app: Flask, region: str | None = "430600", **extra: Any) -> dict[str, Any]:
    body = {"region": region, "parameters": travel_parameters(app, bus_g_per_pkm="60"),
            "note": "Yueyang's bus fleet is older than Beijing's", **extra}
    response = api.post(V, body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def approved(staff: dict[str, Api], app: Flask, **extra: Any) -> dict[str, Any]:
    version = draft(staff["operator1"], app, **extra)
    staff["operator1"].post(f"{V}/{version['version']}/submit")
    response = staff["auditor1"].post(f"{V}/{version['version']}/approve")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bus_grams(app: Flask, region: str, at: Any, km: int = 10) -> tuple[int, str]:
    with app.app_context():
        entry = registry().for_type("bus_ride")
        data = entry.methodology.evidence_schema("bus_ride").load({"distance_km": km, "duration_min": 30})
        result = Quantifier().quantify(entry, "bus_ride", at, data, region)
        return result.grams, result.version.ref


def test_built_in_defaults_are_approved_version_1(staff: dict[str, Api]) -> None:
    versions = staff["auditor1"].get(V).get_json()["items"]
    assert len(versions) == 1
    v1 = versions[0]
    assert (v1["version"], v1["status"], v1["author"], v1["region"]) == (1, "approved", "system", None)
    assert v1["parameters"]["bus_g_per_pkm"] == {
        "value": "52", "unit": "g CO2/pkm", "source": "DB11/T 3043-2024, bus", "vintage": "2024",
        "region": "京津冀 Beijing-Tianjin-Hebei (provisional for Hunan)"}
    listed = {m["id"]: m for m in staff["auditor1"].get("/api/v1/admin/methodologies").get_json()}
    assert listed["travel"]["types"] == ["bike_ride", "bus_ride", "metro_ride", "walk"]
    assert listed["travel"]["package"].startswith("carbon-points ")


def test_draft_submit_approve(app: Flask, staff: dict[str, Api]) -> None:
    version = draft(staff["operator1"], app)
    assert (version["version"], version["status"], version["author"]) == (2, "draft", "operator1")
    submitted = staff["operator1"].post(f"{V}/2/submit").get_json()
    assert submitted["status"] == "submitted"
    result = staff["auditor1"].post(f"{V}/2/approve").get_json()
    assert (result["status"], result["decided_by"]) == ("approved", "auditor1")
    assert result["effective_from"] is not None
    actions = [e["action"] for e in staff["auditor2"].get(
        "/api/v1/admin/audit-log?target_type=methodology_version&target_id=travel@2").get_json()["items"]]
    assert actions == ["methodology.approve", "methodology.submit", "methodology.draft"]


def test_four_eyes_and_the_refusal_is_audited(app: Flask, staff: dict[str, Api]) -> None:
    version = draft(staff["auditor1"], app)["version"]
    staff["auditor1"].post(f"{V}/{version}/submit")
    own = staff["auditor1"].post(f"{V}/{version}/approve")
    assert (own.status_code, own.get_json()["error"]) == (403, "own_version")
    assert staff["auditor1"].post(f"{V}/{version}/reject", {"reason": "mine"}).get_json()["error"] == "own_version"
    refusals = staff["auditor2"].get("/api/v1/admin/audit-log?action=methodology.approve_refused").get_json()["items"]
    assert [(e["actor"], e["target_id"]) for e in refusals] == [("auditor1", f"travel@{version}")]
    assert staff["auditor2"].get(f"{V}/{version}").get_json()["status"] == "submitted"

    assert staff["auditor2"].post(f"{V}/{version}/approve").status_code == 200
    twice = staff["auditor2"].post(f"{V}/{version}/approve")
    assert (twice.status_code, twice.get_json()["error"]) == (409, "not_submitted")
    # Operators draft but never approve.
    assert staff["operator1"].post(f"{V}/{version}/approve").get_json()["error"] == "role_required"


@pytest.mark.parametrize(
    ("change", "key", "field"),
    [
        (lambda p: p["bus_g_per_pkm"].update(unit="kg CO2/pkm"), "bus_g_per_pkm", "unit"),
        (lambda p: p["bus_g_per_pkm"].update(value="-3"), "bus_g_per_pkm", "value"),
        (lambda p: p["bus_g_per_pkm"].update(value="abc"), "bus_g_per_pkm", "value"),
        (lambda p: p["bus_g_per_pkm"].update(value="NaN"), "bus_g_per_pkm", "value"),
        (lambda p: p["bus_g_per_pkm"].pop("source"), "bus_g_per_pkm", "source"),
        (lambda p: p.pop("metro_g_per_pkm"), "metro_g_per_pkm", None),
        (lambda p: p.update(warp_g_per_pkm={"value": "1"}), "warp_g_per_pkm", None),
        (lambda p: p.update(bus_g_per_pkm="52"), "bus_g_per_pkm", None),
    ],
)
def test_bad_parameters_are_refused_by_key(app: Flask, staff: dict[str, Api], change: Any, key: str,
                                           field: str | None) -> None:
    parameters = travel_parameters(app)
    change(parameters)
    response = staff["operator1"].post(V, {"region": "430600", "parameters": parameters})
    assert (response.status_code, response.get_json()["error"]) == (422, "invalid_parameters")
    errors = response.get_json()["errors"]["json"]["parameters"]
    assert key in errors
    if field:
        assert field in errors[key]
    assert staff["operator1"].get(V).get_json()["items"][0]["version"] == 1  # nothing was written


def test_integer_parameters(app: Flask, staff: dict[str, Api]) -> None:
    with app.app_context():
        parameters = copy.deepcopy(registry().get("household_electricity").defaults)
    parameters["max_period_days"]["value"] = "31.5"
    response = staff["operator1"].post("/api/v1/admin/methodologies/household_electricity/versions",
                                       {"region": "430600", "parameters": parameters})
    assert response.get_json()["errors"]["json"]["parameters"]["max_period_days"]["value"] == ["must be a whole number"]


def test_unknown_methodology_region_and_scope(app: Flask, staff: dict[str, Api]) -> None:
    body = {"region": "430600", "parameters": travel_parameters(app)}
    assert staff["operator1"].post("/api/v1/admin/methodologies/teleport/versions", body).status_code == 404
    unknown = staff["operator1"].post(V, {**body, "region": "999999"})
    assert unknown.status_code == 422 and "region" in unknown.get_json()["errors"]["json"]
    assert staff["operator1"].post(V, {**body, "region": "430200"}).get_json()["error"] == "out_of_scope"
    national = staff["operator1"].post(V, {**body, "region": None})
    assert (national.status_code, national.get_json()["error"]) == (403, "out_of_scope")
    assert staff["operator1"].get(f"{V}/99").status_code == 404


def test_a_submitted_version_cannot_be_edited(app: Flask, staff: dict[str, Api]) -> None:
    version = draft(staff["operator1"], app)["version"]
    edited = staff["operator1"].patch(f"{V}/{version}", {"note": "better reasoning"})
    assert edited.get_json()["note"] == "better reasoning"
    assert staff["auditor1"].patch(f"{V}/{version}", {"note": "x"}).get_json()["error"] == "not_author"
    staff["operator1"].post(f"{V}/{version}/submit")
    again = staff["operator1"].patch(f"{V}/{version}", {"parameters": travel_parameters(app, bus_g_per_pkm="1")})
    assert (again.status_code, again.get_json()["error"]) == (409, "not_a_draft")


def test_the_database_fixes_a_decided_version(app: Flask, staff: dict[str, Api]) -> None:
    approved(staff, app)
    with app.app_context():
        with pytest.raises(DatabaseError):
            db.session.execute(text("UPDATE policy_versions SET payload_sha256 = 'x' WHERE version = 2"))
        db.session.rollback()
        with pytest.raises(DatabaseError):
            db.session.execute(text("DELETE FROM policy_versions WHERE version = 2"))


def test_effective_from_must_be_in_the_future(app: Flask, staff: dict[str, Api]) -> None:
    response = staff["operator1"].post(V, {"region": "430600", "parameters": travel_parameters(app),
                                           "effective_from": (utcnow() - timedelta(days=1)).isoformat()})
    assert response.status_code == 422 and "effective_from" in response.get_json()["errors"]["json"]
    naive = staff["operator1"].post(V, {"region": "430600", "parameters": travel_parameters(app),
                                        "effective_from": "2030-01-01T00:00:00"})
    assert naive.status_code == 422 and "effective_from" in naive.get_json()["errors"]["json"]


def test_the_version_in_force_when_the_activity_happened(app: Flask, staff: dict[str, Api]) -> None:
    before = utcnow() - timedelta(minutes=1)
    version = approved(staff, app)
    after = utcnow() + timedelta(seconds=1)
    assert bus_grams(app, "430611", after) == (440, "travel@2")      # Junshan inherits Yueyang's: 10 × (104 − 60)
    assert bus_grams(app, "430600", after) == (440, "travel@2")
    assert bus_grams(app, "430204", after) == (520, "travel@1")      # Shifeng: the national default
    assert bus_grams(app, "430611", before) == (520, "travel@1")     # before Yueyang's took effect
    assert version["region"] == "430600"


def test_a_future_version_waits_for_its_time(app: Flask, staff: dict[str, Api]) -> None:
    start = utcnow() + timedelta(hours=1)
    approved(staff, app, effective_from=start.isoformat())
    assert bus_grams(app, "430602", start - timedelta(minutes=1))[1] == "travel@1"
    assert bus_grams(app, "430602", start + timedelta(minutes=1))[1] == "travel@2"


def test_at_most_one_version_takes_effect_at_an_instant(app: Flask, staff: dict[str, Api]) -> None:
    start = (utcnow() + timedelta(days=1)).isoformat()
    approved(staff, app, effective_from=start)
    second = draft(staff["operator1"], app, effective_from=start)["version"]
    staff["operator1"].post(f"{V}/{second}/submit")
    clash = staff["auditor1"].post(f"{V}/{second}/approve")
    assert (clash.status_code, clash.get_json()["error"]) == (409, "effective_from_taken")


def test_reject_needs_a_reason_and_is_final(app: Flask, staff: dict[str, Api]) -> None:
    version = draft(staff["operator1"], app)["version"]
    staff["operator1"].post(f"{V}/{version}/submit")
    assert staff["auditor1"].post(f"{V}/{version}/reject", {"reason": ""}).status_code == 422
    rejected = staff["auditor1"].post(f"{V}/{version}/reject", {"reason": "no source for the bus factor"})
    assert rejected.get_json()["status"] == "rejected"
    assert rejected.get_json()["decision_reason"] == "no source for the bus factor"
    assert staff["auditor2"].post(f"{V}/{version}/approve").status_code == 409


def test_retiring_falls_back_and_the_last_national_version_stays(app: Flask, staff: dict[str, Api]) -> None:
    version = approved(staff, app)["version"]
    assert staff["operator1"].post(f"{V}/{version}/retire", {"reason": "x"}).get_json()["error"] == "role_required"
    retired = staff["auditor2"].post(f"{V}/{version}/retire", {"reason": "new fleet data expected"})
    assert retired.get_json()["status"] == "retired"
    assert bus_grams(app, "430611", utcnow() + timedelta(seconds=1))[1] == "travel@1"
    make_staff(app, "chief-auditor", "auditor")  # no regional scope
    chief = login(staff["auditor1"].as_token(None), "chief-auditor")
    last = chief.post(f"{V}/1/retire", {"reason": "x"})
    assert (last.status_code, last.get_json()["error"]) == (409, "last_national_version")


def test_diff_names_what_changed(app: Flask, staff: dict[str, Api]) -> None:
    draft(staff["operator1"], app)
    result = staff["auditor1"].get(f"{V}/2/diff?against=1").get_json()
    assert (result["left"], result["right"]) == ("travel@1", "travel@2")
    assert [c["key"] for c in result["changes"]] == ["bus_g_per_pkm"]
    change = result["changes"][0]
    assert (change["before"]["value"], change["after"]["value"]) == ("52", "60")
    assert set(change["changed"]) == {"value", "source", "vintage"}
    assert result["meta"]["region"] == {"before": None, "after": "430600"}


def _seed_trips(app: Flask, api: Api) -> dict[str, int]:
    ids = {}
    for name, region in (("yy-rider", "430602"), ("zz-rider", "430204")):
        ids[name] = sign_up(api, name, region=region).get("/api/v1/me").get_json()["id"]
    with app.app_context():
        now = utcnow()
        quantifier = Quantifier()
        for day in range(1, 11):
            for name, region in (("yy-rider", "430602"), ("zz-rider", "430204")):
                for kind, km in (("bus_ride", 8 + day), ("bike_ride", 3)):
                    activities.record_one(
                        activity_type=kind, occurred_at=now - timedelta(days=day, hours=2),
                        data={"distance_km": km, "duration_min": 30}, region=region, source="demo",
                        resident_id=ids[name], quantifier=quantifier)
        db.session.commit()
    return ids


def _counts(app: Flask) -> tuple[int, ...]:
    with app.app_context():
        models = (Activity, Reduction, PolicyVersion)
        return tuple(db.session.scalar(select(func.count()).select_from(m)) for m in models)


def test_simulate_shows_current_against_proposed_and_writes_nothing(app: Flask, api: Api,
                                                                   staff: dict[str, Api]) -> None:
    _seed_trips(app, api)
    version = draft(staff["operator1"], app)["version"]
    staff["operator1"].post(f"{V}/{version}/submit")
    before = _counts(app)
    result = staff["auditor1"].post(f"{V}/{version}/simulate", {"days": 30}).get_json()
    assert _counts(app) == before
    # Only Yueyang's activities: Shifeng (Zhuzhou) keeps the national default either way.
    assert {g["region"] for g in result["groups"]} == {"430602"}
    bus = next(g for g in result["groups"] if g["activity_type"] == "bus_ride")
    bike = next(g for g in result["groups"] if g["activity_type"] == "bike_ride")
    km = sum(8 + day for day in range(1, 11))                                   # 135 km of bus trips
    assert (bus["activities"], bus["current_g"], bus["proposed_g"]) == (10, km * 52, km * 44)
    assert bike["change_g"] == 0
    assert result["totals"]["change_g"] == km * 44 - km * 52
    largest = result["largest_changes"][0]
    assert (largest["current_g"], largest["proposed_g"]) == (18 * 52, 18 * 44)  # the 18 km trip
    assert result["activities"] == 20 and result["would_be_rejected"] == 0

    shorter = staff["auditor1"].post(f"{V}/{version}/simulate", {"days": 3}).get_json()
    assert shorter["activities"] < result["activities"]
    assert staff["auditor1"].post(f"{V}/{version}/simulate", {"days": 0}).status_code == 422
    assert staff["auditor1"].post(f"{V}/1/simulate", {"days": 30}).get_json()["error"] == "not_simulatable"


def test_simulate_reports_what_stricter_limits_would_reject(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    _seed_trips(app, api)
    version = staff["operator1"].post(V, {"region": "430600",
                                          "parameters": travel_parameters(app, bus_max_distance_km="12")}).get_json()
    result = staff["operator1"].post(f"{V}/{version['version']}/simulate", {"days": 30}).get_json()
    assert result["would_be_rejected"] == 6                                     # the 13 … 18 km bus trips


def test_staff_of_another_region_can_neither_reject_nor_simulate(app: Flask, api: Api,
                                                                 staff: dict[str, Api]) -> None:
    _seed_trips(app, api)
    version = draft(staff["operator1"], app)["version"]
    staff["operator1"].post(f"{V}/{version}/submit")
    make_staff(app, "zz-auditor", "auditor", scope="430200")
    make_staff(app, "zz-operator", "operator", scope="430200")
    rejected = login(api, "zz-auditor").post(f"{V}/{version}/reject", {"reason": "not yours"})
    assert (rejected.status_code, rejected.get_json()["error"]) == (403, "out_of_scope")
    simulated = login(api, "zz-operator").post(f"{V}/{version}/simulate", {"days": 30})
    assert (simulated.status_code, simulated.get_json()["error"]) == (403, "out_of_scope")
    # A national version simulated by Zhuzhou staff shows Zhuzhou's activities only.
    make_staff(app, "hn-operator", "operator")
    national = draft(login(api, "hn-operator"), app, region=None)["version"]
    seen = login(api, "zz-operator").post(f"{V}/{national}/simulate", {"days": 30}).get_json()
    assert seen["activities"] > 0 and {g["region"] for g in seen["groups"]} == {"430204"}


def test_public_methodologies_show_what_is_in_force(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    def travel_in(region: str) -> dict[str, Any]:
        body = api.as_token(None).get(f"/api/v1/public/methodologies?region={region}").get_json()
        return next(m for m in body["regions"][0]["methodologies"] if m["id"] == "travel")

    default = travel_in("430611")
    assert (default["ref"], default["version_region"], default["inherited"]) == ("travel@1", None, True)
    assert "distance_km × (baseline_g_per_pkm − mode_g_per_pkm)" in default["formula"]
    bus = next(p for p in default["parameters"] if p["name"] == "bus_g_per_pkm")
    assert (bus["value"], bus["unit"], bus["source"]) == ("52", "g CO2/pkm", "DB11/T 3043-2024, bus")
    approved(staff, app)
    now_in_force = travel_in("430611")
    assert (now_in_force["ref"], now_in_force["version_region"]) == ("travel@2", "430600")
    everything = api.as_token(None).get("/api/v1/public/methodologies").get_json()["regions"]
    assert everything[0]["region"] is None and len(everything) == 16
    assert api.get("/api/v1/public/methodologies?region=999999").status_code == 422


def test_replay_matches_and_finds_tampering(app: Flask, api: Api) -> None:
    from click.testing import CliRunner

    from backend.cli import main

    _seed_trips(app, api)
    with app.app_context():
        summary = replay_many()
        assert (summary["checked"], summary["problems"]) == (40, [])
        target = db.session.scalars(select(Reduction).order_by(Reduction.id)).first()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ALTER TABLE reductions DISABLE TRIGGER USER"))
        else:
            db.session.execute(text("DROP TRIGGER reductions_immutable"))
        db.session.execute(text(f"UPDATE reductions SET grams = grams + 1000 WHERE id = {target.id}"))
        db.session.commit()
        problems = replay_many()["problems"]
        assert [(p["reduction_id"], p["problem"]) for p in problems] == [(target.id, "replay gives different grams")]
    result = CliRunner().invoke(main, ["reductions", "replay"], obj={"app": app})
    assert result.exit_code == 1 and "1 do not" in result.output


def test_the_registry_refuses_edits_and_deletes(app: Flask, api: Api) -> None:
    _seed_trips(app, api)
    with app.app_context():
        reduction_id = db.session.scalar(select(func.min(Reduction.id)))
        for statement in (f"UPDATE reductions SET grams = 1 WHERE id = {reduction_id}",
                          f"DELETE FROM reductions WHERE id = {reduction_id}"):
            with pytest.raises(DatabaseError, match="append-only"):
                db.session.execute(text(statement))
            db.session.rollback()
        db.session.execute(text(f"UPDATE reductions SET status = 'reversed' WHERE id = {reduction_id}"))
        db.session.commit()
        with pytest.raises(DatabaseError, match="final"):
            db.session.execute(text(f"UPDATE reductions SET status = 'certified' WHERE id = {reduction_id}"))


def test_a_new_formula_version_needs_a_new_approval(app: Flask, staff: dict[str, Api],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from methodologies.travel import Travel

    version = draft(staff["operator1"], app)["version"]
    staff["operator1"].post(f"{V}/{version}/submit")
    monkeypatch.setattr(Travel, "version", 2)
    refused = staff["auditor1"].post(f"{V}/{version}/approve")
    assert (refused.status_code, refused.get_json()["error"]) == (409, "formula_changed")
    from backend.services.quantification import NotQuantifiable

    with pytest.raises(NotQuantifiable, match="formula version 1"):
        bus_grams(app, "430602", utcnow())


_MOMENTS = st.integers(min_value=0, max_value=40).map(lambda h: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=h))


@given(spans=st.lists(st.tuples(st.sampled_from(["430602", "430600", None]), _MOMENTS,
                                st.one_of(st.none(), _MOMENTS)), max_size=8),
       asks=st.lists(st.tuples(st.sampled_from([["430602", "430600", "430000"], ["430600"], []]), _MOMENTS,
                               st.one_of(st.none(), st.integers(min_value=0, max_value=7))), max_size=30))
def test_remembered_answers_equal_a_fresh_lookup(spans: list[Any], asks: list[Any]) -> None:
    """The in-force index answers from its per-interval memo exactly as a lookup from scratch."""
    versions = [PolicyVersion(id=i, region_code=region, effective_from=start, retired_at=retired)
                for i, (region, start, retired) in enumerate(spans)]
    index = VersionIndex.build(versions)
    for chain, at, excluding in asks:
        assert index.resolve(chain, at, excluding=excluding) is index._lookup(chain, at, excluding)
