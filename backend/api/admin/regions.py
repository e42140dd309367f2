"""Admin: add regions below the seeded ones (e.g. a new district)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint
from backend.api.public import RegionSchema
from backend.api.security import current_user, requires
from backend.models import Role
from backend.services import regions

blp = Blueprint("admin_regions", __name__, url_prefix="/api/v1/admin/regions", description="Admin: regions")


class RegionCreateSchema(Schema):
    code = fields.String(required=True, validate=REGION_CODE)
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name_en = fields.String(required=True, validate=validate.Length(min=1, max=64))
    parent = fields.String(required=True, allow_none=True, validate=REGION_CODE)


@blp.route("")
class Regions(MethodView):
    @requires(Role.ADMIN.value)
    @blp.arguments(RegionCreateSchema)
    @blp.response(201, RegionSchema)
    def post(self, body: dict[str, str]):
        """Add a region by its GB/T 2260 code under an existing parent"""
        return regions.create_region(body["code"], body["name"], body["name_en"], body["parent"],
                                     actor=current_user())
