"""spending: offers, redemptions, settlement, welfare projects, opened rights

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.sqlfiles import run_sql_file

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('offers',
    sa.Column('id', ID, nullable=False),
    sa.Column('merchant_id', ID, nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('points_price', sa.BigInteger(), nullable=False),
    sa.Column('stock_total', sa.Integer(), nullable=False),
    sa.Column('stock_left', sa.Integer(), nullable=False),
    sa.Column('per_user_limit', sa.Integer(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by_user_id', ID, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('active', 'withdrawn')", name=op.f('ck_offers_status')),
    sa.CheckConstraint('per_user_limit >= 1', name=op.f('ck_offers_per_user_limit_positive')),
    sa.CheckConstraint('points_price > 0', name=op.f('ck_offers_price_positive')),
    sa.CheckConstraint('stock_left >= 0 AND stock_left <= stock_total', name=op.f('ck_offers_stock_within')),
    sa.CheckConstraint('valid_until > valid_from', name=op.f('ck_offers_window')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_offers_created_by_user_id_users')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_offers_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offers'))
    )
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.create_index('ix_offers_merchant', ['merchant_id', 'id'], unique=False)

    op.create_table('opened_rights',
    sa.Column('id', ID, nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('partner_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('points_price', sa.BigInteger(), nullable=True),
    sa.Column('min_level', sa.String(length=32), nullable=True),
    sa.Column('stock_total', sa.Integer(), nullable=True),
    sa.Column('stock_left', sa.Integer(), nullable=True),
    sa.Column('per_user_limit', sa.Integer(), nullable=False),
    sa.Column('code_valid_days', sa.Integer(), nullable=False),
    sa.Column('valid_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by_user_id', ID, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('parking', 'transit', 'service', 'other')", name=op.f('ck_opened_rights_kind')),
    sa.CheckConstraint("status IN ('active', 'withdrawn')", name=op.f('ck_opened_rights_status')),
    sa.CheckConstraint('code_valid_days >= 1', name=op.f('ck_opened_rights_code_valid_days_positive')),
    sa.CheckConstraint('per_user_limit >= 1', name=op.f('ck_opened_rights_per_user_limit_positive')),
    sa.CheckConstraint('points_price IS NOT NULL OR min_level IS NOT NULL', name=op.f('ck_opened_rights_claimable')),
    sa.CheckConstraint('points_price IS NULL OR points_price > 0', name=op.f('ck_opened_rights_price_positive')),
    sa.CheckConstraint('stock_left IS NULL OR (stock_left >= 0 AND stock_left <= stock_total)', name=op.f('ck_opened_rights_stock_within')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_opened_rights_created_by_user_id_users')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_opened_rights_partner_id_partners')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_opened_rights_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_opened_rights'))
    )
    with op.batch_alter_table('opened_rights', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_opened_rights_partner_id'), ['partner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_opened_rights_region_code'), ['region_code'], unique=False)

    op.create_table('welfare_projects',
    sa.Column('id', ID, nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('target_points', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by_user_id', ID, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by_user_id', ID, nullable=True),
    sa.CheckConstraint("status IN ('open', 'closed')", name=op.f('ck_welfare_projects_status')),
    sa.CheckConstraint('target_points > 0', name=op.f('ck_welfare_projects_target_positive')),
    sa.ForeignKeyConstraint(['closed_by_user_id'], ['users.id'], name=op.f('fk_welfare_projects_closed_by_user_id_users')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_welfare_projects_created_by_user_id_users')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_welfare_projects_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_welfare_projects'))
    )
    with op.batch_alter_table('welfare_projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_welfare_projects_region_code'), ['region_code'], unique=False)

    op.create_table('offer_regions',
    sa.Column('offer_id', ID, nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_offer_regions_offer_id_offers')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_offer_regions_region_code_regions')),
    sa.PrimaryKeyConstraint('offer_id', 'region_code', name=op.f('pk_offer_regions'))
    )
    with op.batch_alter_table('offer_regions', schema=None) as batch_op:
        batch_op.create_index('ix_offer_regions_region', ['region_code', 'offer_id'], unique=False)

    op.create_table('settlement_statements',
    sa.Column('id', ID, nullable=False),
    sa.Column('merchant_id', ID, nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('redemptions', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('yuan_per_point', sa.String(length=24), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('rules_version_id', ID, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('issued_by_user_id', ID, nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paid_by_user_id', ID, nullable=True),
    sa.Column('payment_reference', sa.String(length=120), nullable=True),
    sa.CheckConstraint("status IN ('issued', 'paid')", name=op.f('ck_settlement_statements_status')),
    sa.CheckConstraint('points >= 0 AND amount_fen >= 0 AND redemptions >= 0', name=op.f('ck_settlement_statements_amounts')),
    sa.ForeignKeyConstraint(['issued_by_user_id'], ['users.id'], name=op.f('fk_settlement_statements_issued_by_user_id_users')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_settlement_statements_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['paid_by_user_id'], ['users.id'], name=op.f('fk_settlement_statements_paid_by_user_id_users')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_settlement_statements_region_code_regions')),
    sa.ForeignKeyConstraint(['rules_version_id'], ['policy_versions.id'], name=op.f('fk_settlement_statements_rules_version_id_policy_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settlement_statements')),
    sa.UniqueConstraint('merchant_id', 'period', name=op.f('uq_settlement_statements_merchant_id_period'))
    )
    op.create_table('donations',
    sa.Column('id', ID, nullable=False),
    sa.Column('project_id', ID, nullable=False),
    sa.Column('resident_id', ID, nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('entry_id', ID, nullable=False),
    sa.Column('idempotency_key', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('points > 0', name=op.f('ck_donations_points_positive')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_donations_entry_id_journal_entries')),
    sa.ForeignKeyConstraint(['project_id'], ['welfare_projects.id'], name=op.f('fk_donations_project_id_welfare_projects')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_donations_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_donations')),
    sa.UniqueConstraint('entry_id', name=op.f('uq_donations_entry_id')),
    sa.UniqueConstraint('resident_id', 'idempotency_key', name=op.f('uq_donations_resident_id_idempotency_key'))
    )
    with op.batch_alter_table('donations', schema=None) as batch_op:
        batch_op.create_index('ix_donations_project', ['project_id', 'id'], unique=False)
        batch_op.create_index('ix_donations_resident', ['resident_id', 'id'], unique=False)

    op.create_table('redemptions',
    sa.Column('id', ID, nullable=False),
    sa.Column('offer_id', ID, nullable=False),
    sa.Column('merchant_id', ID, nullable=False),
    sa.Column('resident_id', ID, nullable=False),
    sa.Column('account_id', ID, nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('hold_entry_id', ID, nullable=False),
    sa.Column('close_entry_id', ID, nullable=True),
    sa.Column('reserved_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('confirmed_by_user_id', ID, nullable=True),
    sa.Column('statement_id', ID, nullable=True),
    sa.CheckConstraint("status IN ('reserved', 'fulfilled', 'cancelled', 'expired')", name=op.f('ck_redemptions_status')),
    sa.CheckConstraint('points > 0', name=op.f('ck_redemptions_points_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_redemptions_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['close_entry_id'], ['journal_entries.id'], name=op.f('fk_redemptions_close_entry_id_journal_entries')),
    sa.ForeignKeyConstraint(['confirmed_by_user_id'], ['users.id'], name=op.f('fk_redemptions_confirmed_by_user_id_users')),
    sa.ForeignKeyConstraint(['hold_entry_id'], ['journal_entries.id'], name=op.f('fk_redemptions_hold_entry_id_journal_entries')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_redemptions_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_redemptions_offer_id_offers')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_redemptions_resident_id_residents')),
    sa.ForeignKeyConstraint(['statement_id'], ['settlement_statements.id'], name=op.f('fk_redemptions_statement_id_settlement_statements')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemptions')),
    sa.UniqueConstraint('code', name=op.f('uq_redemptions_code')),
    sa.UniqueConstraint('resident_id', 'idempotency_key', name=op.f('uq_redemptions_resident_id_idempotency_key'))
    )
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.create_index('ix_redemptions_merchant_closed', ['merchant_id', 'status', 'closed_at'], unique=False)
        batch_op.create_index('ix_redemptions_offer_resident', ['offer_id', 'resident_id'], unique=False)
        batch_op.create_index('ix_redemptions_open', ['expires_at'], unique=False, postgresql_where=sa.text("status = 'reserved'"), sqlite_where=sa.text("status = 'reserved'"))
        batch_op.create_index('ix_redemptions_resident', ['resident_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemptions_statement_id'), ['statement_id'], unique=False)

    op.create_table('right_grants',
    sa.Column('id', ID, nullable=False),
    sa.Column('right_id', ID, nullable=False),
    sa.Column('resident_id', ID, nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('via', sa.String(length=8), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('entry_id', ID, nullable=True),
    sa.Column('idempotency_key', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('consumed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('issued', 'consumed', 'expired')", name=op.f('ck_right_grants_status')),
    sa.CheckConstraint("via IN ('points', 'level')", name=op.f('ck_right_grants_via')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_right_grants_entry_id_journal_entries')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_right_grants_resident_id_residents')),
    sa.ForeignKeyConstraint(['right_id'], ['opened_rights.id'], name=op.f('fk_right_grants_right_id_opened_rights')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_right_grants')),
    sa.UniqueConstraint('code', name=op.f('uq_right_grants_code')),
    sa.UniqueConstraint('resident_id', 'idempotency_key', name=op.f('uq_right_grants_resident_id_idempotency_key'))
    )
    with op.batch_alter_table('right_grants', schema=None) as batch_op:
        batch_op.create_index('ix_right_grants_resident', ['resident_id', 'id'], unique=False)
        batch_op.create_index('ix_right_grants_right_resident', ['right_id', 'resident_id'], unique=False)

    # Each welfare project has its own ledger account. On SQLite the column is added in place
    # (a batch rebuild of ledger_accounts would drop the triggers 0003 put on it).
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE ledger_accounts ADD COLUMN project_id INTEGER "
                   "CONSTRAINT fk_ledger_accounts_project_id_welfare_projects REFERENCES welfare_projects (id)")
        run_sql_file(op.get_bind(), "0006_spending")
    else:
        op.add_column('ledger_accounts', sa.Column('project_id', ID, nullable=True))
        op.create_foreign_key(op.f('fk_ledger_accounts_project_id_welfare_projects'), 'ledger_accounts',
                              'welfare_projects', ['project_id'], ['id'])
        run_sql_file(op.get_bind(), "0006_spending")
    op.create_index('uq_ledger_accounts_project', 'ledger_accounts', ['kind', 'project_id'], unique=True)



def downgrade() -> None:
    op.drop_index('uq_ledger_accounts_project', table_name='ledger_accounts')
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER settlement_statements_no_delete")
        op.execute("DROP TRIGGER settlement_statements_immutable")
        op.execute("ALTER TABLE ledger_accounts DROP COLUMN project_id")
    else:
        run_sql_file(op.get_bind(), "0006_spending_down")
        op.drop_constraint(op.f('fk_ledger_accounts_project_id_welfare_projects'), 'ledger_accounts',
                           type_='foreignkey')
        op.drop_column('ledger_accounts', 'project_id')

    with op.batch_alter_table('right_grants', schema=None) as batch_op:
        batch_op.drop_index('ix_right_grants_right_resident')
        batch_op.drop_index('ix_right_grants_resident')

    op.drop_table('right_grants')
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_redemptions_statement_id'))
        batch_op.drop_index('ix_redemptions_resident')
        batch_op.drop_index('ix_redemptions_open', postgresql_where=sa.text("status = 'reserved'"), sqlite_where=sa.text("status = 'reserved'"))
        batch_op.drop_index('ix_redemptions_offer_resident')
        batch_op.drop_index('ix_redemptions_merchant_closed')

    op.drop_table('redemptions')
    with op.batch_alter_table('donations', schema=None) as batch_op:
        batch_op.drop_index('ix_donations_resident')
        batch_op.drop_index('ix_donations_project')

    op.drop_table('donations')
    op.drop_table('settlement_statements')
    with op.batch_alter_table('offer_regions', schema=None) as batch_op:
        batch_op.drop_index('ix_offer_regions_region')

    op.drop_table('offer_regions')
    with op.batch_alter_table('welfare_projects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_welfare_projects_region_code'))

    op.drop_table('welfare_projects')
    with op.batch_alter_table('opened_rights', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_opened_rights_region_code'))
        batch_op.drop_index(batch_op.f('ix_opened_rights_partner_id'))

    op.drop_table('opened_rights')
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_index('ix_offers_merchant')

    op.drop_table('offers')
