"""the points ledger: accounts, journal entries, postings, lots, clawbacks, queued credits, budgets;
the rules' evaluation of each reduction

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.sqlfiles import run_sql_file

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('budget_counters',
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('points_limit', sa.BigInteger(), nullable=False),
    sa.Column('used', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.CheckConstraint('used >= 0 AND used <= points_limit', name=op.f('ck_budget_counters_within_limit')),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_budget_counters'))
    )
    op.create_table('ledger_accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('household_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('enterprise_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('balance', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'enterprise_wallet') = (enterprise_id IS NOT NULL)", name=op.f('ck_ledger_accounts_enterprise_owner')),
    sa.CheckConstraint("(kind = 'household_wallet') = (household_id IS NOT NULL)", name=op.f('ck_ledger_accounts_household_owner')),
    sa.CheckConstraint("(kind = 'resident_wallet') = (resident_id IS NOT NULL)", name=op.f('ck_ledger_accounts_resident_owner')),
    sa.CheckConstraint("kind IN ('resident_wallet', 'household_wallet', 'enterprise_wallet', 'merchant_settlement', 'welfare_project', 'redemption_holds', 'issuance', 'expired', 'reversed')", name=op.f('ck_ledger_accounts_kind')),
    sa.CheckConstraint('balance >= 0', name=op.f('ck_ledger_accounts_balance_non_negative')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprises.id'], name=op.f('fk_ledger_accounts_enterprise_id_enterprises')),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_ledger_accounts_household_id_households')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_ledger_accounts_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_ledger_accounts_region_code_regions')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_ledger_accounts_resident_id_residents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('kind', 'enterprise_id', name=op.f('uq_ledger_accounts_kind_enterprise_id')),
    sa.UniqueConstraint('kind', 'household_id', name=op.f('uq_ledger_accounts_kind_household_id')),
    sa.UniqueConstraint('kind', 'merchant_id', name=op.f('uq_ledger_accounts_kind_merchant_id')),
    sa.UniqueConstraint('kind', 'region_code', name=op.f('uq_ledger_accounts_kind_region_code')),
    sa.UniqueConstraint('kind', 'resident_id', name=op.f('uq_ledger_accounts_kind_resident_id'))
    )
    op.create_table('journal_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('idempotency_key', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('posted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rule_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_sha256', sa.String(length=64), nullable=False),
    sa.Column('reduction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reverses_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('memo', sa.String(length=200), nullable=False),
    sa.Column('trace', sa.JSON(), nullable=True),
    sa.Column('actor_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_txid', sa.BigInteger(), nullable=True),
    sa.CheckConstraint("kind IN ('credit', 'expire', 'reverse', 'spend', 'release', 'settle', 'donate', 'adjust')", name=op.f('ck_journal_entries_kind')),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], name=op.f('fk_journal_entries_actor_user_id_users')),
    sa.ForeignKeyConstraint(['reduction_id'], ['reductions.id'], name=op.f('fk_journal_entries_reduction_id_reductions')),
    sa.ForeignKeyConstraint(['reverses_id'], ['journal_entries.id'], name=op.f('fk_journal_entries_reverses_id_journal_entries')),
    sa.ForeignKeyConstraint(['rule_version_id'], ['policy_versions.id'], name=op.f('fk_journal_entries_rule_version_id_policy_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journal_entries')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_journal_entries_idempotency_key')),
    sa.UniqueConstraint('reverses_id', name=op.f('uq_journal_entries_reverses_id'))
    )
    with op.batch_alter_table('journal_entries', schema=None) as batch_op:
        batch_op.create_index('ix_journal_entries_reduction', ['reduction_id'], unique=False)

    op.create_table('clawbacks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reduction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('shortfall', sa.BigInteger(), nullable=False),
    sa.Column('outstanding', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('outstanding >= 0 AND outstanding <= shortfall', name=op.f('ck_clawbacks_outstanding_within_shortfall')),
    sa.CheckConstraint('shortfall > 0', name=op.f('ck_clawbacks_shortfall_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_clawbacks_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_clawbacks_entry_id_journal_entries')),
    sa.ForeignKeyConstraint(['reduction_id'], ['reductions.id'], name=op.f('fk_clawbacks_reduction_id_reductions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clawbacks')),
    sa.UniqueConstraint('reduction_id', name=op.f('uq_clawbacks_reduction_id'))
    )
    with op.batch_alter_table('clawbacks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_clawbacks_account_id'), ['account_id'], unique=False)

    op.create_table('lots',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_lots_amount_positive')),
    sa.CheckConstraint('remaining >= 0 AND remaining <= amount', name=op.f('ck_lots_remaining_within_amount')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_lots_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_lots_entry_id_journal_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lots'))
    )
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lots_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index('ix_lots_expiring', ['expires_on'], unique=False, postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))
        batch_op.create_index('ix_lots_open', ['account_id', 'expires_on', 'id'], unique=False, postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))

    op.create_table('postings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount <> 0', name=op.f('ck_postings_amount_not_zero')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_postings_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_postings_entry_id_journal_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_postings'))
    )
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.create_index('ix_postings_account', ['account_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_postings_entry_id'), ['entry_id'], unique=False)

    op.create_table('queued_credits',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reduction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('issuance_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('period_key', sa.String(length=16), nullable=False),
    sa.Column('trace', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.CheckConstraint('points > 0', name=op.f('ck_queued_credits_points_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_queued_credits_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['issuance_account_id'], ['ledger_accounts.id'], name=op.f('fk_queued_credits_issuance_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['reduction_id'], ['reductions.id'], name=op.f('fk_queued_credits_reduction_id_reductions')),
    sa.ForeignKeyConstraint(['released_entry_id'], ['journal_entries.id'], name=op.f('fk_queued_credits_released_entry_id_journal_entries')),
    sa.ForeignKeyConstraint(['rule_version_id'], ['policy_versions.id'], name=op.f('fk_queued_credits_rule_version_id_policy_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queued_credits')),
    sa.UniqueConstraint('reduction_id', name=op.f('uq_queued_credits_reduction_id'))
    )
    op.create_table('lot_allocations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount <> 0', name=op.f('ck_lot_allocations_amount_not_zero')),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.id'], name=op.f('fk_lot_allocations_entry_id_journal_entries')),
    sa.ForeignKeyConstraint(['lot_id'], ['lots.id'], name=op.f('fk_lot_allocations_lot_id_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lot_allocations'))
    )
    with op.batch_alter_table('lot_allocations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lot_allocations_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lot_allocations_lot_id'), ['lot_id'], unique=False)

    op.create_table('reduction_evaluations',
    sa.Column('reduction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rules_version_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('activity_type', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.Column('creditable_grams', sa.BigInteger(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('bonus_points', sa.BigInteger(), nullable=False),
    sa.Column('campaign', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('creditable_grams >= 0 AND creditable_grams <= grams', name=op.f('ck_reduction_evaluations_creditable_within')),
    sa.CheckConstraint('points >= 0 AND bonus_points >= 0 AND bonus_points <= points', name=op.f('ck_reduction_evaluations_points')),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_reduction_evaluations_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['reduction_id'], ['reductions.id'], name=op.f('fk_reduction_evaluations_reduction_id_reductions')),
    sa.ForeignKeyConstraint(['rules_version_id'], ['policy_versions.id'], name=op.f('fk_reduction_evaluations_rules_version_id_policy_versions')),
    sa.PrimaryKeyConstraint('reduction_id', name=op.f('pk_reduction_evaluations'))
    )
    op.create_index('ix_reduction_evaluations_account_time', 'reduction_evaluations', ['account_id', 'occurred_at'], unique=False)
    # Cap usage and a resident's reductions read by owner and time: range scans on these.
    op.drop_index('ix_reductions_resident_id', table_name='reductions')
    op.drop_index('ix_reductions_household_id', table_name='reductions')
    op.create_index('ix_reductions_resident_time', 'reductions', ['resident_id', 'occurred_at'], unique=False)
    op.create_index('ix_reductions_household_time', 'reductions', ['household_id', 'occurred_at'], unique=False)

    run_sql_file(op.get_bind(), "0003_ledger_guards")

def downgrade() -> None:
    run_sql_file(op.get_bind(), "0003_ledger_guards_down")
    op.drop_index('ix_reductions_household_time', table_name='reductions')
    op.drop_index('ix_reductions_resident_time', table_name='reductions')
    op.create_index('ix_reductions_household_id', 'reductions', ['household_id'], unique=False)
    op.create_index('ix_reductions_resident_id', 'reductions', ['resident_id'], unique=False)
    op.drop_index('ix_reduction_evaluations_account_time', table_name='reduction_evaluations')
    op.drop_table('reduction_evaluations')
    run_sql_file(op.get_bind(), "0003_restore_0002_reduction_guards")

    with op.batch_alter_table('lot_allocations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lot_allocations_lot_id'))
        batch_op.drop_index(batch_op.f('ix_lot_allocations_entry_id'))

    op.drop_table('lot_allocations')
    op.drop_table('queued_credits')
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_postings_entry_id'))
        batch_op.drop_index('ix_postings_account')

    op.drop_table('postings')
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_index('ix_lots_open', postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))
        batch_op.drop_index('ix_lots_expiring', postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))
        batch_op.drop_index(batch_op.f('ix_lots_entry_id'))

    op.drop_table('lots')
    with op.batch_alter_table('clawbacks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_clawbacks_account_id'))

    op.drop_table('clawbacks')
    with op.batch_alter_table('journal_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_journal_entries_reduction')

    op.drop_table('journal_entries')
    op.drop_table('ledger_accounts')
    op.drop_table('budget_counters')
