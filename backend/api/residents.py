"""Residents: sign up, profile, password, personal-data export and account deletion."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.security import current_resident, current_resident_id, current_user, requires
from backend.config import current_settings
from backend.extensions import limiter
from backend.models import Role
from backend.services import privacy, residents, users, wallets

blp = Blueprint("residents", __name__, url_prefix="/api/v1", description="Residents and their own data")

RESIDENT = Role.RESIDENT.value


class SignUpSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=3, max=64))
    password = fields.String(required=True, validate=validate.Length(min=8, max=128), load_only=True)
    display_name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    region = fields.String(required=True, validate=REGION_CODE)


class HouseholdRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    is_owner = fields.Boolean()


class CommunityRefSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    region = fields.String()


class ProfileSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    display_name = fields.String()
    region = fields.String()
    created_at = fields.DateTime()
    household = fields.Nested(HouseholdRefSchema, allow_none=True)
    communities = fields.List(fields.Nested(CommunityRefSchema))


class ProfileUpdateSchema(Schema):
    display_name = fields.String(validate=validate.Length(min=1, max=64))
    region = fields.String(validate=REGION_CODE)


class PasswordChangeSchema(Schema):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=128), load_only=True)
    new_password = fields.String(required=True, validate=validate.Length(min=8, max=128), load_only=True)


class DeleteAccountSchema(Schema):
    password = fields.String(required=True, validate=validate.Length(min=1, max=128), load_only=True)


@blp.route("/residents")
class SignUp(MethodView):
    decorators = [limiter.limit(lambda: current_settings().signup_rate_limit)]

    @blp.arguments(SignUpSchema)
    @blp.response(201, ProfileSchema)
    def post(self, body: dict[str, str]):
        """Sign up as a resident"""
        resident = residents.sign_up(body["username"], body["password"], body["display_name"], body["region"])
        return residents.profile(resident)


@blp.route("/me")
class Me(MethodView):
    @requires(RESIDENT)
    @blp.response(200, ProfileSchema)
    def get(self):
        """Your profile, household and communities"""
        return residents.profile(current_resident())

    @requires(RESIDENT)
    @blp.arguments(ProfileUpdateSchema)
    @blp.response(200, ProfileSchema)
    def patch(self, body: dict[str, str]):
        """Change your display name or home region"""
        resident = residents.update_profile(
            current_resident(), display_name=body.get("display_name"), region=body.get("region")
        )
        return residents.profile(resident)

    @requires(RESIDENT)
    @blp.arguments(DeleteAccountSchema)
    @blp.response(204)
    def delete(self, body: dict[str, str]):
        """Delete your account (PIPL): you are anonymised; points history stays, unlinked from you"""
        privacy.anonymise(current_resident(), body["password"])


@blp.route("/me/export")
class Export(MethodView):
    @requires(RESIDENT)
    @blp.response(200)
    def get(self):
        """Everything the platform holds about you, as JSON"""
        return privacy.export(current_resident())


class BalanceSchema(Schema):
    points = fields.Integer()
    reduction_g = fields.Integer(metadata={"description": "lifetime certified grams CO2e"})
    queued_points = fields.Integer(metadata={"description": "earned, waiting for the issuance budget"})


class PostingSchema(Schema):
    id = fields.Integer()
    amount = fields.Integer()
    kind = fields.String()
    reason = fields.String()
    posted_at = fields.DateTime()
    rules = fields.String()
    rules_sha256 = fields.String()
    reduction_id = fields.Integer(allow_none=True)


class ReductionSchema(Schema):
    id = fields.Integer()
    activity_id = fields.Integer()
    activity_type = fields.String()
    label = fields.String()
    occurred_at = fields.DateTime()
    region = fields.String()
    grams = fields.Integer()
    status = fields.String()
    methodology = fields.String()
    factors_sha256 = fields.String()
    trace = fields.Dict()
    points = fields.Integer(allow_none=True)
    capped_grams = fields.Integer(allow_none=True)
    campaign = fields.String(allow_none=True)
    rules = fields.String(allow_none=True)
    credited_to = fields.String()


class ExpiringSchema(Schema):
    within_30_days = fields.Integer()
    within_90_days = fields.Integer()
    next = fields.List(fields.Dict())


PostingPage = page_schema(PostingSchema, "PostingPage")
ReductionPage = page_schema(ReductionSchema, "ReductionPage")


@blp.route("/me/balance")
class Balance(MethodView):
    @requires(RESIDENT, read_only=True)
    @blp.response(200, BalanceSchema)
    def get(self):
        """Your points and lifetime certified reductions"""
        return wallets.balance("resident_wallet", current_resident_id())


@blp.route("/me/ledger")
class Ledger(MethodView):
    @requires(RESIDENT, read_only=True)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, PostingPage)
    def get(self, args: dict[str, object]):
        """Your points movements, newest first, each with its reason in words"""
        rows, next_key = wallets.ledger_page("resident_wallet", current_resident_id(),
                                             before=decode_cursor(args.get("cursor")), limit=args["limit"])
        return page(rows, next_key)


@blp.route("/me/reductions")
class Reductions(MethodView):
    @requires(RESIDENT, read_only=True)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, ReductionPage)
    def get(self, args: dict[str, object]):
        """Your certified reductions with methodology id@version, trace, points and what was capped"""
        rows, next_key = wallets.reductions_page(current_resident_id(), before=decode_cursor(args.get("cursor")),
                                                 limit=args["limit"])
        return page(rows, next_key)


@blp.route("/me/expiring")
class Expiring(MethodView):
    @requires(RESIDENT, read_only=True)
    @blp.response(200, ExpiringSchema)
    def get(self):
        """Points that expire in the next 30 and 90 days"""
        return wallets.expiring(wallets.wallet_id("resident_wallet", current_resident_id()))


@blp.route("/me/password")
class Password(MethodView):
    @requires(*(r.value for r in Role))
    @blp.arguments(PasswordChangeSchema)
    @blp.response(204)
    def post(self, body: dict[str, str]):
        """Change your password (any role); every session ends, log in again"""
        users.change_password(current_user(), body["current_password"], body["new_password"])
