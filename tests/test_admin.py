"""Admin: merchants and their staff, staff users and roles."""

from __future__ import annotations

from flask import Flask

from tests.conftest import PASSWORD, Api, login, make_staff, sign_up


def test_merchant_with_till_staff(api: Api, staff: dict[str, Api]) -> None:
    op = staff["operator1"]
    merchant = op.post("/api/v1/admin/merchants", {"name": "岳阳楼区绿色生活超市", "region": "430602"})
    assert merchant.status_code == 201
    merchant_id = merchant.get_json()["id"]
    till = op.post(f"/api/v1/admin/merchants/{merchant_id}/staff", {"username": "shop-till-1", "password": PASSWORD})
    assert till.status_code == 201 and "password" not in till.get_json()
    clerk = login(api, "shop-till-1")
    assert clerk.get("/api/v1/merchant/me").get_json()["id"] == merchant_id
    assert [s["username"] for s in op.get(f"/api/v1/admin/merchants/{merchant_id}/staff").get_json()] == ["shop-till-1"]

    # Disabling the merchant stops its tills at once.
    op.post(f"/api/v1/admin/merchants/{merchant_id}/disable", {"reason": "closed"})
    assert clerk.get("/api/v1/merchant/me").get_json()["error"] == "token_revoked"
    assert api.post("/api/v1/auth/token", {"username": "shop-till-1", "password": PASSWORD}).status_code == 401
    more = op.post(f"/api/v1/admin/merchants/{merchant_id}/staff", {"username": "shop-till-2", "password": PASSWORD})
    assert (more.status_code, more.get_json()["error"]) == (409, "merchant_disabled")
    op.post(f"/api/v1/admin/merchants/{merchant_id}/enable", {})
    assert login(api, "shop-till-1").get("/api/v1/merchant/me").status_code == 200


def test_merchant_bad_input(staff: dict[str, Api]) -> None:
    op = staff["operator1"]
    assert "region" in op.post("/api/v1/admin/merchants", {"name": "x", "region": "12"}).get_json()["errors"]["json"]
    assert op.post("/api/v1/admin/merchants", {"name": "x", "region": "430200"}).get_json()["error"] == "out_of_scope"
    assert op.get("/api/v1/admin/merchants/999999").status_code == 404
    merchant_id = op.post("/api/v1/admin/merchants", {"name": "店", "region": "430602"}).get_json()["id"]
    weak = op.post(f"/api/v1/admin/merchants/{merchant_id}/staff", {"username": "shop2", "password": "shop2shop2"})
    assert weak.status_code == 422
    taken = op.post(f"/api/v1/admin/merchants/{merchant_id}/staff", {"username": "operator1", "password": PASSWORD})
    assert (taken.status_code, taken.get_json()["error"]) == (409, "username_taken")


def test_admin_manages_staff_users(api: Api, staff: dict[str, Api]) -> None:
    admin = staff["admin1"]
    created = admin.post("/api/v1/admin/users", {
        "username": "hy-auditor", "password": PASSWORD, "roles": ["auditor", "operator"], "scope_region": "430400",
    })
    assert created.status_code == 201
    user = created.get_json()
    assert user["roles"] == ["auditor", "operator"] and user["scope_region"] == "430400"
    person = login(api, "hy-auditor")
    assert person.get("/api/v1/admin/partners").status_code == 200

    changed = admin.put(f"/api/v1/admin/users/{user['id']}/roles", {"roles": ["auditor"]})
    assert changed.get_json()["roles"] == ["auditor"]
    assert person.get("/api/v1/admin/partners").get_json()["error"] == "token_revoked"
    person = login(api, "hy-auditor")
    assert person.get("/api/v1/admin/partners").status_code == 200  # auditors read
    refused = person.post("/api/v1/admin/merchants", {"name": "x", "region": "430400"})
    assert refused.get_json()["error"] == "role_required"  # but do not manage

    admin.post(f"/api/v1/admin/users/{user['id']}/disable", {"reason": "left the bureau"})
    assert api.post("/api/v1/auth/token", {"username": "hy-auditor", "password": PASSWORD}).status_code == 401
    auditors = admin.get("/api/v1/admin/users?role=auditor").get_json()["items"]
    assert {u["username"] for u in auditors} == {"hy-auditor", "auditor1", "auditor2"}


