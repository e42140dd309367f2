"""Partner-side endpoints, authenticated by HMAC signature (DESIGN §9)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import Blueprint
from backend.api.security import current_partner, partner_signed
from backend.config import current_settings
from backend.extensions import limiter
from backend.services import ingest

blp = Blueprint("partner", __name__, url_prefix="/api/v1/partner", description="Partners (signed requests)")

# Per address, only refused signatures count (a flood of forgeries or replays is slowed down
# before it costs a lookup each); per partner, every batch counts, checked after the signature is
# verified, so nobody but the partner can spend the partner's quota.
_signature_failures = limiter.shared_limit(
    lambda: current_settings().partner_auth_failures_per_ip, scope="partner_signature_failures",
    deduct_when=lambda response: response.status_code == 401,
    error_message="Too many refused signatures from this address; wait and try again.")
_per_partner = limiter.limit(
    lambda: current_settings().partner_rate_limit, key_func=lambda: f"partner:{current_partner().id}",
    error_message="Too many batches from this partner; send fewer, larger batches or wait for Retry-After.")


class PartnerSelfSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    activity_types = fields.List(fields.String())
    region = fields.String(attribute="region_code")
    key_id = fields.String()


@blp.route("/me")
class PartnerMe(MethodView):
    decorators = [_signature_failures]

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
    decorators = [_signature_failures]

    @partner_signed
    @_per_partner
    @blp.arguments(BatchSchema)
    @blp.response(200, BatchResultSchema)
    def post(self, body: dict[str, object]):
        """Report activities of residents who bound you: an answer per item, all of the batch or none of it"""
        return {"results": ingest.ingest(ingest.Reporter("partner", partner=current_partner()),
                                         body["activities"])}  # type: ignore[arg-type]
