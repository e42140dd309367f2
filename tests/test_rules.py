"""Exchange rules: the files, their validation, inheritance, governance, and pure evaluation."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from backend.methodology.registry import BUILT_INS, load_registry
from backend.rules.evaluate import Claim, Usage, evaluate
from backend.rules.schema import parse_rule_file
from tests.conftest import Api

RULES = Path(__file__).parent.parent / "rules"
SCENARIOS = load_registry(BUILT_INS).types()


def _load(name: str) -> tuple[str, dict[str, Any]]:
    rule_file, problems = parse_rule_file((RULES / name).read_text(), SCENARIOS)
    assert problems == [] and rule_file is not None
    return rule_file.region, rule_file.rules


HUNAN = _load("430000-hunan.toml")[1]


def test_the_default_rules_are_those_of_the_methodology_document() -> None:
    assert HUNAN["points"] == {"default_per_kg": "100", "per_kg": {}}            # 1 point per 10 g
    caps = {(tuple(c["types"]), c["period"]): c["grams"] for c in HUNAN["caps"]}
    assert caps == {(("walk",), "day"): 300, (("bike_ride",), "day"): 2000,
                    (("bus_ride", "metro_ride"), "day"): 3000, (("carpool",), "day"): 3000,
                    (("recycling",), "month"): 20000}
    assert HUNAN["engagement"]["quiz"] == {"points": 5, "min_score": 60, "per_day": 1}
    assert HUNAN["expiry"] == {"policy": "end_of_next_year"}


@pytest.mark.parametrize("name", ["430000-hunan.toml", "430600-yueyang.toml", "430204-shifeng.toml"])
def test_every_shipped_rule_file_is_valid(name: str) -> None:
    _load(name)


def _problems(text: str) -> list[str]:
    return [str(p) for p in parse_rule_file(text, SCENARIOS)[1]]


def test_bad_rule_files_name_the_line_and_field() -> None:
    base = (RULES / "430000-hunan.toml").read_text()
    carpool_line = _line_of(base, 'types = ["carpool"]')
    assert _problems(base.replace('types = ["carpool"]', 'types = ["teleport"]')) == [
        f"line {carpool_line}: caps.3.types: unknown scenario 'teleport'; known: " + ", ".join(sorted(SCENARIOS))]
    negative = _problems(base.replace('default_per_kg = "100"', 'default_per_kg = "-5"'))
    assert negative == [f"line {_line_of(base, 'default_per_kg')}: points.default_per_kg: must be at least 0"]
    wrong_unit = _problems(base.replace("points = 100_000_000", "yuan = 1_000_000"))
    assert f"line {_line_of(base, 'points = 100_000_000')}: budget.yuan: unknown field: a budget is given in whole " \
           "points, as budget.points" in wrong_unit
    cap_in_kg = _problems(base.replace("grams = 300", "kg = 0.3"))
    assert any("caps.0.kg: unknown field: a cap is given in whole grams" in p for p in cap_in_kg)
    assert _problems("name = [")[0].startswith("line 1: toml:")


def _line_of(text: str, fragment: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if fragment in line)


def test_campaigns_for_the_same_scenario_may_not_overlap() -> None:
    text = (RULES / "430600-yueyang.toml").read_text() + """
[[campaigns]]
id = "spring-walk"
name = "Spring walking"
types = ["walk"]
starts_on = 2027-03-20
ends_on = 2027-04-10
multiplier = "2"
budget_points = 1000
"""
    problems = _problems(text)
    assert len(problems) == 1
    assert "campaigns.1.starts_on: overlaps campaign 'yy-green-travel-2027-03' for walk" in problems[0]
    last_start = max(i for i, line in enumerate(text.splitlines(), start=1) if "starts_on = 2027-03-20" in line)
    assert problems[0].startswith(f"line {last_start}:")
    shifted = text.replace("starts_on = 2027-03-20", "starts_on = 2027-04-01")
    assert _problems(shifted) == []


def test_a_type_gets_one_cap_per_period_however_many_caps_come_before() -> None:
    text = (RULES / "430000-hunan.toml").read_text() + """
[[caps]]
types = ["bus_ride"]
period = "month"
grams = 60000

