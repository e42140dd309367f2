"""HTTP API: flask-smorest blueprints. Views parse, call one service, serialise; nothing else."""

from __future__ import annotations

from backend.api.security import BEARER_SCHEME, PARTNER_SCHEMES
from backend.extensions import Api


def register_blueprints(api: Api) -> None:
    from backend.api import (
        activities,
        auth,
        bank_shares,
        certificates,
        communities,
        enterprises,
        households,
        leaderboards,
        merchant,
        partner,
        projects,
        public,
        redemptions,
        residents,
        rights,
    )
    from backend.api.admin import audit as admin_audit
    from backend.api.admin import enterprises as admin_enterprises
    from backend.api.admin import ledger as admin_ledger
    from backend.api.admin import market as admin_market
    from backend.api.admin import merchants as admin_merchants
    from backend.api.admin import methodologies as admin_methodologies
    from backend.api.admin import operations as admin_operations
    from backend.api.admin import partners as admin_partners
    from backend.api.admin import regions as admin_regions
    from backend.api.admin import reports as admin_reports
    from backend.api.admin import review as admin_review
    from backend.api.admin import rules as admin_rules
    from backend.api.admin import settlements as admin_settlements
    from backend.api.admin import users as admin_users

    api.spec.components.security_scheme("bearerAuth", BEARER_SCHEME)
    for name, scheme in PARTNER_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
    for module in (
        auth, residents, activities, households, communities, enterprises, merchant, partner, public,
        admin_partners, admin_merchants, admin_users, admin_enterprises, admin_audit, admin_regions,
        admin_methodologies, admin_rules, admin_ledger, admin_review, redemptions, projects, rights,
        admin_settlements, admin_operations, admin_market, admin_reports, bank_shares, certificates,
    ):
        api.register_blueprint(module.blp)
    api.register_blueprint(leaderboards.blp)
    api.register_blueprint(public.health)
