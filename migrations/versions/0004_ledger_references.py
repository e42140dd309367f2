"""ledger throughput: references of the bulk ledger tables checked per statement on PostgreSQL;
room for in-place balance updates

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations.sqlfiles import run_sql_file

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite keeps its row-level foreign keys: they are cheap there, and one writer runs at a time.
    if op.get_bind().dialect.name == "postgresql":
        run_sql_file(op.get_bind(), "0004_ledger_references")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        run_sql_file(op.get_bind(), "0004_ledger_references_down")
