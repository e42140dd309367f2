"""foundation: regions, users and roles, residents, households, communities, enterprises,
merchants, partners, tokens, the hash-chained audit log

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.sqlfiles import run_sql_file

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('last_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('last_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_head_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.create_table('regions',
    sa.Column('code', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('name_en', sa.String(length=64), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('parent_code', sa.String(length=6), nullable=True),
    sa.CheckConstraint("level IN ('province', 'city', 'district')", name=op.f('ck_regions_level')),
    sa.CheckConstraint('length(code) = 6', name=op.f('ck_regions_code_six_digits')),
    sa.ForeignKeyConstraint(['parent_code'], ['regions.code'], name=op.f('fk_regions_parent_code_regions')),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_regions'))
    )
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_regions_parent_code'), ['parent_code'], unique=False)

    op.create_table('merchants',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f('ck_merchants_status')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_merchants_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merchants'))
    )
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchants_region_code'), ['region_code'], unique=False)

    op.create_table('partners',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('activity_types', sa.JSON(), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('secret_ciphertext', sa.Text(), nullable=False),
    sa.Column('previous_secret_ciphertext', sa.Text(), nullable=True),
    sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('transit', 'bike_share', 'maas', 'recycling', 'grid', 'solar', 'education', 'other')", name=op.f('ck_partners_kind')),
    sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f('ck_partners_status')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_partners_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partners')),
    sa.UniqueConstraint('key_id', name=op.f('uq_partners_key_id')),
    sa.UniqueConstraint('name', name=op.f('uq_partners_name'))
    )
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partners_region_code'), ['region_code'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('token_version', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('scope_region_code', sa.String(length=6), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind IN ('resident', 'staff')", name=op.f('ck_users_kind')),
    sa.CheckConstraint('username = lower(username)', name=op.f('ck_users_username_lowercase')),
    sa.ForeignKeyConstraint(['scope_region_code'], ['regions.code'], name=op.f('fk_users_scope_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('id', 'kind', name=op.f('uq_users_id_kind')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target_type', sa.String(length=32), nullable=False),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], name=op.f('fk_audit_log_actor_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_log_hash'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)

    op.create_table('merchant_staff',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('merchant_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_merchant_staff_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_merchant_staff_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_merchant_staff'))
    )
    with op.batch_alter_table('merchant_staff', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merchant_staff_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('partner_nonces',
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('partner_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_partner_nonces_partner_id_partners')),
    sa.PrimaryKeyConstraint('signature', name=op.f('pk_partner_nonces'))
    )
    with op.batch_alter_table('partner_nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partner_nonces_seen_at'), ['seen_at'], unique=False)

    op.create_table('refresh_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('family', sa.String(length=32), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_refresh_tokens_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_tokens_token_hash'))
    )
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refresh_tokens_family'), ['family'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('residents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_kind', sa.String(length=16), server_default='resident', nullable=False),
    sa.Column('display_name', sa.String(length=64), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('anonymised_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("user_kind = 'resident'", name=op.f('ck_residents_resident_user')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_residents_region_code_regions')),
    sa.ForeignKeyConstraint(['user_id', 'user_kind'], ['users.id', 'users.kind'], name=op.f('fk_residents_user_id_user_kind_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_residents')),
    sa.UniqueConstraint('user_id', name=op.f('uq_residents_user_id'))
    )
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_residents_region_code'), ['region_code'], unique=False)

    op.create_table('user_roles',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('user_kind', sa.String(length=16), server_default='staff', nullable=False),
    sa.CheckConstraint("role IN ('merchant_staff', 'operator', 'auditor', 'admin')", name=op.f('ck_user_roles_role')),
    sa.CheckConstraint("user_kind = 'staff'", name=op.f('ck_user_roles_staff_only')),
    sa.ForeignKeyConstraint(['user_id', 'user_kind'], ['users.id', 'users.kind'], name=op.f('fk_user_roles_user_id_user_kind_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'role', name=op.f('pk_user_roles'))
    )
    op.create_table('communities',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('description', sa.String(length=500), server_default='', nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('created_by_resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_resident_id'], ['residents.id'], name=op.f('fk_communities_created_by_resident_id_residents')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_communities_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_communities')),
    sa.UniqueConstraint('region_code', 'name', name=op.f('uq_communities_region_code_name'))
    )
    with op.batch_alter_table('communities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_communities_region_code'), ['region_code'], unique=False)

    op.create_table('enterprises',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('uscc', sa.String(length=18), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('manager_resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reviewed_by_user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('review_note', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'active', 'rejected', 'suspended')", name=op.f('ck_enterprises_status')),
    sa.CheckConstraint('length(uscc) = 18', name=op.f('ck_enterprises_uscc_length')),
    sa.ForeignKeyConstraint(['manager_resident_id'], ['residents.id'], name=op.f('fk_enterprises_manager_resident_id_residents')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_enterprises_region_code_regions')),
    sa.ForeignKeyConstraint(['reviewed_by_user_id'], ['users.id'], name=op.f('fk_enterprises_reviewed_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enterprises')),
    sa.UniqueConstraint('uscc', name=op.f('uq_enterprises_uscc'))
    )
    with op.batch_alter_table('enterprises', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enterprises_manager_resident_id'), ['manager_resident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_enterprises_region_code'), ['region_code'], unique=False)

    op.create_table('households',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('owner_resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('invite_code', sa.String(length=8), nullable=True),
    sa.Column('status', sa.String(length=8), server_default='active', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('active', 'closed')", name=op.f('ck_households_status')),
    sa.ForeignKeyConstraint(['owner_resident_id'], ['residents.id'], name=op.f('fk_households_owner_resident_id_residents')),
    sa.ForeignKeyConstraint(['region_code'], ['regions.code'], name=op.f('fk_households_region_code_regions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_households')),
    sa.UniqueConstraint('invite_code', name=op.f('uq_households_invite_code'))
    )
    with op.batch_alter_table('households', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_households_region_code'), ['region_code'], unique=False)

    op.create_table('community_members',
    sa.Column('community_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['community_id'], ['communities.id'], name=op.f('fk_community_members_community_id_communities')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_community_members_resident_id_residents')),
    sa.PrimaryKeyConstraint('community_id', 'resident_id', name=op.f('pk_community_members'))
    )
    with op.batch_alter_table('community_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_community_members_resident_id'), ['resident_id'], unique=False)

    op.create_table('household_members',
    sa.Column('household_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('resident_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('joined_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['household_id'], ['households.id'], name=op.f('fk_household_members_household_id_households')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_household_members_resident_id_residents')),
    sa.PrimaryKeyConstraint('household_id', 'resident_id', name=op.f('pk_household_members')),
    sa.UniqueConstraint('resident_id', name=op.f('uq_household_members_resident_id'))
    )


    regions = sa.table("regions", sa.column("code"), sa.column("name"), sa.column("name_en"),
                       sa.column("level"), sa.column("parent_code"))
    op.bulk_insert(regions, [
        {"code": code, "name": name, "name_en": name_en, "level": level, "parent_code": parent}
        for code, name, name_en, level, parent in SEED_REGIONS
    ])
    op.bulk_insert(sa.table("audit_head", sa.column("id"), sa.column("last_id"), sa.column("last_hash")),
                   [{"id": 1, "last_id": None, "last_hash": "0" * 64}])
    run_sql_file(op.get_bind(), "0001_append_only")


# GB/T 2260 codes of the regions the seed plans come from (shared/seeds); more are added by admins.
SEED_REGIONS = [
    ("430000", "湖南省", "Hunan Province", "province", None),
    ("430200", "株洲市", "Zhuzhou", "city", "430000"),
    ("430204", "石峰区", "Shifeng District", "district", "430200"),
    ("430400", "衡阳市", "Hengyang", "city", "430000"),
    ("430600", "岳阳市", "Yueyang", "city", "430000"),
    ("430602", "岳阳楼区", "Yueyanglou District", "district", "430600"),
    ("430603", "云溪区", "Yunxi District", "district", "430600"),
    ("430611", "君山区", "Junshan District", "district", "430600"),
    ("430621", "岳阳县", "Yueyang County", "district", "430600"),
    ("430623", "华容县", "Huarong County", "district", "430600"),
    ("430624", "湘阴县", "Xiangyin County", "district", "430600"),
    ("430626", "平江县", "Pingjiang County", "district", "430600"),
    ("430681", "汨罗市", "Miluo", "district", "430600"),
    ("430682", "临湘市", "Linxiang", "district", "430600"),
    ("431100", "永州市", "Yongzhou", "city", "430000"),
]

def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS carbon_refuse_change() CASCADE")
    op.drop_table('household_members')
    with op.batch_alter_table('community_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_community_members_resident_id'))

    op.drop_table('community_members')
    with op.batch_alter_table('households', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_households_region_code'))

    op.drop_table('households')
    with op.batch_alter_table('enterprises', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enterprises_region_code'))
        batch_op.drop_index(batch_op.f('ix_enterprises_manager_resident_id'))

    op.drop_table('enterprises')
    with op.batch_alter_table('communities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_communities_region_code'))

    op.drop_table('communities')
    op.drop_table('user_roles')
    with op.batch_alter_table('residents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_residents_region_code'))

    op.drop_table('residents')
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_tokens_user_id'))
        batch_op.drop_index(batch_op.f('ix_refresh_tokens_family'))

    op.drop_table('refresh_tokens')
    with op.batch_alter_table('partner_nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_partner_nonces_seen_at'))

    op.drop_table('partner_nonces')
    with op.batch_alter_table('merchant_staff', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchant_staff_merchant_id'))

    op.drop_table('merchant_staff')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))

    op.drop_table('audit_log')
    op.drop_table('users')
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_partners_region_code'))

    op.drop_table('partners')
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merchants_region_code'))

    op.drop_table('merchants')
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_regions_parent_code'))

    op.drop_table('regions')
    op.drop_table('audit_head')