def test_staff_user_bad_input(staff: dict[str, Api]) -> None:
    admin = staff["admin1"]
    base = {"username": "new-op", "password": PASSWORD, "roles": ["operator"]}

    def fields_of(change: dict) -> list[str]:
        return list(admin.post("/api/v1/admin/users", {**base, **change}).get_json()["errors"]["json"])

    assert fields_of({"roles": ["resident"]}) == ["roles"]
    assert fields_of({"roles": []}) == ["roles"]
    assert fields_of({"scope_region": "999999"}) == ["scope_region"]
    me = admin.get("/api/v1/admin/users?role=admin").get_json()["items"][0]
    demote = admin.put(f"/api/v1/admin/users/{me['id']}/roles", {"roles": ["operator"]})
    assert demote.get_json()["error"] == "self_demotion"
    assert admin.post(f"/api/v1/admin/users/{me['id']}/disable", {}).get_json()["error"] == "self_disable"


def test_admin_adds_a_region(staff: dict[str, Api], api: Api) -> None:
    admin = staff["admin1"]
    created = admin.post("/api/v1/admin/regions", {"code": "430202", "name": "荷塘区", "name_en": "Hetang District",
                                                   "parent": "430200"})
    assert created.status_code == 201 and created.get_json()["level"] == "district"
    assert "430202" in {r["code"] for r in api.get("/api/v1/regions").get_json()}
    wrong_prefix = admin.post("/api/v1/admin/regions", {"code": "430702", "name": "x", "name_en": "x",
                                                        "parent": "430200"})
    assert wrong_prefix.status_code == 422 and "code" in wrong_prefix.get_json()["errors"]["json"]
    dup = admin.post("/api/v1/admin/regions", {"code": "430202", "name": "x", "name_en": "x", "parent": "430200"})
    assert dup.status_code == 422
    under_district = admin.post("/api/v1/admin/regions", {"code": "430205", "name": "x", "name_en": "x",
                                                          "parent": "430204"})
    assert under_district.status_code == 422 and "parent" in under_district.get_json()["errors"]["json"]


def test_a_regions_admin_manages_only_that_regions_people(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    """A Yueyang admin could change the national admin's roles and make national admins (found by
    fuzzing). Now they manage staff scoped within Yueyang, its tills and its residents only."""
    make_staff(app, "yy-admin", "admin", scope="430600")
    yy = login(api, "yy-admin")
    national = staff["admin1"].get("/api/v1/admin/users?role=admin").get_json()["items"]
    boss = next(u for u in national if u["username"] == "admin1")
    zhuzhou = staff["admin1"].post("/api/v1/admin/users", {"username": "zz-op", "password": PASSWORD,
                                                            "roles": ["operator"], "scope_region": "430200"})
    for target in (boss["id"], zhuzhou.get_json()["id"]):
        assert yy.get(f"/api/v1/admin/users/{target}").get_json()["error"] == "out_of_scope"
        assert yy.put(f"/api/v1/admin/users/{target}/roles", {"roles": ["operator"]}).get_json()["error"] == \
            "out_of_scope"
        assert yy.post(f"/api/v1/admin/users/{target}/disable", {}).get_json()["error"] == "out_of_scope"
    assert login(api, "admin1").get("/api/v1/admin/users").status_code == 200  # untouched
    for scope in (None, "430200"):
        made = yy.post("/api/v1/admin/users", {"username": "escalated", "password": PASSWORD, "roles": ["admin"],
                                               "scope_region": scope})
        assert made.get_json()["error"] == "out_of_scope"
    # Within Yueyang: a district's staff, made and managed; the list shows Yueyang's staff only.
    district = yy.post("/api/v1/admin/users", {"username": "yl-op", "password": PASSWORD, "roles": ["operator"],
                                               "scope_region": "430602"})
    assert district.status_code == 201
    assert yy.put(f"/api/v1/admin/users/{district.get_json()['id']}/roles",
                  {"roles": ["auditor"]}).get_json()["roles"] == ["auditor"]
    listed = {u["username"] for u in yy.get("/api/v1/admin/users").get_json()["items"]}
    assert listed == {"yy-admin", "operator1", "auditor1", "auditor2", "yl-op"}
    sign_up(api, "yueyang-resident")
    sign_up(api, "zz-res", region="430204")
    with app.app_context():
        from sqlalchemy import select

        from backend.db import db
        from backend.models import User

        here, there = (db.session.scalar(select(User.id).where(User.username == name))
                       for name in ("yueyang-resident", "zz-res"))
    assert yy.post(f"/api/v1/admin/users/{here}/disable", {"reason": "fraud"}).status_code == 200
    assert yy.post(f"/api/v1/admin/users/{there}/disable", {"reason": "fraud"}).get_json()["error"] == "out_of_scope"