[[caps]]
types = ["bus_ride"]
period = "month"
grams = 90000
"""
    problems = _problems(text)
    assert len(problems) == 1 and "'bus_ride' already has a month cap" in problems[0]


def test_the_cli_validates_a_file(app: Flask, tmp_path: Path) -> None:
    from backend.cli import main

    good = CliRunner().invoke(main, ["rules", "validate", str(RULES / "430204-shifeng.toml")], obj={"app": app})
    assert good.exit_code == 0 and "valid rules for region 430204" in good.output
    bad = tmp_path / "bad.toml"
    bad.write_text((RULES / "430000-hunan.toml").read_text().replace('"100"', '"-1"'))
    result = CliRunner().invoke(main, ["rules", "validate", str(bad)], obj={"app": app})
    assert result.exit_code == 1 and "bad.toml:line 11: points.default_per_kg" in result.output


def test_child_regions_inherit_their_parents_rules(api: Api) -> None:
    regions = {r["region"]: r["rules"] for r in api.get("/api/v1/public/rules").get_json()["regions"]}
    assert regions["430611"]["published_by_region"] == "430600" and regions["430611"]["inherited"]
    assert regions["430600"]["points"]["per_kg"] == {"bus_ride": "120", "metro_ride": "120"}
    assert regions["430400"]["published_by_region"] == "430000"
    assert regions["430204"]["published_by_region"] == "430204" and not regions["430204"]["inherited"]
    assert regions["430204"]["engagement"]["quiz"]["points"] == 10
    one = api.get("/api/v1/public/rules?region=430611").get_json()["regions"]
    assert [r["region"] for r in one] == ["430611"]


def test_rule_versions_are_governed_like_methodology_versions(api: Api, staff: dict[str, Api]) -> None:
    rules = api.get("/api/v1/public/rules?region=430600").get_json()["regions"][0]["rules"]
    payload = {k: rules[k] for k in ("name", "points", "caps", "engagement", "campaigns", "expiry", "budget",
                                     "settlement")}
    payload["points"]["per_kg"]["bike_ride"] = "150"
    draft = staff["operator1"].post("/api/v1/admin/rules/versions", {"region": "430600", "rules": payload})
    assert draft.status_code == 201, draft.get_json()
    number = draft.get_json()["version"]
    staff["operator1"].post(f"/api/v1/admin/rules/versions/{number}/submit")
    assert staff["operator1"].post(f"/api/v1/admin/rules/versions/{number}/approve").status_code == 403
    assert staff["auditor1"].post(f"/api/v1/admin/rules/versions/{number}/approve").status_code == 200
    now_in_force = api.get("/api/v1/public/rules?region=430611").get_json()["regions"][0]["rules"]
    assert now_in_force["ref"] == f"exchange@{number}" and now_in_force["points"]["per_kg"]["bike_ride"] == "150"
    payload["caps"][0]["types"] = ["teleport"]
    bad = staff["operator1"].post("/api/v1/admin/rules/versions", {"region": "430600", "rules": payload})
    assert (bad.status_code, bad.get_json()["error"]) == (422, "invalid_rules")
    assert "caps.0.types: unknown scenario 'teleport'" in bad.get_json()["message"]


# --- evaluation ------------------------------------------------------------------------------------

DAY = date(2026, 6, 15)


def _eval(activity_type: str, grams: int, usage: Usage | None = None, rules: dict[str, Any] = HUNAN,
          day: date = DAY, score: int | None = None):  # type: ignore[no-untyped-def]
    return evaluate(Claim(activity_type, grams, day, score), usage or Usage(), rules, "exchange@1")


def test_one_point_per_ten_grams_floored_per_activity() -> None:
    assert (_eval("bus_ride", 650).points, _eval("bus_ride", 659).points, _eval("bus_ride", 9).points) == (65, 65, 0)


def test_caps_limit_points_never_grams() -> None:
    walk = _eval("walk", 244, Usage({0: 150}))                                   # 300 g a day, 150 used
    assert (walk.creditable_grams, walk.capped_grams, walk.points) == (150, 94, 15)
    assert walk.trace["cap_day"].startswith("walk: 300 g per day, 150 g used before")
    full = _eval("walk", 244, Usage({0: 300}))
    assert (full.points, full.capped_grams) == (0, 244)
    # Bus and metro share one cap of 3000 g: index 2 in the default rules.
    assert _eval("metro_ride", 1440, Usage({2: 2500})).creditable_grams == 500
    assert _eval("recycling", 8652, Usage({4: 15000})).creditable_grams == 5000   # 20 kg a month


def test_quizzes_earn_engagement_points_once_a_day() -> None:
    passed = _eval("quiz", 0, score=80)
    assert (passed.points, passed.creditable_grams) == (5, 0)
    assert _eval("quiz", 0, score=59).points == 0
    assert _eval("quiz", 0, Usage(engagement_today=1), score=100).points == 0


def test_campaign_bonus_and_its_budget() -> None:
    _, yueyang = _load("430600-yueyang.toml")
    in_campaign = date(2027, 3, 10)
    bus = _eval("bus_ride", 650, rules=yueyang, day=in_campaign)                  # 650 g × 120/kg = 78, × 1.5
    assert (bus.base_points, bus.bonus_points, bus.points, bus.campaign) == (78, 39, 117, "yy-green-travel-2027-03")
    assert _eval("metro_ride", 650, rules=yueyang, day=in_campaign).bonus_points == 0   # not in the campaign
    assert _eval("bus_ride", 650, rules=yueyang, day=date(2027, 4, 1)).bonus_points == 0
    almost = _eval("bus_ride", 650, Usage(campaign_bonus_used=2_000_000 - 10), rules=yueyang, day=in_campaign)
    assert (almost.bonus_points, almost.trace["campaign_budget"]) == (10, "partly exhausted")


# --- green levels ------------------------------------------------------------------------------------


def test_the_shipped_rules_have_green_levels() -> None:
    assert HUNAN["levels"] == [{"name": "绿芽 Sprout", "min_grams": 0}, {"name": "绿苗 Seedling", "min_grams": 10_000},
                               {"name": "绿树 Tree", "min_grams": 100_000},
                               {"name": "绿林 Forest", "min_grams": 1_000_000}]
    _, yueyang = _load("430600-yueyang.toml")
    assert [level["min_grams"] for level in yueyang["levels"]] == [0, 8_000, 80_000, 800_000, 2_000_000]
    _, shifeng = _load("430204-shifeng.toml")
    assert "levels" not in shifeng                           # no levels given: none in the canonical form


def test_levels_are_optional_and_do_not_change_the_digest_of_rules_without_them() -> None:
    from backend.methodology import parameters as params

    without = (RULES / "430000-hunan.toml").read_text().split("# Green levels")[0]
    rule_file, problems = parse_rule_file(without, SCENARIOS)
    assert problems == [] and rule_file is not None and "levels" not in rule_file.rules
    assert params.digest(rule_file.rules) == params.digest({k: v for k, v in HUNAN.items() if k != "levels"})


def _with_levels(levels: str) -> str:
    return (RULES / "430000-hunan.toml").read_text().split("# Green levels")[0] + levels


@pytest.mark.parametrize(("levels", "expected"), [
    ('[[levels]]\nname = "A"\nmin_grams = 5\n', "levels.0.min_grams: the first level must start at 0 grams"),
    ('[[levels]]\nname = "A"\nmin_grams = 0\n[[levels]]\nname = "B"\nmin_grams = 0\n',
     "levels.1.min_grams: must be more than the level before (0 g): levels climb strictly"),
    ('[[levels]]\nname = "A"\nmin_grams = 0\n[[levels]]\nname = "A"\nmin_grams = 10\n',
     "levels.1.name: 'A' is used twice (levels[0])"),
    ('[[levels]]\nname = "A"\nmin_grams = -1\n', "levels.0.min_grams: must be a whole number of grams, 0 to 10^15"),
    ('[[levels]]\nname = "A"\nmin_grams = 1.5\n', "levels.0.min_grams: Not a valid integer."),
    ('[[levels]]\nname = ""\nmin_grams = 0\n', "levels.0.name: Length must be between 1 and 32."),
    ('[[levels]]\nname = "' + "x" * 33 + '"\nmin_grams = 0\n', "levels.0.name: Length must be between 1 and 32."),
    ('[[levels]]\nname = "  "\nmin_grams = 0\n', "levels.0.name: must not be blank"),
    ('[[levels]]\nname = "A"\nkg = 0\n', "levels.0.kg: unknown field: a level is given as name and min_grams"),
])
def test_bad_levels_name_the_line_and_field(levels: str, expected: str) -> None:
    text = _with_levels(levels)
    problems = _problems(text)
    assert len(problems) >= 1 and any(expected in p for p in problems), problems
    field = expected.split(":")[0]
    if field.count(".") == 2:  # located on the line of the field (or of its table)
        problem = next(p for p in problems if expected in p)
        line = int(problem.split(":")[0].removeprefix("line "))
        assert line > _line_of(text, "yuan_per_point")


def test_levels_are_checked_when_an_operator_drafts_rules(api: Api, staff: dict[str, Api]) -> None:
    rules = api.get("/api/v1/public/rules?region=430600").get_json()["regions"][0]["rules"]
    assert [level["name"] for level in rules["levels"]][:2] == ["绿芽 Sprout", "绿苗 Seedling"]
    payload = {k: rules[k] for k in ("name", "points", "caps", "engagement", "campaigns", "expiry", "budget",
                                     "settlement", "levels")}
    payload["levels"][2]["min_grams"] = 1
    payload["levels"].append({"name": "", "min_grams": 10**16})
    bad = staff["operator1"].post("/api/v1/admin/rules/versions", {"region": "430600", "rules": payload})
    assert (bad.status_code, bad.get_json()["error"]) == (422, "invalid_rules")
    assert "levels.5.name: Length must be between 1 and 32" in bad.get_json()["message"]
    assert "levels.5.min_grams: must be a whole number of grams" in bad.get_json()["message"]
    payload["levels"] = payload["levels"][:2]
    payload["levels"][1]["min_grams"] = 0
    bad = staff["operator1"].post("/api/v1/admin/rules/versions", {"region": "430600", "rules": payload})
    assert "levels.1.min_grams: must be more than the level before (0 g)" in bad.get_json()["message"]
    assert bad.get_json()["errors"]["json"]["rules"]["levels"] == {
        "1": {"min_grams": ["must be more than the level before (0 g): levels climb strictly"]}}
    payload["levels"] = []
    bad = staff["operator1"].post("/api/v1/admin/rules/versions", {"region": "430600", "rules": payload})
    assert "levels: give 1 to 50 levels, lowest first" in bad.get_json()["message"]
