"""Residents: sign up, profile, password, personal-data export and account deletion."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint
from backend.api.security import current_resident, current_user, requires
from backend.extensions import limiter
from backend.models import Role
from backend.services import privacy, residents, users

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
    decorators = [limiter.limit("30 per hour")]

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


@blp.route("/me/password")
class Password(MethodView):
    @requires(*(r.value for r in Role))
    @blp.arguments(PasswordChangeSchema)
    @blp.response(204)
    def post(self, body: dict[str, str]):
        """Change your password (any role); every session ends, log in again"""
        users.change_password(current_user(), body["current_password"], body["new_password"])
