"""Leaderboards (per online community and per region) and a resident's badges.

Who may look: a community's board, its members and the operators, auditors and admins whose scope
holds the community's region; a region's board, any resident and the staff whose scope holds it.
Boards show display names, never ids or usernames of other people.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import Blueprint
from backend.api.security import current_principal, current_resident_id, current_user, requires
from backend.models import Role, User
from backend.services import badges, leaderboards
from backend.validators import in_platform_years

blp = Blueprint("leaderboards", __name__, url_prefix="/api/v1",
                description="Leaderboards by certified grams, and badges for milestones")

RESIDENT = Role.RESIDENT.value
VIEWERS = (RESIDENT, Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)


@blp.record_once
def _connect(_state: Any) -> None:
    # Boards learn of new and reversed reductions through a signal; connected with the API, not at import.
    leaderboards.connect_signals()


class BoardArgs(Schema):
    period = fields.String(load_default="week", validate=validate.OneOf(leaderboards.PERIODS),
                           metadata={"description": "week (Monday to Sunday) or calendar month, China time"})
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100),
                           metadata={"description": "how many of the top to list"})
    date = fields.Date(load_default=None, validate=in_platform_years, metadata={
        "description": "a China date in the period to show (default: today); not in the future"})


class EntrySchema(Schema):
    rank = fields.Integer(metadata={"description": "equal grams share a rank"})
    display_name = fields.String()
    grams = fields.Integer(metadata={"description": "certified grams CO2e in the period"})
    kg = fields.Decimal(as_string=True)
    is_me = fields.Boolean()


class MineSchema(Schema):
    rank = fields.Integer(allow_none=True, metadata={"description": "null until you have grams on this board"})
    grams = fields.Integer()
    kg = fields.Decimal(as_string=True)


class BoardSchema(Schema):
    scope = fields.String(metadata={"description": "community or region"})
    name = fields.String()
    region = fields.String(metadata={"description": "the region, or the community's region"})
    community_id = fields.Integer(allow_none=True)
    period = fields.String()
    start = fields.Date(metadata={"description": "first China day of the period"})
    end = fields.Date(metadata={"description": "last China day of the period"})
    starts_at = fields.DateTime()
    ends_at = fields.DateTime(metadata={"description": "exclusive"})
    timezone = fields.String()
    participants = fields.Integer(metadata={"description": "residents with grams on the board"})
    entries = fields.List(fields.Nested(EntrySchema))
    me = fields.Nested(MineSchema, allow_none=True, metadata={"description": "yours, when you are a resident"})
    source = fields.String(metadata={"description": "cache, or database when the cache could not be trusted"})
    as_of = fields.DateTime()


class ProgressSchema(Schema):
    current = fields.Integer()
    target = fields.Integer()
    unit = fields.String()


class BadgeSchema(Schema):
    code = fields.String()
    name = fields.String()
    description = fields.String()
    earned = fields.Boolean()
    earned_at = fields.DateTime(allow_none=True, metadata={"description": "when the activity that earned it happened"})
    earned_on = fields.Date(allow_none=True, metadata={"description": "that moment's China day"})
    times = fields.Integer(metadata={"description": "how many times earned (months, for the monthly badge)"})
    progress = fields.Nested(ProgressSchema)


class BadgeListSchema(Schema):
    badges = fields.List(fields.Nested(BadgeSchema))


def _viewer() -> int | User:
    """A resident by id (no row to load: boards are read on every app open), staff by their user."""
    resident_id = current_principal().resident_id
    return resident_id if resident_id is not None else current_user()


@blp.route("/communities/<int:community_id>/leaderboard")
class CommunityBoard(MethodView):
    @requires(*VIEWERS, read_only=True)
    @blp.arguments(BoardArgs, location="query")
    @blp.response(200, BoardSchema)
    def get(self, args: dict[str, Any], community_id: int):
        """A community's members by certified grams, this week or month"""
        return leaderboards.community_leaderboard(_viewer(), community_id, period=args["period"],
                                                  day=args["date"], limit=args["limit"])


@blp.route("/regions/<string:code>/leaderboard")
class RegionBoard(MethodView):
    @requires(*VIEWERS, read_only=True)
    @blp.arguments(BoardArgs, location="query")
    @blp.response(200, BoardSchema)
    def get(self, args: dict[str, Any], code: str):
        """Residents by certified grams in a region and the regions below it, this week or month"""
        return leaderboards.region_leaderboard(_viewer(), code, period=args["period"], day=args["date"],
                                               limit=args["limit"])


@blp.route("/me/badges")
class MyBadges(MethodView):
    @requires(RESIDENT, read_only=True)
    @blp.response(200, BadgeListSchema)
    def get(self):
        """Your badges: first green trip, 10 kg, 100 kg, a month of green commuting"""
        return {"badges": badges.badges_of(current_resident_id())}
