"""ingestion: partner bindings, fraud signals, activity review, partner trust levels

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('partner_bindings',
    sa.Column('id', ID, nullable=False),
    sa.Column('resident_id', ID, nullable=False),
    sa.Column('partner_id', ID, nullable=False),
    sa.Column('external_user_ref', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_partner_bindings_partner_id_partners')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_partner_bindings_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_bindings'))
    )
    op.create_index('ix_partner_bindings_ref_time', 'partner_bindings', ['external_user_ref', 'created_at'])
    op.create_index('uq_partner_bindings_live_ref', 'partner_bindings', ['partner_id', 'external_user_ref'],
                    unique=True, postgresql_where=sa.text('revoked_at IS NULL'),
                    sqlite_where=sa.text('revoked_at IS NULL'))
    op.create_index('uq_partner_bindings_live_resident', 'partner_bindings', ['resident_id', 'partner_id'],
                    unique=True, postgresql_where=sa.text('revoked_at IS NULL'),
                    sqlite_where=sa.text('revoked_at IS NULL'))

    op.create_table('fraud_signals',
    sa.Column('id', ID, nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resident_id', ID, nullable=True),
    sa.Column('partner_id', ID, nullable=True),
    sa.Column('activity_id', ID, nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_by', ID, nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['activity_id'], ['activities.id'], name=op.f('fk_fraud_signals_activity_id_activities')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_fraud_signals_partner_id_partners')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_fraud_signals_region_code_regions')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_fraud_signals_resident_id_residents')),
    sa.ForeignKeyConstraint(['resolved_by'], ['users.id'], name=op.f('fk_fraud_signals_resolved_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fraud_signals'))
    )
    op.create_index(op.f('ix_fraud_signals_activity_id'), 'fraud_signals', ['activity_id'])
    op.create_index('ix_fraud_signals_open', 'fraud_signals', ['status', 'id'])
    op.create_index(op.f('ix_fraud_signals_partner_id'), 'fraud_signals', ['partner_id'])
    op.create_index(op.f('ix_fraud_signals_resident_id'), 'fraud_signals', ['resident_id'])

    # SQLite adds a column with its reference in place; a batch rebuild of activities would have to
    # drop a table that reductions refer to.
    if op.get_bind().dialect.name == "sqlite":
        for column, target in (("duplicate_of", "activities"), ("reviewed_by", "users")):
            op.execute(f"ALTER TABLE activities ADD COLUMN {column} INTEGER "
                       f"CONSTRAINT fk_activities_{column}_{target} REFERENCES {target} (id)")
    else:
        op.add_column('activities', sa.Column('duplicate_of', sa.BigInteger(), nullable=True))
        op.add_column('activities', sa.Column('reviewed_by', sa.BigInteger(), nullable=True))
        op.create_foreign_key(op.f('fk_activities_duplicate_of_activities'), 'activities', 'activities',
                              ['duplicate_of'], ['id'])
        op.create_foreign_key(op.f('fk_activities_reviewed_by_users'), 'activities', 'users', ['reviewed_by'], ['id'])
    op.add_column('activities', sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True))
    # The span an overlap check compares; until now only trips had one, starting when they happened.
    op.add_column('activities', sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE activities SET started_at = occurred_at WHERE ended_at IS NOT NULL")
    op.create_index('ix_activities_household_time', 'activities', ['household_id', 'occurred_at'])
    op.create_index('ix_activities_review', 'activities', ['id'],
                    postgresql_where=sa.text("status = 'pending_review'"),
                    sqlite_where=sa.text("status = 'pending_review'"))
    op.add_column('partners', sa.Column('trust_level', sa.String(length=16), server_default='standard',
                                        nullable=False))
    # SQLite cannot add a CHECK to a table without rebuilding it; there the service keeps to the levels.
    if op.get_bind().dialect.name == "postgresql":
        op.create_check_constraint(op.f('ck_partners_trust_level'), 'partners',
                                   "trust_level IN ('standard', 'probation')")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f('ck_partners_trust_level'), 'partners', type_='check')
        op.drop_constraint(op.f('fk_activities_duplicate_of_activities'), 'activities', type_='foreignkey')
        op.drop_constraint(op.f('fk_activities_reviewed_by_users'), 'activities', type_='foreignkey')
    op.drop_column('partners', 'trust_level')
    op.drop_index('ix_activities_review', table_name='activities')
    op.drop_index('ix_activities_household_time', table_name='activities')
    for column in ('started_at', 'reviewed_at', 'reviewed_by', 'duplicate_of'):
        op.drop_column('activities', column)
    op.drop_table('fraud_signals')
    op.drop_table('partner_bindings')
