"""ingestion throughput: references of activities, reductions and the ledger's rule versions
checked per statement on PostgreSQL; the rows they name can be neither deleted nor renumbered;
indexes for the balance read

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.sqlfiles import run_sql_file

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # As in 0004: SQLite keeps its row-level foreign keys (cheap there, one writer at a time).
    if op.get_bind().dialect.name == "postgresql":
        run_sql_file(op.get_bind(), "0009_ingest_references")
    # Every balance read: a resident's certified grams from the index alone, and what still waits.
    op.create_index("ix_reductions_resident_certified", "reductions", ["resident_id"],
                    postgresql_include=["grams"], postgresql_where=sa.text("status = 'certified'"),
                    sqlite_where=sa.text("status = 'certified'"))
    op.create_index("ix_queued_credits_waiting", "queued_credits", ["account_id"],
                    postgresql_where=sa.text("released_entry_id IS NULL"),
                    sqlite_where=sa.text("released_entry_id IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_queued_credits_waiting", table_name="queued_credits")
    op.drop_index("ix_reductions_resident_certified", table_name="reductions")
    if op.get_bind().dialect.name == "postgresql":
        run_sql_file(op.get_bind(), "0009_ingest_references_down")
