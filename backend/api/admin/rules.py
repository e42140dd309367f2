"""Admin: exchange-rule versions per region, governed (and simulated) like methodology versions."""

from __future__ import annotations

from backend.api.admin.versions import version_routes
from backend.api.common import Blueprint
from backend.services import rules, rules_simulation

blp = Blueprint("admin_rules", __name__, url_prefix="/api/v1/admin/rules",
                description="Admin: exchange rules (certified grams to points), per region")

version_routes(blp, kind=rules.KIND, name="Rules", payload_field="rules", subject_label="subject",
               subject=rules.SUBJECT, simulate=rules_simulation.simulate)
