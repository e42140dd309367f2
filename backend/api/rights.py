"""Opened rights (权益开放) and green levels."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import (
    ID_RANGE,
    REGION_CODE,
    Blueprint,
    CursorArgs,
    IdempotencyHeaders,
    ReasonSchema,
    decode_cursor,
    page,
    page_schema,
)
from backend.api.security import current_partner, current_resident, current_user, partner_signed, requires
from backend.models import Role
from backend.models.spending import RIGHT_KINDS
from backend.services import levels, rights
from backend.validators import in_platform_years

blp = Blueprint("rights", __name__, url_prefix="/api/v1", description="Opened rights (权益开放) and green levels")

RESIDENT = Role.RESIDENT.value
MANAGERS = (Role.OPERATOR.value, Role.ADMIN.value)
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)


class RightCreateSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=120))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    kind = fields.String(required=True, validate=validate.OneOf(RIGHT_KINDS))
    region = fields.String(required=True, validate=REGION_CODE)
    partner_id = fields.Integer(required=True, strict=True, validate=ID_RANGE,
                                metadata={"description": "the partner that honours the right"})
    points_price = fields.Integer(load_default=None, allow_none=True, strict=True,
                                  validate=validate.Range(min=1, max=10**9))
    min_level = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=32),
                              metadata={"description": "a level of the rules in force in the region: reaching "
                                                       "it unlocks the right without points"})
    stock = fields.Integer(load_default=None, allow_none=True, strict=True,
                           validate=validate.Range(min=1, max=10**9), metadata={"description": "absent: unlimited"})
    per_user_limit = fields.Integer(load_default=1, strict=True, validate=validate.Range(min=1, max=1000))
    valid_until = fields.AwareDateTime(required=True, validate=in_platform_years,
                                       metadata={"description": "last instant it can be claimed"})
    code_valid_days = fields.Integer(load_default=30, strict=True, validate=validate.Range(min=1, max=3650))


class RightSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    description = fields.String()
    kind = fields.String()
    region = fields.String()
    partner_id = fields.Integer()
    points_price = fields.Integer(allow_none=True)
    min_level = fields.String(allow_none=True)
    stock_total = fields.Integer(allow_none=True, metadata={"description": "null: unlimited"})
    stock_left = fields.Integer(allow_none=True)
    per_user_limit = fields.Integer()
    code_valid_days = fields.Integer()
    valid_until = fields.DateTime()
    status = fields.String()
    created_at = fields.DateTime()


class AvailableRightSchema(RightSchema):
    claimed = fields.Integer(metadata={"description": "how many times you claimed it"})
    can_claim = fields.Boolean()
    claim_via = fields.String(allow_none=True, metadata={"description": "level | points, when you can claim"})
    reason = fields.String(allow_none=True, metadata={
        "description": "why not: out_of_stock | limit_reached | level_not_reached | insufficient_points"})


class GrantSchema(Schema):
    id = fields.Integer()
    code = fields.String(metadata={"description": "show it to the partner; 10 characters, Crockford base32"})
    right_id = fields.Integer()
    title = fields.String()
    kind = fields.String()
    via = fields.String(metadata={"description": "level | points"})
    points = fields.Integer()
    issued_at = fields.DateTime()
    expires_at = fields.DateTime()
    consumed_at = fields.DateTime(allow_none=True)
    status = fields.String(metadata={"description": "issued | consumed | expired"})


class LevelStepSchema(Schema):
    name = fields.String()
    min_grams = fields.Integer()


class LevelSchema(Schema):
    level = fields.String(allow_none=True, metadata={"description": "null: your region has no levels"})
    lifetime_grams = fields.Integer()
    next_level = fields.String(allow_none=True)
    grams_to_next = fields.Integer(allow_none=True)
    levels = fields.List(fields.Nested(LevelStepSchema))


class CodeSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=32))


class PartnerGrantSchema(Schema):
    code = fields.String()
    status = fields.String(metadata={"description": "issued | consumed | expired"})
    title = fields.String()
    kind = fields.String()
    right_id = fields.Integer()
    resident_display_name = fields.String(allow_none=True)
    expires_at = fields.DateTime()
    consumed_at = fields.DateTime(allow_none=True)


RightPage = page_schema(RightSchema, "RightPage")
AvailableRightPage = page_schema(AvailableRightSchema, "AvailableRightPage")
GrantPage = page_schema(GrantSchema, "GrantPage")


# --- operators -------------------------------------------------------------------------------------


@blp.route("/admin/rights")
class AdminRights(MethodView):
    @requires(*READERS)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, RightPage)
    def get(self, args: dict[str, Any]):
        """Opened rights in your region"""
        rows, next_key = rights.browse(current_user(), before=decode_cursor(args.get("cursor")),
                                       limit=args["limit"])
        return page([rights.view(r) for r in rows], next_key)

    @requires(*MANAGERS)
    @blp.arguments(RightCreateSchema)
    @blp.response(201, RightSchema)
    def post(self, body: dict[str, Any]):
        """Open a right: claimed for points, unlocked by a green level, or either"""
        return rights.view(rights.create(body, actor=current_user()))


@blp.route("/admin/rights/<int:right_id>/withdraw")
class AdminWithdraw(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(ReasonSchema)
    @blp.response(200, RightSchema)
    def post(self, body: dict[str, str | None], right_id: int):
        """Stop new claims (codes already granted stay valid until they expire)"""
        return rights.view(rights.withdraw(right_id, actor=current_user(), reason=body["reason"]))


# --- residents -------------------------------------------------------------------------------------


@blp.route("/rights")
class Rights(MethodView):
    @requires(RESIDENT)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, AvailableRightPage)
    def get(self, args: dict[str, Any]):
        """Rights open to you (your region and those above it), whether you can claim each and why not"""
        items, next_key = rights.available(current_resident(), before=decode_cursor(args.get("cursor")),
                                           limit=args["limit"])
        return page(items, next_key)


@blp.route("/me/level")
class MyLevel(MethodView):
    @requires(RESIDENT)
    @blp.response(200, LevelSchema)
    def get(self):
        """Your green level by lifetime certified grams, and how far the next one is"""
        return levels.level_of(current_resident())


@blp.route("/me/rights/<int:right_id>/claim")
class Claim(MethodView):
    @requires(RESIDENT)
    @blp.arguments(IdempotencyHeaders, location="headers")
    @blp.response(201, GrantSchema)
    @blp.alt_response(200, schema=GrantSchema, description="a retry with the same Idempotency-Key: the same grant")
    def post(self, headers: dict[str, str | None], right_id: int):
        """Claim a right, by level if you reached it, else for points (retry with the same Idempotency-Key)"""
        grant, created = rights.claim(current_resident(), right_id, key=headers["idempotency_key"])
        return rights.grant_view(grant, rights.get(grant.right_id)), 201 if created else 200


@blp.route("/me/rights")
class MyRights(MethodView):
    @requires(RESIDENT)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, GrantPage)
    def get(self, args: dict[str, Any]):
        """Rights you claimed, newest first"""
        items, next_key = rights.my_grants(current_resident(), before=decode_cursor(args.get("cursor")),
                                           limit=args["limit"])
        return page(items, next_key)


# --- partners (signed) -------------------------------------------------------------------------------


@blp.route("/partner/rights/check")
class PartnerCheck(MethodView):
    @partner_signed
    @blp.arguments(CodeSchema)
    @blp.response(200, PartnerGrantSchema)
    def post(self, body: dict[str, str]):
        """Look up a code of a right you honour, without using it"""
        return rights.check(current_partner(), body["code"])


@blp.route("/partner/rights/consume")
class PartnerConsume(MethodView):
    @partner_signed
    @blp.arguments(CodeSchema)
    @blp.response(200, PartnerGrantSchema)
    def post(self, body: dict[str, str]):
        """Honour a code once: 409 already_consumed or expired otherwise"""
        return rights.consume(current_partner(), body["code"])
