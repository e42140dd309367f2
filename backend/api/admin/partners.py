"""Admin: partners (data sources) and their signing keys."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint, CursorArgs, ReasonSchema, decode_cursor, page, page_schema
from backend.api.security import current_user, requires
from backend.models import Role
from backend.models.partner import PARTNER_KINDS, TRUST_LEVELS
from backend.services import partners

blp = Blueprint("admin_partners", __name__, url_prefix="/api/v1/admin/partners",
                description="Admin: partners that report activities")

STAFF = (Role.OPERATOR.value, Role.ADMIN.value)
# Auditors read what operators manage (their console shows it) but change none of it.
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)


class PartnerCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    kind = fields.String(required=True, validate=validate.OneOf(PARTNER_KINDS))
    activity_types = fields.List(fields.String(validate=validate.Length(max=40)), required=True,
                                 validate=validate.Length(min=1, max=20))
    region = fields.String(required=True, validate=REGION_CODE)


class UpdateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=128))
    activity_types = fields.List(fields.String(validate=validate.Length(max=40)),
                                 validate=validate.Length(min=1, max=20))


class RotateSchema(Schema):
    grace_hours = fields.Integer(load_default=24, validate=validate.Range(min=0, max=168), strict=True)


class TrustSchema(Schema):
    trust_level = fields.String(required=True, validate=validate.OneOf(TRUST_LEVELS))
    reason = fields.String(load_default=None, validate=validate.Length(max=500))


class PartnerSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    activity_types = fields.List(fields.String())
    region = fields.String(attribute="region_code")
    key_id = fields.String()
    status = fields.String()
    trust_level = fields.String(metadata={"description": "standard | probation (an auditor reviews everything)"})
    created_at = fields.DateTime()
    rotated_at = fields.DateTime(allow_none=True)
    previous_secret_expires_at = fields.DateTime(allow_none=True)


class PartnerWithSecretSchema(PartnerSchema):
    secret = fields.String(metadata={"description": "shown once; store it in the partner's vault"})


PartnerPage = page_schema(PartnerSchema, "PartnerPage")


def _with_secret(issued: partners.IssuedSecret) -> dict[str, object]:
    """The partner's fields as stored (the response schema serialises them) plus the secret."""
    partner = issued.partner
    fields_ = {
        field.attribute or name: getattr(partner, field.attribute or name)
        for name, field in PartnerSchema().fields.items()
    }
    return {**fields_, "secret": issued.secret}


@blp.route("")
class Partners(MethodView):
    @requires(*READERS)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, PartnerPage)
    def get(self, args: dict[str, object]):
        """Partners in your region"""
        rows, next_key = partners.browse(current_user(), before=decode_cursor(args.get("cursor")),
                                         limit=args["limit"])
        return page(rows, next_key)

    @requires(*STAFF)
    @blp.arguments(PartnerCreateSchema)
    @blp.response(201, PartnerWithSecretSchema)
    def post(self, body: dict[str, object]):
        """Register a partner; the answer holds its secret, shown this once"""
        issued = partners.create(body["name"], body["kind"], body["activity_types"], body["region"],
                                 actor=current_user())
        return _with_secret(issued)


@blp.route("/<int:partner_id>")
class PartnerDetail(MethodView):
    @requires(*READERS)
    @blp.response(200, PartnerSchema)
    def get(self, partner_id: int):
        """One partner"""
        return partners.get_scoped(partner_id, current_user())

    @requires(*STAFF)
    @blp.arguments(UpdateSchema)
    @blp.response(200, PartnerSchema)
    def patch(self, body: dict[str, object], partner_id: int):
        """Rename a partner or change the activity types it may report"""
        return partners.update(partner_id, actor=current_user(), name=body.get("name"),
                               activity_types=body.get("activity_types"))


@blp.route("/<int:partner_id>/rotate")
class Rotate(MethodView):
    @requires(*STAFF)
    @blp.arguments(RotateSchema)
    @blp.response(200, PartnerWithSecretSchema)
    def post(self, body: dict[str, int], partner_id: int):
        """New secret; the old one keeps working for grace_hours so the partner can switch over"""
        return _with_secret(partners.rotate(partner_id, actor=current_user(), grace_hours=body["grace_hours"]))


@blp.route("/<int:partner_id>/disable")
class Disable(MethodView):
    @requires(*STAFF)
    @blp.arguments(ReasonSchema)
    @blp.response(200, PartnerSchema)
    def post(self, body: dict[str, str | None], partner_id: int):
        """Stop accepting this partner's requests"""
        return partners.set_status(partner_id, "disabled", actor=current_user(), reason=body["reason"])


@blp.route("/<int:partner_id>/enable")
class Enable(MethodView):
    @requires(*STAFF)
    @blp.arguments(ReasonSchema)
    @blp.response(200, PartnerSchema)
    def post(self, body: dict[str, str | None], partner_id: int):
        """Accept this partner's requests again"""
        return partners.set_status(partner_id, "active", actor=current_user(), reason=body["reason"])


@blp.route("/<int:partner_id>/trust")
class Trust(MethodView):
    @requires(*STAFF)
    @blp.arguments(TrustSchema)
    @blp.response(200, PartnerSchema)
    def post(self, body: dict[str, str | None], partner_id: int):
        """Put a partner on probation (every activity reviewed) or back to standard"""
        return partners.set_trust(partner_id, body["trust_level"], actor=current_user(),  # type: ignore[arg-type]
                                  reason=body["reason"])
