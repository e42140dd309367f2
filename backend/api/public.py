"""Public, unauthenticated endpoints: regions and liveness."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from backend.api.common import REGION_CODE, Blueprint
from backend.services import methodologies, regions, rules

blp = Blueprint("public", __name__, url_prefix="/api/v1", description="Public information")
health = Blueprint("health", __name__, description="Liveness")


class RegionSchema(Schema):
    code = fields.String()
    name = fields.String()
    name_en = fields.String()
    level = fields.String()
    parent = fields.String(attribute="parent_code", allow_none=True)


@blp.route("/regions")
class Regions(MethodView):
    @blp.response(200, RegionSchema(many=True))
    def get(self):
        """Regions the platform serves (GB/T 2260 codes)"""
        return regions.list_regions()


class RegionArgs(Schema):
    region = fields.String(validate=REGION_CODE, metadata={"description": "one region (default: all)"})


@blp.route("/public/methodologies")
class PublicMethodologies(MethodView):
    @blp.arguments(RegionArgs, location="query")
    @blp.response(200)
    def get(self, args: dict[str, str]):
        """The methodology versions in force per region: formula, every parameter with unit and source"""
        return {"regions": methodologies.public_view(args.get("region"))}


@blp.route("/public/rules")
class PublicRules(MethodView):
    @blp.arguments(RegionArgs, location="query")
    @blp.response(200)
    def get(self, args: dict[str, str]):
        """The exchange rules in force per region: rates, caps, campaigns, expiry, budget (published, fair, open)"""
        return {"regions": rules.public_view(args.get("region"))}


@health.route("/healthz")
class Healthz(MethodView):
    @health.response(200)
    def get(self):
        """The process is alive"""
        return {"status": "ok"}
