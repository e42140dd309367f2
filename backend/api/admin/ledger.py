"""Admin: reversing a fraudulent credit, and the ledger's health."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import Blueprint
from backend.api.security import current_user, requires
from backend.models import Role
from backend.services import ledger, ledger_verify

blp = Blueprint("admin_ledger", __name__, url_prefix="/api/v1/admin", description="Admin: the points ledger")


class ReverseSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class ReversalSchema(Schema):
    reduction_id = fields.Integer()
    points_taken_back = fields.Integer()
    clawback_outstanding = fields.Integer()
    queued_credit_cancelled = fields.Boolean()


@blp.route("/reductions/<int:reduction_id>/reverse")
class Reverse(MethodView):
    @requires(Role.AUDITOR.value)
    @blp.arguments(ReverseSchema)
    @blp.response(200, ReversalSchema)
    def post(self, body: dict[str, str], reduction_id: int):
        """Auditor: reverse a credit found fraudulent (unspent points back, the rest a clawback)"""
        return ledger.reverse_reduction(reduction_id, actor=current_user(), reason=body["reason"])


@blp.route("/ledger/verify")
class Verify(MethodView):
    @requires(Role.AUDITOR.value, Role.ADMIN.value, Role.OPERATOR.value)
    @blp.response(200)
    def get(self):
        """Check every ledger invariant now (each entry balances, balances equal postings, lots, totals)"""
        return ledger_verify.verify().as_dict()
