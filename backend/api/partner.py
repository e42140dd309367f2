"""Partner-side endpoints, authenticated by HMAC signature (DESIGN §9)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from backend.api.common import Blueprint
from backend.api.security import current_partner, partner_signed

blp = Blueprint("partner", __name__, url_prefix="/api/v1/partner", description="Partners (signed requests)")


class PartnerSelfSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    activity_types = fields.List(fields.String())
    region = fields.String(attribute="region_code")
    key_id = fields.String()


@blp.route("/me")
class PartnerMe(MethodView):
    @partner_signed
    @blp.response(200, PartnerSelfSchema)
    def get(self):
        """Who the signature says you are: a way to test your signing code"""
        return current_partner()
