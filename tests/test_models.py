"""Constraints the database itself enforces, whatever the Python code does."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from backend.db import db
from tests.conftest import Api, make_staff, sign_up


def _fails(app: Flask, statement: str) -> None:
    with app.app_context():
        with pytest.raises(IntegrityError):
            db.session.execute(text(statement))
            db.session.flush()
        db.session.rollback()


def test_a_resident_cannot_hold_a_staff_role(app: Flask, api: Api) -> None:
    sign_up(api, "lihua")
    make_staff(app, "op-one", "operator")
    with app.app_context():
        resident_user = db.session.execute(text("SELECT id FROM users WHERE username = 'lihua'")).scalar_one()
        staff_user = db.session.execute(text("SELECT id FROM users WHERE username = 'op-one'")).scalar_one()
    _fails(app, f"INSERT INTO user_roles (user_id, role, user_kind) VALUES ({resident_user}, 'admin', 'staff')")
    _fails(app, f"INSERT INTO user_roles (user_id, role, user_kind) VALUES ({resident_user}, 'admin', 'resident')")
    _fails(app, f"INSERT INTO residents (user_id, user_kind, display_name, region_code, created_at) "
                f"VALUES ({staff_user}, 'resident', 'x', '430602', CURRENT_TIMESTAMP)")
    _fails(app, f"INSERT INTO user_roles (user_id, role, user_kind) VALUES ({staff_user}, 'superuser', 'staff')")


def test_one_household_per_resident_in_the_database(app: Flask, api: Api) -> None:
    owner = sign_up(api, "owner")
    owner.post("/api/v1/households", {"name": "A"})
    other = sign_up(api, "other")
    second = other.post("/api/v1/households", {"name": "B"}).get_json()
    with app.app_context():
        owner_id = db.session.execute(text(
            "SELECT r.id FROM residents r JOIN users u ON u.id = r.user_id WHERE u.username = 'owner'")).scalar_one()
    _fails(app, f"INSERT INTO household_members (household_id, resident_id, joined_at) "
                f"VALUES ({second['id']}, {owner_id}, CURRENT_TIMESTAMP)")


def test_usernames_are_stored_lowercase(app: Flask, api: Api) -> None:
    _fails(app, "INSERT INTO users (username, kind, is_active, token_version, created_at) "
                "VALUES ('MiXeD', 'staff', true, 0, CURRENT_TIMESTAMP)")


def test_passwords_are_stored_as_argon2id_hashes(app: Flask, api: Api) -> None:
    sign_up(api, "lihua")
    with app.app_context():
        stored = db.session.execute(text("SELECT password_hash FROM users WHERE username = 'lihua'")).scalar_one()
    assert stored.startswith("$argon2id$") and "correct-horse" not in stored
