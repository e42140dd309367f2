"""Merchant offers and redemptions: reserve with points, confirm at the till, cancel or time out."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import (
    ID_RANGE,
    REGION_CODE,
    Blueprint,
    CursorArgs,
    RequiredIdempotencyHeaders,
    decode_cursor,
    page,
    page_schema,
)
from backend.api.security import current_resident, current_user, requires
from backend.config import current_settings
from backend.errors import field_error
from backend.extensions import limiter
from backend.models import Offer, Redemption, Role
from backend.services import redemptions, settlements
from backend.validators import in_platform_years

blp = Blueprint("redemptions", __name__, url_prefix="/api/v1", description="Offers and redemptions")

RESIDENT, SHOP = Role.RESIDENT.value, Role.MERCHANT_STAFF.value
POINTS = validate.Range(min=1, max=10_000_000)
STOCK = validate.Range(min=0, max=1_000_000)
LIMIT = validate.Range(min=1, max=1000)


class OfferCreateSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=120))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    points_price = fields.Integer(required=True, strict=True, validate=POINTS)
    stock = fields.Integer(required=True, strict=True, validate=STOCK)
    per_user_limit = fields.Integer(load_default=1, strict=True, validate=LIMIT)
    valid_from = fields.AwareDateTime(load_default=None, validate=in_platform_years,
                                      metadata={"description": "default: now"})
    valid_until = fields.AwareDateTime(required=True, validate=in_platform_years)
    regions = fields.List(fields.String(validate=REGION_CODE), load_default=None, validate=validate.Length(max=50),
                          metadata={"description": "where the offer is shown (and below); default: the merchant's "
                                                   "region"})


class OfferUpdateSchema(Schema):
    title = fields.String(validate=validate.Length(min=1, max=120))
    description = fields.String(validate=validate.Length(max=2000))
    valid_until = fields.AwareDateTime(validate=in_platform_years)
    per_user_limit = fields.Integer(strict=True, validate=LIMIT)
    add_stock = fields.Integer(strict=True, validate=validate.Range(min=1, max=1_000_000))
    status = fields.String(validate=validate.OneOf(["withdrawn"]))


class OfferSchema(Schema):
    id = fields.Integer()
    merchant_id = fields.Integer()
    title = fields.String()
    description = fields.String()
    points_price = fields.Integer()
    stock_total = fields.Integer()
    stock_left = fields.Integer(metadata={"description": "what is left to redeem"})
    per_user_limit = fields.Integer()
    valid_from = fields.DateTime()
    valid_until = fields.DateTime()
    status = fields.String()
    regions = fields.List(fields.String())


class OfferListArgs(CursorArgs):
    region = fields.String(validate=REGION_CODE, load_default=None,
                           metadata={"description": "offers shown to residents of this region"})


class ReserveSchema(Schema):
    offer_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)


class ConfirmSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=64),
                         metadata={"description": "the code as read aloud (dashes and case do not matter) "
                                                  "or the scanned QR payload"})


class RedemptionSchema(Schema):
    id = fields.Integer()
    offer_id = fields.Integer()
    offer_title = fields.String()
    merchant_id = fields.Integer()
    points = fields.Integer()
    status = fields.String(metadata={"description": "reserved | fulfilled | cancelled | expired"})
    code = fields.String(metadata={"description": "show it at the till; read aloud in two groups of five"})
    qr_payload = fields.String(allow_none=True)
    reserved_at = fields.DateTime()
    expires_at = fields.DateTime(metadata={"description": "the hold returns the points after this"})
    closed_at = fields.DateTime(allow_none=True)


OfferPageSchema = page_schema(OfferSchema, "OfferPage")
RedemptionPageSchema = page_schema(RedemptionSchema, "RedemptionPage")


class MerchantRedemptionArgs(CursorArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(["reserved", "fulfilled", "cancelled",
                                                                       "expired"]))


def _offers(offers: list[Offer]) -> list[dict[str, Any]]:
    regions = redemptions.offer_regions([o.id for o in offers])
    return [{"id": o.id, "merchant_id": o.merchant_id, "title": o.title, "description": o.description,
             "points_price": o.points_price, "stock_total": o.stock_total, "stock_left": o.stock_left,
             "per_user_limit": o.per_user_limit, "valid_from": o.valid_from, "valid_until": o.valid_until,
             "status": o.status, "regions": regions[o.id]} for o in offers]


def _redemptions(rows: list[Redemption], *, show_code: bool = True) -> list[dict[str, Any]]:
    titles = redemptions.titles(rows)
    return [{"id": r.id, "offer_id": r.offer_id, "offer_title": titles.get(r.offer_id, ""),
             "merchant_id": r.merchant_id, "points": r.points, "status": r.status,
             "code": redemptions.display_code(r.code) if show_code else settlements.mask_code(r.code),
             "qr_payload": redemptions.qr_payload(r) if show_code else None,
             "reserved_at": r.reserved_at, "expires_at": r.expires_at, "closed_at": r.closed_at} for r in rows]


@blp.route("/offers")
class Offers(MethodView):
    @blp.arguments(OfferListArgs, location="query")
    @blp.response(200, OfferPageSchema)
    def get(self, args: dict[str, Any]):
        """Offers open now, with what is left of each; ``region`` narrows to what its residents see"""
        items, next_key = redemptions.offers_page(args["region"], before=decode_cursor(args["cursor"]),
                                                  limit=args["limit"])
        return page(_offers(items), next_key)


@blp.route("/offers/<int:offer_id>")
class OfferOne(MethodView):
    @blp.response(200, OfferSchema)
    def get(self, offer_id: int):
        """One offer"""
        return _offers([redemptions.get_offer(offer_id)])[0]


@blp.route("/merchant/offers")
class MerchantOffers(MethodView):
    @requires(SHOP)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, OfferPageSchema)
    def get(self, args: dict[str, Any]):
        """Your merchant's offers, newest first"""
        items, next_key = redemptions.merchant_offers(current_user(), before=decode_cursor(args["cursor"]),
                                                      limit=args["limit"])
        return page(_offers(items), next_key)

    @requires(SHOP)
    @blp.arguments(OfferCreateSchema)
    @blp.response(201, OfferSchema)
    def post(self, body: dict[str, Any]):
        """Publish an offer for your merchant"""
        return _offers([redemptions.create_offer(current_user(), body)])[0]


