"""Sign-up, profile, and the bad input a sign-up form gets."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, Api, sign_up


def _signup(api: Api, **fields: object):  # type: ignore[no-untyped-def]
    body = {"username": "xiaoming", "password": PASSWORD, "display_name": "小明", "region": "430602"}
    body.update(fields)
    return api.post("/api/v1/residents", {k: v for k, v in body.items() if v is not ...})


def test_sign_up_log_in_and_see_an_empty_account(api: Api) -> None:
    response = _signup(api)
    assert response.status_code == 201
    me = sign_up(api, "wangfang", region="430611").get("/api/v1/me").get_json()
    assert me["username"] == "wangfang"
    assert me["region"] == "430611"
    assert me["household"] is None
    assert me["communities"] == []


@pytest.mark.parametrize(
    ("fields", "field", "status"),
    [
        ({"username": "ab"}, "username", 422),
        ({"username": "x" * 65}, "username", 422),
        ({"username": "bad name!"}, "username", 422),
        ({"password": "short"}, "password", 422),
        ({"password": "x" * 129}, "password", 422),
        ({"password": "xiaoming"}, "password", 422),
        ({"display_name": ""}, "display_name", 422),
        ({"display_name": "   "}, "display_name", 422),
        ({"display_name": "名" * 65}, "display_name", 422),
        ({"region": "999999"}, "region", 422),
        ({"region": "4306"}, "region", 422),
        ({"region": 430602}, "region", 422),
        ({"username": ...}, "username", 422),
        ({"extra": "field"}, "extra", 422),
    ],
)
def test_bad_sign_up_names_the_field_and_creates_nothing(api: Api, fields, field, status) -> None:  # type: ignore[no-untyped-def]
    response = _signup(api, **fields)
    assert response.status_code == status
    assert field in response.get_json()["errors"]["json"]
    # Nothing was created: the same username signs up fine afterwards.
    assert _signup(api).status_code == 201


def test_duplicate_username_is_409(api: Api) -> None:
    assert _signup(api).status_code == 201
    again = _signup(api, username="XiaoMing")
    assert (again.status_code, again.get_json()["error"]) == (409, "username_taken")
    assert again.get_json()["errors"]["json"] == {"username": ["is taken"]}


def test_malformed_json_and_wrong_content_type(api: Api) -> None:
    response = api.client.post("/api/v1/residents", data="{bad", content_type="application/json")
    body = response.get_json()
    assert response.status_code == 400
    assert body["errors"] == {"json": {"_body": ["is not valid JSON"]}}
    not_json = api.client.post("/api/v1/residents", data="username=x", content_type="application/x-www-form-urlencoded")
    assert not_json.status_code in (415, 422)
    array = api.post("/api/v1/residents", ["not", "an", "object"])
    assert array.status_code == 422


def test_update_profile(resident: Api) -> None:
    response = resident.patch("/api/v1/me", {"display_name": "  李  华 ", "region": "430611"})
    assert response.status_code == 200
    assert response.get_json()["display_name"] == "李 华"
    assert response.get_json()["region"] == "430611"
    bad = resident.patch("/api/v1/me", {"region": "123456"})
    assert bad.status_code == 422 and "region" in bad.get_json()["errors"]["json"]
    assert resident.get("/api/v1/me").get_json()["region"] == "430611"


def test_regions_are_public_and_seeded(api: Api) -> None:
    codes = {r["code"]: r for r in api.get("/api/v1/regions").get_json()}
    for code in ("430000", "430200", "430204", "430400", "430600", "430611", "431100"):
        assert code in codes
    assert codes["430204"]["parent"] == "430200"
    assert codes["430611"]["level"] == "district"
