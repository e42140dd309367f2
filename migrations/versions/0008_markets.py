"""markets: carbon-market batches and retirements, bank shares

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.sqlfiles import run_sql_file

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('market_serial_counters',
    sa.Column('serial_key', sa.String(length=96), nullable=False),
    sa.Column('last_serial', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('serial_key', name=op.f('pk_market_serial_counters'))
    )
    op.create_table('bank_partners',
    sa.Column('partner_id', ID, autoincrement=False, nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by_user_id', ID, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disabled_by_user_id', ID, nullable=True),
    sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f('ck_bank_partners_status')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_bank_partners_created_by_user_id_users')),
    sa.ForeignKeyConstraint(['disabled_by_user_id'], ['users.id'], name=op.f('fk_bank_partners_disabled_by_user_id_users')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_bank_partners_partner_id_partners')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_bank_partners_region_code_regions')),
    sa.PrimaryKeyConstraint('partner_id', name=op.f('pk_bank_partners'))
    )
    op.create_table('market_batches',
    sa.Column('id', ID, nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('include_subregions', sa.Boolean(), nullable=False),
    sa.Column('methodology_id', sa.String(length=64), nullable=False),
    sa.Column('vintage', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('tonnes', sa.BigInteger(), nullable=False),
    sa.Column('pooled_grams', sa.BigInteger(), nullable=False),
    sa.Column('member_count', sa.Integer(), nullable=False),
    sa.Column('members_sha256', sa.String(length=64), nullable=False),
    sa.Column('methodology_versions', sa.JSON(), nullable=False),
    sa.Column('serial_key', sa.String(length=96), nullable=False),
    sa.Column('serial_start', sa.BigInteger(), nullable=True),
    sa.Column('serial_end', sa.BigInteger(), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('drafted_by_user_id', ID, nullable=False),
    sa.Column('drafted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('issued_by_user_id', ID, nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('discarded_by_user_id', ID, nullable=True),
    sa.Column('discarded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('discard_reason', sa.String(length=500), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'discarded') OR serial_start IS NOT NULL", name=op.f('ck_market_batches_issued_has_serials')),
    sa.CheckConstraint("status IN ('draft', 'discarded', 'issued', 'sold', 'retired', 'closed')", name=op.f('ck_market_batches_status')),
    sa.CheckConstraint('(serial_start IS NULL AND serial_end IS NULL) OR (serial_start >= 1 AND serial_end = serial_start + tonnes - 1)', name=op.f('ck_market_batches_serial_range')),
    sa.CheckConstraint('member_count > 0', name=op.f('ck_market_batches_members')),
    sa.CheckConstraint('pooled_grams >= tonnes * 1000000', name=op.f('ck_market_batches_backed')),
    sa.CheckConstraint('tonnes > 0', name=op.f('ck_market_batches_tonnes_positive')),
    sa.CheckConstraint('vintage BETWEEN 2000 AND 2999', name=op.f('ck_market_batches_vintage')),
    sa.ForeignKeyConstraint(['discarded_by_user_id'], ['users.id'], name=op.f('fk_market_batches_discarded_by_user_id_users')),
    sa.ForeignKeyConstraint(['drafted_by_user_id'], ['users.id'], name=op.f('fk_market_batches_drafted_by_user_id_users')),
    sa.ForeignKeyConstraint(['issued_by_user_id'], ['users.id'], name=op.f('fk_market_batches_issued_by_user_id_users')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_market_batches_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_market_batches')),
    sa.UniqueConstraint('serial_key', 'serial_start', name=op.f('uq_market_batches_serial_key_serial_start'))
    )
    with op.batch_alter_table('market_batches', schema=None) as batch_op:
        batch_op.create_index('ix_market_batches_scope', ['methodology_id', 'vintage', 'region_code'], unique=False)

    op.create_table('bank_shares',
    sa.Column('id', ID, nullable=False),
    sa.Column('resident_id', ID, nullable=False),
    sa.Column('partner_id', ID, nullable=False),
    sa.Column('subject', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_reason', sa.String(length=16), nullable=True),
    sa.CheckConstraint("revoked_reason IS NULL OR revoked_reason IN ('resident', 'account_deleted')", name=op.f('ck_bank_shares_revoked_reason')),
    sa.CheckConstraint('expires_at > created_at', name=op.f('ck_bank_shares_window')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_bank_shares_partner_id_partners')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_bank_shares_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_shares'))
    )
    with op.batch_alter_table('bank_shares', schema=None) as batch_op:
        batch_op.create_index('ix_bank_shares_partner', ['partner_id', 'id'], unique=False)
        batch_op.create_index('ix_bank_shares_resident', ['resident_id', 'id'], unique=False)

    op.create_table('market_transactions',
    sa.Column('id', ID, nullable=False),
    sa.Column('batch_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('first_serial', sa.BigInteger(), nullable=False),
    sa.Column('last_serial', sa.BigInteger(), nullable=False),
    sa.Column('tonnes', sa.BigInteger(), nullable=False),
    sa.Column('buyer', sa.String(length=200), nullable=True),
    sa.Column('unit_price_fen', sa.BigInteger(), nullable=True),
    sa.Column('amount_fen', sa.BigInteger(), nullable=True),
    sa.Column('beneficiary', sa.String(length=200), nullable=True),
    sa.Column('purpose', sa.String(length=500), nullable=True),
    sa.Column('reference', sa.String(length=120), nullable=True),
    sa.Column('created_by_user_id', ID, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'sale' AND buyer IS NOT NULL AND unit_price_fen IS NOT NULL AND unit_price_fen >= 0 AND amount_fen = unit_price_fen * tonnes AND beneficiary IS NULL AND purpose IS NULL) OR (kind = 'retirement' AND beneficiary IS NOT NULL AND purpose IS NOT NULL AND buyer IS NULL AND unit_price_fen IS NULL AND amount_fen IS NULL)", name=op.f('ck_market_transactions_details')),
    sa.CheckConstraint("kind IN ('sale', 'retirement')", name=op.f('ck_market_transactions_kind')),
    sa.CheckConstraint('first_serial >= 1 AND last_serial >= first_serial', name=op.f('ck_market_transactions_range')),
    sa.CheckConstraint('tonnes = last_serial - first_serial + 1', name=op.f('ck_market_transactions_tonnes')),
    sa.ForeignKeyConstraint(['batch_id'], ['market_batches.id'], name=op.f('fk_market_transactions_batch_id_market_batches')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_market_transactions_created_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_market_transactions'))
    )
    with op.batch_alter_table('market_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_market_transactions_batch', ['batch_id', 'id'], unique=False)

    op.create_table('bank_share_events',
    sa.Column('id', ID, nullable=False),
    sa.Column('share_id', ID, nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disclosed', sa.JSON(), nullable=True),
    sa.Column('detail', sa.String(length=200), nullable=True),
    sa.CheckConstraint("event IN ('created', 'fetched', 'verified', 'refused', 'revoked')", name=op.f('ck_bank_share_events_event')),
    sa.ForeignKeyConstraint(['share_id'], ['bank_shares.id'], name=op.f('fk_bank_share_events_share_id_bank_shares')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_share_events'))
    )
    with op.batch_alter_table('bank_share_events', schema=None) as batch_op:
        batch_op.create_index('ix_bank_share_events_share', ['share_id', 'id'], unique=False)

    op.create_table('market_serials',
    sa.Column('serial_key', sa.String(length=96), nullable=False),
    sa.Column('serial', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('batch_id', ID, nullable=False),
    sa.Column('transaction_id', ID, nullable=True),
    sa.CheckConstraint('serial >= 1', name=op.f('ck_market_serials_serial_positive')),
    sa.ForeignKeyConstraint(['batch_id'], ['market_batches.id'], name=op.f('fk_market_serials_batch_id_market_batches')),
    sa.ForeignKeyConstraint(['transaction_id'], ['market_transactions.id'], name=op.f('fk_market_serials_transaction_id_market_transactions')),
    sa.PrimaryKeyConstraint('serial_key', 'serial', name=op.f('pk_market_serials'))
    )
    with op.batch_alter_table('market_serials', schema=None) as batch_op:
        batch_op.create_index('ix_market_serials_batch', ['batch_id', 'serial'], unique=False)
        batch_op.create_index(batch_op.f('ix_market_serials_transaction_id'), ['transaction_id'], unique=False)

    op.create_table('market_batch_members',
    sa.Column('reduction_id', ID, autoincrement=False, nullable=False),
    sa.Column('batch_id', ID, nullable=False),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('withdrawn_by_user_id', ID, nullable=True),
    sa.Column('withdraw_reason', sa.String(length=500), nullable=True),
    sa.CheckConstraint("(status = 'active' AND withdrawn_at IS NULL) OR (status = 'withdrawn' AND withdrawn_at IS NOT NULL)", name=op.f('ck_market_batch_members_withdrawal')),
    sa.CheckConstraint("status IN ('active', 'withdrawn')", name=op.f('ck_market_batch_members_status')),
    sa.CheckConstraint('grams > 0', name=op.f('ck_market_batch_members_grams_positive')),
    sa.ForeignKeyConstraint(['batch_id'], ['market_batches.id'], name=op.f('fk_market_batch_members_batch_id_market_batches')),
    sa.ForeignKeyConstraint(['reduction_id'], ['reductions.id'], name=op.f('fk_market_batch_members_reduction_id_reductions')),
    sa.ForeignKeyConstraint(['withdrawn_by_user_id'], ['users.id'], name=op.f('fk_market_batch_members_withdrawn_by_user_id_users')),
    sa.PrimaryKeyConstraint('reduction_id', name=op.f('pk_market_batch_members'))
    )
    with op.batch_alter_table('market_batch_members', schema=None) as batch_op:
        batch_op.create_index('ix_market_batch_members_batch', ['batch_id', 'reduction_id'], unique=False)

    op.create_table('market_exclusions',
    sa.Column('id', ID, nullable=False),
    sa.Column('reduction_id', ID, nullable=False),
    sa.Column('category', sa.String(length=24), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('created_by_user_id', ID, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lifted_by_user_id', ID, nullable=True),
    sa.Column('lift_reason', sa.String(length=500), nullable=True),
    sa.CheckConstraint("category IN ('green_certificate', 'ccer', 'enterprise_inventory', 'other')", name=op.f('ck_market_exclusions_category')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_market_exclusions_created_by_user_id_users')),
    sa.ForeignKeyConstraint(['lifted_by_user_id'], ['users.id'], name=op.f('fk_market_exclusions_lifted_by_user_id_users')),
    sa.ForeignKeyConstraint(['reduction_id'], ['reductions.id'], name=op.f('fk_market_exclusions_reduction_id_reductions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_market_exclusions'))
    )
    with op.batch_alter_table('market_exclusions', schema=None) as batch_op:
        batch_op.create_index('uq_market_exclusions_live', ['reduction_id'], unique=True, postgresql_where=sa.text('lifted_at IS NULL'), sqlite_where=sa.text('lifted_at IS NULL'))

    # Triggers: no double use, append-only transactions and disclosure log (0008_markets.<dialect>.sql).
    run_sql_file(op.get_bind(), "0008_markets")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER reductions_pooled_guard")
    else:
        run_sql_file(op.get_bind(), "0008_markets_down")

    with op.batch_alter_table('market_exclusions', schema=None) as batch_op:
        batch_op.drop_index('uq_market_exclusions_live', postgresql_where=sa.text('lifted_at IS NULL'), sqlite_where=sa.text('lifted_at IS NULL'))

    op.drop_table('market_exclusions')
    with op.batch_alter_table('market_batch_members', schema=None) as batch_op:
        batch_op.drop_index('ix_market_batch_members_batch')

    op.drop_table('market_batch_members')
    with op.batch_alter_table('market_serials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_market_serials_transaction_id'))
        batch_op.drop_index('ix_market_serials_batch')

    op.drop_table('market_serials')
    with op.batch_alter_table('bank_share_events', schema=None) as batch_op:
        batch_op.drop_index('ix_bank_share_events_share')

    op.drop_table('bank_share_events')
    with op.batch_alter_table('market_transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_market_transactions_batch')

    op.drop_table('market_transactions')
    with op.batch_alter_table('bank_shares', schema=None) as batch_op:
        batch_op.drop_index('ix_bank_shares_resident')
        batch_op.drop_index('ix_bank_shares_partner')

    op.drop_table('bank_shares')
    with op.batch_alter_table('market_batches', schema=None) as batch_op:
        batch_op.drop_index('ix_market_batches_scope')

    op.drop_table('market_batches')
    op.drop_table('bank_partners')
    op.drop_table('market_serial_counters')
