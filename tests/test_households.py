"""Households: one per resident, invite codes, ownership, leaving, and concurrency."""

from __future__ import annotations

from flask import Flask

from tests.conftest import Api, on_postgres, run_together, sign_up


def _create(api: Api, name: str = "李华家") -> dict:
    response = api.post("/api/v1/households", {"name": name})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_join_and_see_members(api: Api, resident: Api) -> None:
    household = _create(resident)
    assert len(household["invite_code"]) == 8
    assert household["members"][0]["is_owner"] is True

    wang = sign_up(api, "wangfang")
    joined = wang.post("/api/v1/households/join", {"invite_code": household["invite_code"].lower()})
    assert joined.status_code == 200
    assert [m["display_name"] for m in joined.get_json()["members"]] == ["Lihua", "Wangfang"]
    assert wang.get("/api/v1/me").get_json()["household"] == {
        "id": household["id"], "name": "李华家", "is_owner": False,
    }
    assert wang.get(f"/api/v1/households/{household['id']}").status_code == 200


def test_one_household_per_resident(api: Api, resident: Api) -> None:
    first = _create(resident)
    again = resident.post("/api/v1/households", {"name": "Second"})
    assert (again.status_code, again.get_json()["error"]) == (409, "already_in_household")
    other = _create(sign_up(api, "wangfang"), "王家")
    join = resident.post("/api/v1/households/join", {"invite_code": other["invite_code"]})
    assert (join.status_code, join.get_json()["error"]) == (409, "already_in_household")
    assert resident.get("/api/v1/me").get_json()["household"]["id"] == first["id"]


def test_non_members_cannot_see_a_household(api: Api, resident: Api) -> None:
    household = _create(resident)
    stranger = sign_up(api, "stranger")
    response = stranger.get(f"/api/v1/households/{household['id']}")
    assert (response.status_code, response.get_json()["error"]) == (403, "not_a_member")
    assert stranger.get("/api/v1/households/999999").status_code == 404


def test_unknown_invite_code(resident: Api) -> None:
    response = resident.post("/api/v1/households/join", {"invite_code": "ZZZZZZZZ"})
    assert response.status_code == 422
    assert "invite_code" in response.get_json()["errors"]["json"]


def test_rotating_the_invite_code_kills_the_old_one(api: Api, resident: Api) -> None:
    household = _create(resident)
    rotated = resident.post(f"/api/v1/households/{household['id']}/invite-code").get_json()
    assert rotated["invite_code"] != household["invite_code"]
    wang = sign_up(api, "wangfang")
    assert wang.post("/api/v1/households/join", {"invite_code": household["invite_code"]}).status_code == 422
    assert wang.post("/api/v1/households/join", {"invite_code": rotated["invite_code"]}).status_code == 200
    # Only the owner rotates.
    assert wang.post(f"/api/v1/households/{household['id']}/invite-code").get_json()["error"] == "not_owner"


def test_owner_transfers_before_leaving(api: Api, resident: Api) -> None:
    household = _create(resident)
    wang = sign_up(api, "wangfang")
    wang.post("/api/v1/households/join", {"invite_code": household["invite_code"]})
    wang_id = wang.get("/api/v1/me").get_json()["id"]

    leave = resident.post(f"/api/v1/households/{household['id']}/leave")
    assert (leave.status_code, leave.get_json()["error"]) == (409, "owner_must_transfer")
    bad = resident.post(f"/api/v1/households/{household['id']}/transfer", {"resident_id": 999999})
    assert bad.status_code == 422 and "resident_id" in bad.get_json()["errors"]["json"]
    wrong_type = resident.post(f"/api/v1/households/{household['id']}/transfer", {"resident_id": "2"})
    assert wrong_type.status_code == 422

    moved = resident.post(f"/api/v1/households/{household['id']}/transfer", {"resident_id": wang_id})
    assert moved.get_json()["owner_resident_id"] == wang_id
    assert resident.post(f"/api/v1/households/{household['id']}/leave").status_code == 200
    assert resident.get("/api/v1/me").get_json()["household"] is None
    assert wang.get("/api/v1/me").get_json()["household"]["is_owner"] is True


def test_last_member_leaving_closes_the_household(resident: Api) -> None:
    household = _create(resident)
    closed = resident.post(f"/api/v1/households/{household['id']}/leave").get_json()
    assert closed["status"] == "closed"
    assert closed["invite_code"] is None
    # And the resident may start a new one.
    assert resident.post("/api/v1/households", {"name": "New home"}).status_code == 201


def test_owner_removes_a_member(api: Api, resident: Api) -> None:
    household = _create(resident)
    wang = sign_up(api, "wangfang")
    wang.post("/api/v1/households/join", {"invite_code": household["invite_code"]})
    wang_id = wang.get("/api/v1/me").get_json()["id"]
    me_id = resident.get("/api/v1/me").get_json()["id"]
    assert wang.delete(f"/api/v1/households/{household['id']}/members/{me_id}").get_json()["error"] == "not_owner"
    removed = resident.delete(f"/api/v1/households/{household['id']}/members/{wang_id}")
    assert [m["resident_id"] for m in removed.get_json()["members"]] == [me_id]


def test_household_size_is_capped(api: Api, resident: Api) -> None:
    household = _create(resident)
    for i in range(11):
        assert sign_up(api, f"member{i}").post(
            "/api/v1/households/join", {"invite_code": household["invite_code"]}
        ).status_code == 200
    full = sign_up(api, "onetoomany").post("/api/v1/households/join", {"invite_code": household["invite_code"]})
    assert (full.status_code, full.get_json()["error"]) == (409, "household_full")


@on_postgres
def test_concurrent_joins_put_a_resident_in_one_household_only(app: Flask, api: Api) -> None:
    """One resident joins two households at once: the database lets exactly one succeed."""
    codes = [_create(sign_up(api, f"owner{i}"), f"House {i}")["invite_code"] for i in range(2)]
    joiner = sign_up(api, "joiner")

    def join(code: str) -> int:
        return app.test_client().post("/api/v1/households/join", json={"invite_code": code},
                                      headers={"Authorization": f"Bearer {joiner.token}"}).status_code

    assert sorted(run_together(join, [(code,) for code in codes])) == [200, 409]


@on_postgres
def test_concurrent_joins_respect_the_size_cap(app: Flask, api: Api, resident: Api) -> None:
    household = _create(resident)
    for i in range(9):
        sign_up(api, f"member{i}").post("/api/v1/households/join", {"invite_code": household["invite_code"]})
    joiners = [sign_up(api, f"late{i}") for i in range(6)]  # 10 members now, room for 2 more

    def join(token: str) -> int:
        return app.test_client().post("/api/v1/households/join", json={"invite_code": household["invite_code"]},
                                      headers={"Authorization": f"Bearer {token}"}).status_code

    assert sorted(run_together(join, [(j.token,) for j in joiners])) == [200, 200, 409, 409, 409, 409]
    members = resident.get(f"/api/v1/households/{household['id']}").get_json()["members"]
    assert len(members) == 12
