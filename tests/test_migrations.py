"""Migrations: one head, upgrade from empty, models and schema in step, downgrade works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import backend.models  # noqa: F401
from backend.db import Base, make_engine
from backend.migrate import current_revision, downgrade, head_revision, heads, upgrade
from tests.conftest import TEST_DATABASE_URL, _admin_url


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    if TEST_DATABASE_URL:
        from sqlalchemy.engine import make_url

        name = f"carbon_mig_{uuid.uuid4().hex[:8]}"
        admin = create_engine(_admin_url(TEST_DATABASE_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(TEST_DATABASE_URL).set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        yield f"sqlite:///{tmp_path / 'empty.db'}"


def _in_step(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """PostgreSQL checks the bulk ledger tables' references per statement, not by foreign key."""
    if type_ == "foreign_key_constraint" and not reflected and TEST_DATABASE_URL:
        return not any(element.info.get("checked_per_statement") for element in obj.elements)
    return True


def test_single_head() -> None:
    assert len(heads()) == 1


def test_upgrade_from_empty_matches_the_models(empty_url: str) -> None:
    upgrade(empty_url)
    assert current_revision(empty_url) == head_revision()
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _in_step})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], diff
    finally:
        engine.dispose()


def test_downgrade_to_empty_and_back(empty_url: str) -> None:
    upgrade(empty_url)
    downgrade(empty_url, "base")
    engine = make_engine(empty_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(empty_url)
    assert current_revision(empty_url) == head_revision()


def test_seeded_reference_data(empty_url: str) -> None:
    upgrade(empty_url)
    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            codes = {row[0] for row in conn.execute(text("SELECT code FROM regions"))}
            head = conn.execute(text("SELECT id, last_id, last_hash FROM audit_head")).one()
    finally:
        engine.dispose()
    assert {"430000", "430200", "430204", "430400", "430600", "430611", "431100"} <= codes
    assert head == (1, None, "0" * 64)
