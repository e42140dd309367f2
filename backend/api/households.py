"""Households: a shared wallet for people who live together."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import ID_RANGE, Blueprint
from backend.api.security import current_resident, requires
from backend.models import Household, Role
from backend.services import households, wallets

blp = Blueprint("households", __name__, url_prefix="/api/v1/households", description="Households")

RESIDENT = Role.RESIDENT.value


class HouseholdCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))


class JoinSchema(Schema):
    invite_code = fields.String(required=True, validate=validate.Length(min=4, max=16))


class TransferSchema(Schema):
    resident_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)


class MemberSchema(Schema):
    resident_id = fields.Integer()
    display_name = fields.String()
    is_owner = fields.Boolean()
    joined_at = fields.DateTime()


class HouseholdSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    region = fields.String()
    status = fields.String()
    owner_resident_id = fields.Integer(allow_none=True)
    invite_code = fields.String(allow_none=True, metadata={"description": "shown to members only"})
    created_at = fields.DateTime()
    members = fields.List(fields.Nested(MemberSchema))
    balance = fields.Dict(metadata={"description": "the household wallet: {points, reduction_g, queued_points}"})


def _view(household: Household) -> dict[str, object]:
    return {
        "id": household.id,
        "name": household.name,
        "region": household.region_code,
        "status": household.status,
        "owner_resident_id": household.owner_resident_id,
        "invite_code": household.invite_code,
        "created_at": household.created_at,
        "members": [
            {"resident_id": r.id, "display_name": r.display_name,
             "is_owner": r.id == household.owner_resident_id, "joined_at": m.joined_at}
            for r, m in households.members(household.id)
        ],
        "balance": wallets.balance("household_wallet", household.id),
    }


@blp.route("")
class Households(MethodView):
    @requires(RESIDENT)
    @blp.arguments(HouseholdCreateSchema)
    @blp.response(201, HouseholdSchema)
    def post(self, body: dict[str, str]):
        """Create a household; you become its owner and get an invite code to share"""
        return _view(households.create(current_resident(), body["name"]))


@blp.route("/join")
class Join(MethodView):
    @requires(RESIDENT)
    @blp.arguments(JoinSchema)
    @blp.response(200, HouseholdSchema)
    def post(self, body: dict[str, str]):
        """Join a household with its invite code"""
        return _view(households.join(current_resident(), body["invite_code"]))


@blp.route("/<int:household_id>")
class HouseholdDetail(MethodView):
    @requires(RESIDENT)
    @blp.response(200, HouseholdSchema)
    def get(self, household_id: int):
        """A household you belong to, with its members"""
        return _view(households.get_for_member(current_resident(), household_id))


@blp.route("/<int:household_id>/invite-code")
class InviteCode(MethodView):
    @requires(RESIDENT)
    @blp.response(200, HouseholdSchema)
    def post(self, household_id: int):
        """Owner: replace the invite code (the old one stops working)"""
        return _view(households.rotate_invite_code(current_resident(), household_id))


@blp.route("/<int:household_id>/transfer")
class Transfer(MethodView):
    @requires(RESIDENT)
    @blp.arguments(TransferSchema)
    @blp.response(200, HouseholdSchema)
    def post(self, body: dict[str, int], household_id: int):
        """Owner: hand ownership to another member"""
        return _view(households.transfer(current_resident(), household_id, body["resident_id"]))


@blp.route("/<int:household_id>/leave")
class Leave(MethodView):
    @requires(RESIDENT)
    @blp.response(200, HouseholdSchema)
    def post(self, household_id: int):
        """Leave the household (an owner with other members transfers first)"""
        return _view(households.leave(current_resident(), household_id))


@blp.route("/<int:household_id>/members/<int:resident_id>")
class Member(MethodView):
    @requires(RESIDENT)
    @blp.response(200, HouseholdSchema)
    def delete(self, household_id: int, resident_id: int):
        """Owner: remove a member"""
        return _view(households.remove_member(current_resident(), household_id, resident_id))
