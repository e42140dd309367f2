"""ingestion throughput: references of activities, reductions and the ledger's rule versions
checked per statement on PostgreSQL; the rows they name can be neither deleted nor renumbered

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""
from __future__ import annotations

from collections.abc import Sequence

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


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        run_sql_file(op.get_bind(), "0009_ingest_references_down")
