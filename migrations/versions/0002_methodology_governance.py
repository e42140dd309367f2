"""methodology governance (generic governed versions) and the reduction registry

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.sqlfiles import run_sql_file

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('policy_versions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('payload_sha256', sa.String(length=64), nullable=False),
    sa.Column('formula_version', sa.Integer(), nullable=True),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('author_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retired_by_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.CheckConstraint("kind IN ('methodology', 'rules')", name=op.f('ck_policy_versions_kind')),
    sa.CheckConstraint("status IN ('draft', 'submitted', 'approved', 'rejected', 'retired')", name=op.f('ck_policy_versions_status')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_policy_versions_version_positive')),
    sa.ForeignKeyConstraint(['author_user_id'], ['users.id'], name=op.f('fk_policy_versions_author_user_id_users')),
    sa.ForeignKeyConstraint(['decided_by_user_id'], ['users.id'], name=op.f('fk_policy_versions_decided_by_user_id_users')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_policy_versions_region_code_regions')),
    sa.ForeignKeyConstraint(['retired_by_user_id'], ['users.id'], name=op.f('fk_policy_versions_retired_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_versions')),
    sa.UniqueConstraint('kind', 'subject', 'version', name=op.f('uq_policy_versions_kind_subject_version'))
    )
    with op.batch_alter_table('policy_versions', schema=None) as batch_op:
        batch_op.create_index('ix_policy_versions_lookup', ['kind', 'subject', 'status'], unique=False)
        batch_op.create_index('uq_policy_versions_in_force_national', ['kind', 'subject', 'effective_from'], unique=True, postgresql_where=sa.text("status IN ('approved', 'retired') AND region_code IS NULL"), sqlite_where=sa.text("status IN ('approved', 'retired') AND region_code IS NULL"))
        batch_op.create_index('uq_policy_versions_in_force_region', ['kind', 'subject', 'region_code', 'effective_from'], unique=True, postgresql_where=sa.text("status IN ('approved', 'retired') AND region_code IS NOT NULL"), sqlite_where=sa.text("status IN ('approved', 'retired') AND region_code IS NOT NULL"))

    op.create_table('activities',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('household_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('partner_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('external_id', sa.String(length=128), nullable=True),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('findings', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("source IN ('partner', 'self', 'import', 'demo')", name=op.f('ck_activities_source')),
    sa.CheckConstraint("status IN ('credited', 'pending_review', 'rejected', 'duplicate')", name=op.f('ck_activities_status')),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_activities_household_id_households')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_activities_partner_id_partners')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_activities_region_code_regions')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_activities_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activities')),
    sa.UniqueConstraint('partner_id', 'external_id', name=op.f('uq_activities_partner_id_external_id'))
    )
    with op.batch_alter_table('activities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_activities_region_code'), ['region_code'], unique=False)
        batch_op.create_index('ix_activities_resident_time', ['resident_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_activities_type_time', ['type', 'occurred_at'], unique=False)

    op.create_table('reductions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('activity_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('household_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('activity_type', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('methodology_id', sa.String(length=64), nullable=False),
    sa.Column('methodology_version', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('formula_version', sa.Integer(), nullable=False),
    sa.Column('factors_sha256', sa.String(length=64), nullable=False),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.Column('trace', sa.JSON(), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('certified', 'reversed')", name=op.f('ck_reductions_status')),
    sa.CheckConstraint('grams >= 0', name=op.f('ck_reductions_grams_non_negative')),
    sa.ForeignKeyConstraint(['activity_id'], ['activities.id'], name=op.f('fk_reductions_activity_id_activities')),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_reductions_household_id_households')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_reductions_region_code_regions')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_reductions_resident_id_residents')),
    sa.ForeignKeyConstraint(['version_id'], ['policy_versions.id'], name=op.f('fk_reductions_version_id_policy_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reductions')),
    sa.UniqueConstraint('activity_id', name=op.f('uq_reductions_activity_id'))
    )
    with op.batch_alter_table('reductions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reductions_household_id'), ['household_id'], unique=False)
        batch_op.create_index('ix_reductions_methodology_time', ['methodology_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_reductions_region_time', ['region_code', 'occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_reductions_resident_id'), ['resident_id'], unique=False)


    run_sql_file(op.get_bind(), "0002_registry_guards")

def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS carbon_reduction_guard() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS carbon_policy_version_guard() CASCADE")
    with op.batch_alter_table('reductions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reductions_resident_id'))
        batch_op.drop_index('ix_reductions_region_time')
        batch_op.drop_index('ix_reductions_methodology_time')
        batch_op.drop_index(batch_op.f('ix_reductions_household_id'))

    op.drop_table('reductions')
    with op.batch_alter_table('activities', schema=None) as batch_op:
        batch_op.drop_index('ix_activities_type_time')
        batch_op.drop_index('ix_activities_resident_time')
        batch_op.drop_index(batch_op.f('ix_activities_region_code'))

    op.drop_table('activities')
    with op.batch_alter_table('policy_versions', schema=None) as batch_op:
        batch_op.drop_index('uq_policy_versions_in_force_region', postgresql_where=sa.text("status IN ('approved', 'retired') AND region_code IS NOT NULL"), sqlite_where=sa.text("status IN ('approved', 'retired') AND region_code IS NOT NULL"))
        batch_op.drop_index('uq_policy_versions_in_force_national', postgresql_where=sa.text("status IN ('approved', 'retired') AND region_code IS NULL"), sqlite_where=sa.text("status IN ('approved', 'retired') AND region_code IS NULL"))
        batch_op.drop_index('ix_policy_versions_lookup')

    op.drop_table('policy_versions')
