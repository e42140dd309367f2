"""operations: scheduler job runs, daily statistics, alerts

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('id', ID, nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('scheduled_for', sa.DateTime(timezone=True), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('counts', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('runner', sa.String(length=255), nullable=False),
    sa.Column('requested_by_user_id', ID, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("outcome IN ('running', 'ok', 'failed', 'skipped')", name=op.f('ck_job_runs_outcome')),
    sa.CheckConstraint("trigger IN ('schedule', 'catch_up', 'retry', 'manual')", name=op.f('ck_job_runs_trigger')),
    sa.CheckConstraint('attempt >= 1', name=op.f('ck_job_runs_attempt_positive')),
    sa.ForeignKeyConstraint(['requested_by_user_id'], ['users.id'], name=op.f('fk_job_runs_requested_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_runs')),
    sa.UniqueConstraint('job_id', 'scheduled_for', name=op.f('uq_job_runs_job_id_scheduled_for'))
    )
    op.create_index('ix_job_runs_job', 'job_runs', ['job_id', 'id'])
    op.create_index('ix_job_runs_outcome', 'job_runs', ['outcome', 'id'])

    op.create_table('alerts',
    sa.Column('id', ID, nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('subject', sa.String(length=64), server_default='', nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('raised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('occurrences', sa.Integer(), nullable=False),
    sa.Column('acknowledged_by', ID, nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acknowledgement_note', sa.String(length=500), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("severity IN ('info', 'warning', 'critical')", name=op.f('ck_alerts_severity')),
    sa.CheckConstraint('occurrences >= 1', name=op.f('ck_alerts_occurrences_positive')),
    sa.ForeignKeyConstraint(['acknowledged_by'], ['users.id'], name=op.f('fk_alerts_acknowledged_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    op.create_index('uq_alerts_unresolved', 'alerts', ['kind', 'subject'], unique=True,
                    postgresql_where=sa.text('resolved_at IS NULL'), sqlite_where=sa.text('resolved_at IS NULL'))

    op.create_table('daily_activity_stats',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('activity_type', sa.String(length=40), nullable=False),
    sa.Column('activities', sa.BigInteger(), nullable=False),
    sa.Column('credited', sa.BigInteger(), nullable=False),
    sa.Column('residents', sa.BigInteger(), nullable=False),
    sa.Column('households', sa.BigInteger(), nullable=False),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.Column('points_issued', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('activities >= 0 AND credited >= 0 AND residents >= 0 AND households >= 0 AND grams >= 0 '
                       'AND points_issued >= 0', name=op.f('ck_daily_activity_stats_non_negative')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_daily_activity_stats_region_code_regions')),
    sa.PrimaryKeyConstraint('day', 'region_code', 'activity_type', name=op.f('pk_daily_activity_stats'))
    )
    op.create_table('daily_region_stats',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('residents', sa.BigInteger(), nullable=False),
    sa.Column('households', sa.BigInteger(), nullable=False),
    sa.Column('points_redeemed', sa.BigInteger(), nullable=False),
    sa.Column('points_donated', sa.BigInteger(), nullable=False),
    sa.Column('points_rights', sa.BigInteger(), nullable=False),
    sa.Column('points_expired', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('residents >= 0 AND households >= 0', name=op.f('ck_daily_region_stats_non_negative')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_daily_region_stats_region_code_regions')),
    sa.PrimaryKeyConstraint('day', 'region_code', name=op.f('pk_daily_region_stats'))
    )
    op.create_table('stats_rollups',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('activity_rows', sa.Integer(), nullable=False),
    sa.Column('region_rows', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_stats_rollups'))
    )

    # The roll-up reads a day's rows by when they were recorded.
    op.create_index('ix_activities_created_at', 'activities', ['created_at'])
    op.create_index('ix_reductions_created_at', 'reductions', ['created_at'])
    op.create_index('ix_journal_entries_posted_at', 'journal_entries', ['posted_at'])


def downgrade() -> None:
    op.drop_index('ix_journal_entries_posted_at', table_name='journal_entries')
    op.drop_index('ix_reductions_created_at', table_name='reductions')
    op.drop_index('ix_activities_created_at', table_name='activities')
    op.drop_table('stats_rollups')
    op.drop_table('daily_region_stats')
    op.drop_table('daily_activity_stats')
    op.drop_index('uq_alerts_unresolved', table_name='alerts')
    op.drop_table('alerts')
    op.drop_index('ix_job_runs_outcome', table_name='job_runs')
    op.drop_index('ix_job_runs_job', table_name='job_runs')
    op.drop_table('job_runs')
