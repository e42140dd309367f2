"""Partner-side endpoints, authenticated by HMAC signature (DESIGN §9)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import Blueprint
from backend.api.security import current_partner, partner_signed
from backend.services import ingest

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


class BatchSchema(Schema):
    activities = fields.List(fields.Raw(), required=True, validate=validate.Length(min=1, max=ingest.MAX_ITEMS),
                             metadata={"description": "at most 1000 items, each "
                                                      "{external_id, user_ref, type, occurred_at, data}"})


class ItemResultSchema(Schema):
    external_id = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "credited | pending_review | rejected | duplicate"})
    reason = fields.String()
    field = fields.String(metadata={"description": "the field at fault, dotted"})
    message = fields.String()
    activity_id = fields.Integer()
    original = fields.Dict(metadata={"description": "for a duplicate of an earlier report: its outcome"})
    reduction_g = fields.Integer()
    points = fields.Integer()


class BatchResultSchema(Schema):
    results = fields.List(fields.Nested(ItemResultSchema))


@blp.route("/activities")
class Activities(MethodView):
    @partner_signed
    @blp.arguments(BatchSchema)
    @blp.response(200, BatchResultSchema)
    def post(self, body: dict[str, object]):
        """Report activities of residents who bound you: an answer per item, all of the batch or none of it"""
        return {"results": ingest.ingest(ingest.Reporter("partner", partner=current_partner()),
                                         body["activities"])}  # type: ignore[arg-type]