@blp.route("/merchant/offers/<int:offer_id>")
class MerchantOffer(MethodView):
    @requires(SHOP)
    @blp.arguments(OfferUpdateSchema)
    @blp.response(200, OfferSchema)
    def patch(self, body: dict[str, Any], offer_id: int):
        """Edit, extend, add stock to or withdraw one of your offers (the price is fixed)"""
        if not body:
            raise field_error("_schema", "nothing to change")
        return _offers([redemptions.update_offer(current_user(), offer_id, body)])[0]


@blp.route("/me/redemptions")
class MyRedemptions(MethodView):
    @requires(RESIDENT)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, RedemptionPageSchema)
    def get(self, args: dict[str, Any]):
        """Your redemptions, newest first"""
        items, next_key = redemptions.resident_page(current_resident(), before=decode_cursor(args["cursor"]),
                                                    limit=args["limit"])
        return page(_redemptions(items), next_key)

    @requires(RESIDENT)
    @limiter.limit(lambda: current_settings().redemption_rate_limit,
                   key_func=lambda: f"resident:{current_resident().id}",
                   error_message="Too many reservations; wait for Retry-After and try again.")
    @blp.arguments(ReserveSchema)
    @blp.arguments(RequiredIdempotencyHeaders, location="headers")
    @blp.response(201, RedemptionSchema)
    @blp.alt_response(200, schema=RedemptionSchema, description="a retry with the same Idempotency-Key")
    def post(self, body: dict[str, Any], headers: dict[str, str]):
        """Reserve an offer: its points move to a hold and you get a single-use code"""
        redemption, created = redemptions.reserve(current_resident(), body["offer_id"], headers["idempotency_key"])
        return _redemptions([redemption])[0], 201 if created else 200


@blp.route("/me/redemptions/<int:redemption_id>")
class MyRedemption(MethodView):
    @requires(RESIDENT)
    @blp.response(200, RedemptionSchema)
    def get(self, redemption_id: int):
        """One of your redemptions"""
        return _redemptions([redemptions.get_own(current_resident(), redemption_id)])[0]


@blp.route("/me/redemptions/<int:redemption_id>/cancel")
class CancelRedemption(MethodView):
    @requires(RESIDENT)
    @blp.response(200, RedemptionSchema)
    def post(self, redemption_id: int):
        """Cancel a reservation: the points go back to the lots they came from"""
        return _redemptions([redemptions.cancel(current_resident(), redemption_id)])[0]


@blp.route("/merchant/redemptions/confirm")
class ConfirmRedemption(MethodView):
    @requires(SHOP)
    @blp.arguments(ConfirmSchema)
    @blp.response(200, RedemptionSchema)
    def post(self, body: dict[str, str]):
        """Confirm a code at the till: the redemption is fulfilled and its points are settled to you"""
        return _redemptions([redemptions.confirm(current_user(), body["code"])], show_code=False)[0]


@blp.route("/merchant/redemptions")
class MerchantRedemptions(MethodView):
    @requires(SHOP)
    @blp.arguments(MerchantRedemptionArgs, location="query")
    @blp.response(200, RedemptionPageSchema)
    def get(self, args: dict[str, Any]):
        """Redemptions at your merchant, newest first (codes masked)"""
        items, next_key = redemptions.merchant_page(current_user(), status=args["status"],
                                                    before=decode_cursor(args["cursor"]), limit=args["limit"])
        return page(_redemptions(items, show_code=False), next_key)
