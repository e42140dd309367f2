"""Admin: review enterprise accounts."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.enterprises import EnterpriseSchema
from backend.api.security import current_user, requires
from backend.models import Role
from backend.models.enterprise import ENTERPRISE_STATUSES
from backend.services import enterprises

blp = Blueprint("admin_enterprises", __name__, url_prefix="/api/v1/admin/enterprises",
                description="Admin: review small and micro enterprise accounts")

STAFF = (Role.OPERATOR.value, Role.ADMIN.value)
# Auditors read what operators manage (their console shows it) but change none of it.
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)


class EnterpriseListArgs(CursorArgs):
    status = fields.String(validate=validate.OneOf(ENTERPRISE_STATUSES))


class ReviewSchema(Schema):
    note = fields.String(load_default=None, validate=validate.Length(max=500))


class AdminEnterpriseSchema(EnterpriseSchema):
    manager_resident_id = fields.Integer(allow_none=True)


EnterprisePage = page_schema(AdminEnterpriseSchema, "AdminEnterprisePage")


@blp.route("")
class Enterprises(MethodView):
    @requires(*READERS)
    @blp.arguments(EnterpriseListArgs, location="query")
    @blp.response(200, EnterprisePage)
    def get(self, args: dict[str, object]):
        """Enterprise accounts in your region (filter by status, e.g. pending)"""
        rows, next_key = enterprises.browse(current_user(), status=args.get("status"),
                                            before=decode_cursor(args.get("cursor")), limit=args["limit"])
        return page(rows, next_key)


def _review_route(decision: str, summary: str) -> None:
    class Review(MethodView):
        @requires(*STAFF)
        @blp.arguments(ReviewSchema)
        @blp.response(200, AdminEnterpriseSchema)
        def post(self, body: dict[str, str | None], enterprise_id: int):
            return enterprises.review(enterprise_id, decision, actor=current_user(), note=body["note"])

    Review.post.__doc__ = summary
    Review.__name__ = f"Review{decision.title()}"
    blp.route(f"/<int:enterprise_id>/{decision}")(Review)


_review_route("approve", "Approve a pending (or re-activate a suspended) enterprise")
_review_route("reject", "Reject a pending enterprise, with a note")
_review_route("suspend", "Suspend an active enterprise, with a note")
