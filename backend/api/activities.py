"""A resident's consent to partners (bindings) and their activities: reported, reviewed, credited."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import ID_RANGE, Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.partner import BatchResultSchema
from backend.api.security import current_resident, current_user, requires
from backend.errors import field_error
from backend.models import Role
from backend.services import bindings, ingest, review
from backend.validators import in_platform_years

blp = Blueprint("activities", __name__, url_prefix="/api/v1/me", description="Bindings and activities")

RESIDENT = Role.RESIDENT.value


class BindingCreateSchema(Schema):
    partner_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    external_user_ref = fields.String(required=True, validate=validate.Length(min=1, max=128),
                                      metadata={"description": "your id at the partner: a card number, an account"})


class BindingSchema(Schema):
    id = fields.Integer()
    partner_id = fields.Integer()
    partner_name = fields.String()
    activity_types = fields.List(fields.String())
    external_user_ref = fields.String()
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class BindingListSchema(Schema):
    items = fields.List(fields.Nested(BindingSchema))


class ActivitySchema(Schema):
    id = fields.Integer()
    type = fields.String()
    status = fields.String()
    reason = fields.String(allow_none=True, metadata={"description": "why it was rejected or held for review"})
    source = fields.String()
    occurred_at = fields.DateTime()
    data = fields.Dict()
    reviewed_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


ActivityPage = page_schema(ActivitySchema, "ActivityPage")


class SelfReportSchema(Schema):
    type = fields.String(required=True, validate=validate.Length(min=1, max=40))
    occurred_at = fields.AwareDateTime(required=True, validate=in_platform_years)
    data = fields.Dict(required=True)
    external_id = fields.String(validate=validate.Length(min=1, max=100),
                                metadata={"description": "your own id for it: sending it again is harmless"})


def _binding_view(binding, partner) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {"id": binding.id, "partner_id": partner.id, "partner_name": partner.name,
            "activity_types": partner.activity_types, "external_user_ref": binding.external_user_ref,
            "created_at": binding.created_at, "revoked_at": binding.revoked_at}


@blp.route("/bindings")
class Bindings(MethodView):
    @requires(RESIDENT)
    @blp.response(200, BindingListSchema)
    def get(self):
        """The partners you let report your activities, and the ones you revoked"""
        return {"items": [_binding_view(b, p) for b, p in bindings.of_resident(current_resident().id)]}

    @requires(RESIDENT)
    @blp.arguments(BindingCreateSchema)
    @blp.response(201, BindingSchema)
    def post(self, body: dict[str, object]):
        """Let a partner report your activities from now on"""
        return _binding_view(*bindings.bind(current_resident(), body["partner_id"],  # type: ignore[arg-type]
                                            body["external_user_ref"], actor=current_user()))  # type: ignore[arg-type]


@blp.route("/bindings/<int:binding_id>")
class Binding(MethodView):
    @requires(RESIDENT)
    @blp.response(200, BindingSchema)
    def delete(self, binding_id: int):
        """Revoke: the partner's later reports for you are rejected as unbound"""
        return _binding_view(*bindings.revoke(current_resident(), binding_id, actor=current_user()))


@blp.route("/activities")
class Activities(MethodView):
    @requires(RESIDENT)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, ActivityPage)
    def get(self, args: dict[str, object]):
        """Your reported activities, newest first, with each one's status and reason"""
        rows, next_key = review.resident_activities(current_resident().id, before=decode_cursor(args.get("cursor")),
                                                    limit=args["limit"])  # type: ignore[arg-type]
        return page(rows, next_key)

    @requires(RESIDENT)
    @blp.arguments(SelfReportSchema)
    @blp.response(201, BatchResultSchema)
    def post(self, body: dict[str, object]):
        """Report an activity yourself (a quiz, a kiosk drop-off with its receipt): an auditor checks it"""
        item = {k: (v.isoformat() if k == "occurred_at" else v) for k, v in body.items()}  # type: ignore[union-attr]
        result = ingest.ingest(ingest.Reporter("self", resident=current_resident()), [item])[0]
        if result["status"] == "rejected":  # one report: refuse it whole, write nothing
            raise field_error(result.get("field", "data"), result.get("message", result["reason"]),
                              error=result["reason"])
        return {"results": [result]}
