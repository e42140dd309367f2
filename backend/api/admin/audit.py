"""Admin: the audit log, newest first, and its chain status."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.security import requires
from backend.db import db
from backend.models import Role
from backend.services import audit

blp = Blueprint("admin_audit", __name__, url_prefix="/api/v1/admin/audit-log",
                description="Admin: the hash-chained audit log")

READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)


class AuditListArgs(CursorArgs):
    action = fields.String(validate=validate.Length(max=64))
    target_type = fields.String(validate=validate.Length(max=32))
    target_id = fields.String(validate=validate.Length(max=64))


class AuditEntrySchema(Schema):
    id = fields.Integer()
    occurred_at = fields.DateTime()
    actor = fields.String()
    actor_user_id = fields.Integer(allow_none=True)
    action = fields.String()
    target_type = fields.String()
    target_id = fields.String(allow_none=True)
    region = fields.String(attribute="region_code", allow_none=True)
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)
    reason = fields.String(allow_none=True)
    prev_hash = fields.String()
    hash = fields.String()


class ChainSchema(Schema):
    ok = fields.Boolean()
    checked = fields.Integer()
    broken_at = fields.Integer(allow_none=True)
    problem = fields.String(allow_none=True)


AuditPage = page_schema(AuditEntrySchema, "AuditPage")


@blp.route("")
class AuditLogList(MethodView):
    @requires(*READERS)
    @blp.arguments(AuditListArgs, location="query")
    @blp.response(200, AuditPage)
    def get(self, args: dict[str, object]):
        """Audit entries, newest first"""
        rows, next_key = audit.browse(
            action=args.get("action"), target_type=args.get("target_type"), target_id=args.get("target_id"),
            before=decode_cursor(args.get("cursor")), limit=args["limit"],
        )
        return page(rows, next_key)


@blp.route("/verify")
class Verify(MethodView):
    @requires(*READERS)
    @blp.response(200, ChainSchema)
    def get(self):
        """Recompute the whole hash chain and say where it breaks, if anywhere"""
        return audit.verify_chain(db.session)
