"""Online communities (网络虚拟社区)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.security import current_resident, requires
from backend.models import Community, Role
from backend.services import communities, residents

blp = Blueprint("communities", __name__, url_prefix="/api/v1/communities", description="Online communities")

RESIDENT = Role.RESIDENT.value


class CommunityCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    region = fields.String(required=True, validate=REGION_CODE)
    description = fields.String(load_default="", validate=validate.Length(max=500))


class BrowseArgs(CursorArgs):
    region = fields.String(validate=REGION_CODE)
    q = fields.String(validate=validate.Length(min=1, max=64))


class CommunitySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String()
    region = fields.String()
    member_count = fields.Integer()
    is_member = fields.Boolean()
    created_at = fields.DateTime()


CommunityPage = page_schema(CommunitySchema, "CommunityPage")


def _view(community: Community, count: int, is_member: bool) -> dict[str, object]:
    return {
        "id": community.id, "name": community.name, "description": community.description,
        "region": community.region_code, "member_count": count, "is_member": is_member,
        "created_at": community.created_at,
    }


def _one(community: Community) -> dict[str, object]:
    resident = current_resident()
    return _view(community, communities.member_count(community.id),
                 communities.is_member(resident.id, community.id))


@blp.route("")
class Communities(MethodView):
    @requires(RESIDENT)
    @blp.arguments(BrowseArgs, location="query")
    @blp.response(200, CommunityPage)
    def get(self, args: dict[str, object]):
        """Browse communities, by region or name"""
        rows, next_key = communities.browse(
            region=args.get("region"), q=args.get("q"), before=decode_cursor(args.get("cursor")),
            limit=args["limit"],
        )
        counts = communities.member_counts([c.id for c in rows])
        mine = {c.id for c in residents.communities_of(current_resident().id)}
        return page([_view(c, counts.get(c.id, 0), c.id in mine) for c in rows], next_key)

    @requires(RESIDENT)
    @blp.arguments(CommunityCreateSchema)
    @blp.response(201, CommunitySchema)
    def post(self, body: dict[str, str]):
        """Create a community; you are its first member"""
        return _one(communities.create(current_resident(), body["name"], body["region"], body["description"]))


@blp.route("/<int:community_id>")
class CommunityDetail(MethodView):
    @requires(RESIDENT)
    @blp.response(200, CommunitySchema)
    def get(self, community_id: int):
        """One community"""
        return _one(communities.get(community_id))


@blp.route("/<int:community_id>/join")
class Join(MethodView):
    @requires(RESIDENT)
    @blp.response(200, CommunitySchema)
    def post(self, community_id: int):
        """Join a community"""
        return _one(communities.join(current_resident(), community_id))


@blp.route("/<int:community_id>/leave")
class Leave(MethodView):
    @requires(RESIDENT)
    @blp.response(204)
    def post(self, community_id: int):
        """Leave a community"""
        communities.leave(current_resident(), community_id)
