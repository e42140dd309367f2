"""Admin: merchants and their till staff."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint, CursorArgs, ReasonSchema, decode_cursor, page, page_schema
from backend.api.security import current_user, requires
from backend.models import Role
from backend.services import merchants

blp = Blueprint("admin_merchants", __name__, url_prefix="/api/v1/admin/merchants",
                description="Admin: merchants that accept points")

STAFF = (Role.OPERATOR.value, Role.ADMIN.value)
# Auditors read what operators manage (their console shows it) but change none of it.
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)


class MerchantCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    region = fields.String(required=True, validate=REGION_CODE)


class StaffCreateSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=3, max=64))
    password = fields.String(required=True, validate=validate.Length(min=8, max=128), load_only=True)


class MerchantSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    region = fields.String(attribute="region_code")
    status = fields.String()
    created_at = fields.DateTime()


class StaffSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    is_active = fields.Boolean()
    created_at = fields.DateTime()


MerchantPage = page_schema(MerchantSchema, "MerchantPage")


@blp.route("")
class Merchants(MethodView):
    @requires(*READERS)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, MerchantPage)
    def get(self, args: dict[str, object]):
        """Merchants in your region"""
        rows, next_key = merchants.browse(current_user(), before=decode_cursor(args.get("cursor")),
                                          limit=args["limit"])
        return page(rows, next_key)

    @requires(*STAFF)
    @blp.arguments(MerchantCreateSchema)
    @blp.response(201, MerchantSchema)
    def post(self, body: dict[str, str]):
        """Register a merchant"""
        return merchants.create(body["name"], body["region"], actor=current_user())


@blp.route("/<int:merchant_id>")
class MerchantDetail(MethodView):
    @requires(*READERS)
    @blp.response(200, MerchantSchema)
    def get(self, merchant_id: int):
        """One merchant"""
        return merchants.get_scoped(merchant_id, current_user())


@blp.route("/<int:merchant_id>/staff")
class Staff(MethodView):
    @requires(*READERS)
    @blp.response(200, StaffSchema(many=True))
    def get(self, merchant_id: int):
        """The merchant's till logins"""
        return merchants.staff_of(merchants.get_scoped(merchant_id, current_user()).id)

    @requires(*STAFF)
    @blp.arguments(StaffCreateSchema)
    @blp.response(201, StaffSchema)
    def post(self, body: dict[str, str], merchant_id: int):
        """Create a till login for the merchant"""
        return merchants.add_staff(merchant_id, body["username"], body["password"], actor=current_user())


@blp.route("/<int:merchant_id>/disable")
class Disable(MethodView):
    @requires(*STAFF)
    @blp.arguments(ReasonSchema)
    @blp.response(200, MerchantSchema)
    def post(self, body: dict[str, str | None], merchant_id: int):
        """Disable the merchant and its till logins"""
        return merchants.set_status(merchant_id, "disabled", actor=current_user(), reason=body["reason"])


@blp.route("/<int:merchant_id>/enable")
class Enable(MethodView):
    @requires(*STAFF)
    @blp.arguments(ReasonSchema)
    @blp.response(200, MerchantSchema)
    def post(self, body: dict[str, str | None], merchant_id: int):
        """Enable the merchant and its till logins again"""
        return merchants.set_status(merchant_id, "active", actor=current_user(), reason=body["reason"])
