"""Online communities: create, browse with cursor pagination, join, leave."""

from __future__ import annotations

from tests.conftest import Api, sign_up


def _create(api: Api, name: str, region: str = "430602") -> dict:
    response = api.post("/api/v1/communities", {"name": name, "region": region, "description": "骑行"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_join_leave(api: Api, resident: Api) -> None:
    community = _create(resident, "南湖绿色骑行团")
    assert community["member_count"] == 1 and community["is_member"] is True
    wang = sign_up(api, "wangfang")
    joined = wang.post(f"/api/v1/communities/{community['id']}/join").get_json()
    assert joined["member_count"] == 2
    again = wang.post(f"/api/v1/communities/{community['id']}/join")
    assert (again.status_code, again.get_json()["error"]) == (409, "already_member")
    assert [c["name"] for c in wang.get("/api/v1/me").get_json()["communities"]] == ["南湖绿色骑行团"]
    assert wang.post(f"/api/v1/communities/{community['id']}/leave").status_code == 204
    assert wang.post(f"/api/v1/communities/{community['id']}/leave").status_code == 409
    assert wang.get("/api/v1/me").get_json()["communities"] == []


def test_a_resident_can_be_in_several(resident: Api) -> None:
    _create(resident, "骑行团")
    _create(resident, "植树志愿者", "430611")
    assert len(resident.get("/api/v1/me").get_json()["communities"]) == 2


def test_names_are_unique_per_region(resident: Api) -> None:
    _create(resident, "骑行团")
    dup = resident.post("/api/v1/communities", {"name": "骑行团", "region": "430602"})
    assert (dup.status_code, dup.get_json()["errors"]) == (409, {"json": {"name": ["is taken in this region"]}})
    _create(resident, "骑行团", "430611")


def test_bad_input(resident: Api) -> None:
    def field_of(body: dict) -> list[str]:
        return list(resident.post("/api/v1/communities", body).get_json()["errors"]["json"])

    assert field_of({"name": "x", "region": "999999"}) == ["region"]
    assert field_of({"name": "x" * 65, "region": "430602"}) == ["name"]
    assert field_of({"name": "  ", "region": "430602"}) == ["name"]
    assert resident.post("/api/v1/communities/999999/join").status_code == 404


def test_browse_pages_with_a_cursor(resident: Api) -> None:
    for i in range(7):
        _create(resident, f"社区{i}", "430611" if i % 2 else "430602")
    first = resident.get("/api/v1/communities?limit=3").get_json()
    assert [c["name"] for c in first["items"]] == ["社区6", "社区5", "社区4"]
    second = resident.get(f"/api/v1/communities?limit=3&cursor={first['next_cursor']}").get_json()
    third = resident.get(f"/api/v1/communities?limit=3&cursor={second['next_cursor']}").get_json()
    assert [c["name"] for c in second["items"] + third["items"]] == ["社区3", "社区2", "社区1", "社区0"]
    assert third["next_cursor"] is None
    by_region = resident.get("/api/v1/communities?region=430611").get_json()["items"]
    assert {c["region"] for c in by_region} == {"430611"} and len(by_region) == 3
    assert [c["name"] for c in resident.get("/api/v1/communities?q=区5").get_json()["items"]] == ["社区5"]
    assert resident.get("/api/v1/communities?q=%25").get_json()["items"] == []


def test_bad_cursor_and_limit(resident: Api) -> None:
    bad = resident.get("/api/v1/communities?cursor=garbage!")
    assert bad.status_code == 422 and "cursor" in bad.get_json()["errors"]["query"]
    assert resident.get("/api/v1/communities?limit=0").status_code == 422
    assert resident.get("/api/v1/communities?limit=201").status_code == 422
    assert resident.get("/api/v1/communities?unknown=1").status_code == 422
