"""Admin: methodologies and their governed versions (draft, submit, approve, reject, retire, simulate)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from backend.api.admin.versions import READERS, version_routes
from backend.api.common import Blueprint
from backend.api.security import requires
from backend.services import methodologies

blp = Blueprint("admin_methodologies", __name__, url_prefix="/api/v1/admin/methodologies",
                description="Admin: methodologies and their governed parameter versions")


class MethodologySchema(Schema):
    id = fields.String()
    version = fields.Integer(metadata={"description": "formula (code) version"})
    title = fields.String()
    title_zh = fields.String()
    types = fields.List(fields.String())
    package = fields.String()
    entry_point = fields.String()
    engagement_only = fields.Boolean()
    self_reportable = fields.List(fields.String())


@blp.route("")
class Methodologies(MethodView):
    @requires(*READERS)
    @blp.response(200, MethodologySchema(many=True))
    def get(self):
        """Installed methodologies (from their entry points, allowlisted)"""
        return methodologies.catalogue()


version_routes(blp, kind=methodologies.KIND, name="Methodology", payload_field="parameters",
               subject_label="methodology", base="/<string:methodology_id>", simulate=methodologies.simulate)
