"""PIPL: a resident's export holds all their personal data; deletion anonymises and keeps rows."""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from sqlalchemy import func, select

from backend.db import db
from backend.models import Community, Household, Resident, User
from backend.services.privacy import ANONYMOUS_NAME
from backend.validators import uscc_with_check
from tests.conftest import PASSWORD, Api, sign_up


def _populate(api: Api, resident: Api) -> dict:
    household = resident.post("/api/v1/households", {"name": "李华家"}).get_json()
    wang = sign_up(api, "wangfang")
    wang.post("/api/v1/households/join", {"invite_code": household["invite_code"]})
    community = resident.post("/api/v1/communities", {"name": "骑行团", "region": "430602"}).get_json()
    wang.post(f"/api/v1/communities/{community['id']}/join")
    resident.post("/api/v1/enterprises", {"name": "绿源便利店", "region": "430681",
                                          "uscc": uscc_with_check("92430681MA4RT7QX0")})
    return {"household": household, "community": community, "wang": wang}


def test_export_holds_everything_about_the_person(api: Api, resident: Api) -> None:
    _populate(api, resident)
    export = resident.get("/api/v1/me/export").get_json()
    assert export["account"]["username"] == "lihua"
    assert export["profile"]["display_name"] == "Lihua"
    assert export["household"]["name"] == "李华家" and export["household"]["is_owner"] is True
    assert [c["name"] for c in export["communities"]] == ["骑行团"]
    assert export["enterprises"][0]["uscc"] == uscc_with_check("92430681MA4RT7QX0")
    assert len(export["sessions"]) >= 1
    assert datetime.fromisoformat(export["exported_at"]).tzinfo is not None
    assert datetime.fromisoformat(export["communities"][0]["joined_at"]).tzinfo is not None
    assert "password" not in str(export).lower()


def test_export_includes_sections_from_signal_receivers(app: Flask, resident: Api) -> None:
    from backend.signals import resident_export

    def receiver(sender: Resident) -> tuple[str, dict]:
        return "bindings", {"resident": sender.id}

    resident_export.connect(receiver)
    try:
        assert "bindings" in resident.get("/api/v1/me/export").get_json()
    finally:
        resident_export.disconnect(receiver)


def test_delete_anonymises_and_keeps_the_rows(app: Flask, api: Api, resident: Api) -> None:
    data = _populate(api, resident)
    me = resident.get("/api/v1/me").get_json()
    wrong = resident.delete("/api/v1/me", {"password": "not-my-password"})
    assert wrong.status_code == 422 and "password" in wrong.get_json()["errors"]["json"]
    assert resident.delete("/api/v1/me", {}).status_code == 422

    assert resident.delete("/api/v1/me", {"password": PASSWORD}).status_code == 204
    assert resident.get("/api/v1/me").status_code == 401
    assert api.post("/api/v1/auth/token", {"username": "lihua", "password": PASSWORD}).status_code == 401

    with app.app_context():
        row = db.session.get(Resident, me["id"])
        assert row is not None and row.display_name == ANONYMOUS_NAME and row.anonymised_at is not None
        user = db.session.get(User, row.user_id)
        assert user.username.startswith("deleted-") and user.password_hash is None and not user.is_active
        assert "lihua" not in user.username
        # The household lives on with the other member as owner; the community too.
        household = db.session.get(Household, data["household"]["id"])
        assert household.status == "active" and household.owner_resident_id != me["id"]
        assert db.session.scalar(select(func.count()).select_from(Community)) == 1

    wang = data["wang"].get(f"/api/v1/households/{data['household']['id']}").get_json()
    assert [m["display_name"] for m in wang["members"]] == ["Wangfang"]
    assert wang["members"][0]["is_owner"] is True
    # The username is free again for somebody new.
    sign_up(api, "lihua")


def test_anonymise_signal_lets_features_erase_their_data(app: Flask, resident: Api) -> None:
    from backend.signals import resident_anonymise

    seen: list[int] = []

    def receiver(sender: Resident) -> None:
        seen.append(sender.id)

    resident_anonymise.connect(receiver)
    try:
        me = resident.get("/api/v1/me").get_json()
        resident.delete("/api/v1/me", {"password": PASSWORD})
    finally:
        resident_anonymise.disconnect(receiver)
    assert seen == [me["id"]]
