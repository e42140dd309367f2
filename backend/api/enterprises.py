"""Enterprise accounts for small and micro businesses (resident side)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint
from backend.api.security import current_resident, requires
from backend.models import Enterprise, Role
from backend.services import enterprises

blp = Blueprint("enterprises", __name__, url_prefix="/api/v1/enterprises",
                description="Small and micro enterprise accounts")

RESIDENT = Role.RESIDENT.value


class ApplySchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    region = fields.String(required=True, validate=REGION_CODE)
    uscc = fields.String(required=True, validate=validate.Length(equal=18),
                         metadata={"description": "统一社会信用代码, 18 characters"})


class EnterpriseSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    uscc = fields.String()
    region = fields.String(attribute="region_code")
    status = fields.String()
    review_note = fields.String(allow_none=True)
    created_at = fields.DateTime()
    reviewed_at = fields.DateTime(allow_none=True)


@blp.route("")
class Enterprises(MethodView):
    @requires(RESIDENT)
    @blp.response(200, EnterpriseSchema(many=True))
    def get(self):
        """Enterprises you manage"""
        return enterprises.managed_by(current_resident())

    @requires(RESIDENT)
    @blp.arguments(ApplySchema)
    @blp.response(201, EnterpriseSchema)
    def post(self, body: dict[str, str]) -> Enterprise:
        """Register a small or micro enterprise; an operator reviews it"""
        return enterprises.apply(current_resident(), body["name"], body["region"], body["uscc"])


@blp.route("/<int:enterprise_id>")
class EnterpriseDetail(MethodView):
    @requires(RESIDENT)
    @blp.response(200, EnterpriseSchema)
    def get(self, enterprise_id: int) -> Enterprise:
        """An enterprise you manage"""
        return enterprises.get_managed(current_resident(), enterprise_id)
