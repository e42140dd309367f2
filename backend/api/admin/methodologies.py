"""Admin: methodologies and their governed versions (draft, submit, approve, reject, retire, simulate)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.security import current_user, requires
from backend.models import Role
from backend.models.governance import VERSION_STATUSES
from backend.services import governance, methodologies

blp = Blueprint("admin_methodologies", __name__, url_prefix="/api/v1/admin/methodologies",
                description="Admin: methodologies and their governed parameter versions")

KIND = methodologies.KIND
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)
AUTHORS = (Role.OPERATOR.value, Role.AUDITOR.value)
AUDITORS = (Role.AUDITOR.value,)
VERSION_PATH = "/<string:methodology_id>/versions/<int:version>"


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


class DraftSchema(Schema):
    region = fields.String(load_default=None, allow_none=True, validate=REGION_CODE,
                           metadata={"description": "GB/T 2260 code; null for the national default"})
    parameters = fields.Dict(required=True, metadata={
        "description": "every parameter as {value, unit, source, vintage, region}"})
    effective_from = fields.AwareDateTime(load_default=None, allow_none=True, metadata={
        "description": "future instant; omitted: takes effect when approved"})
    note = fields.String(load_default="", validate=validate.Length(max=2000))


class DraftUpdateSchema(Schema):
    parameters = fields.Dict()
    effective_from = fields.AwareDateTime(allow_none=True)
    note = fields.String(validate=validate.Length(max=2000))


class RequiredReasonSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class SimulateSchema(Schema):
    days = fields.Integer(load_default=30, strict=True, validate=validate.Range(min=1, max=366))


class VersionListArgs(CursorArgs):
    region = fields.String(validate=REGION_CODE)
    status = fields.String(validate=validate.OneOf(VERSION_STATUSES))


class DiffArgs(Schema):
    against = fields.Integer(required=True, validate=validate.Range(min=1))


class VersionSchema(Schema):
    subject = fields.String(data_key="methodology")
    version = fields.Integer()
    ref = fields.String()
    region = fields.String(allow_none=True)
    status = fields.String()
    effective_from = fields.DateTime(allow_none=True)
    payload = fields.Dict(data_key="parameters")
    payload_sha256 = fields.String(data_key="parameters_sha256")
    formula_version = fields.Integer(allow_none=True)
    note = fields.String()
    author = fields.String()
    created_at = fields.DateTime()
    submitted_at = fields.DateTime(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    decided_by = fields.String(allow_none=True)
    decision_reason = fields.String(allow_none=True)
    retired_at = fields.DateTime(allow_none=True)
    retired_by = fields.String(allow_none=True)


VersionPage = page_schema(VersionSchema, "MethodologyVersionPage")


@blp.route("")
class Methodologies(MethodView):
    @requires(*READERS)
    @blp.response(200, MethodologySchema(many=True))
    def get(self):
        """Installed methodologies (from their entry points, allowlisted)"""
        return methodologies.catalogue()


@blp.route("/<string:methodology_id>/versions")
class Versions(MethodView):
    @requires(*READERS)
    @blp.arguments(VersionListArgs, location="query")
    @blp.response(200, VersionPage)
    def get(self, args: dict[str, Any], methodology_id: str):
        """Versions of a methodology, newest first"""
        rows, next_key = governance.browse(KIND, methodology_id, region=args.get("region"),
                                           status=args.get("status"), before=decode_cursor(args.get("cursor")),
                                           limit=args["limit"])
        return page([governance.view(v) for v in rows], next_key)

    @requires(*AUTHORS)
    @blp.arguments(DraftSchema)
    @blp.response(201, VersionSchema)
    def post(self, body: dict[str, Any], methodology_id: str):
        """Draft a new parameter version for a region (or the national default)"""
        version = governance.create_draft(KIND, methodology_id, region=body["region"], payload=body["parameters"],
                                          effective_from=body["effective_from"], note=body["note"],
                                          actor=current_user())
        return governance.view(version)


@blp.route(VERSION_PATH)
class VersionDetail(MethodView):
    @requires(*READERS)
    @blp.response(200, VersionSchema)
    def get(self, methodology_id: str, version: int):
        """One version"""
        return governance.view(governance.get(KIND, methodology_id, version))

    @requires(*AUTHORS)
    @blp.arguments(DraftUpdateSchema)
    @blp.response(200, VersionSchema)
    def patch(self, body: dict[str, Any], methodology_id: str, version: int):
        """Author: edit a draft (a submitted version can no longer be edited)"""
        updated = governance.update_draft(
            KIND, methodology_id, version, actor=current_user(), payload=body.get("parameters"),
            effective_from=body.get("effective_from"),
            clear_effective_from="effective_from" in body and body["effective_from"] is None,
            note=body.get("note"),
        )
        return governance.view(updated)


@blp.route(f"{VERSION_PATH}/diff")
class Diff(MethodView):
    @requires(*READERS)
    @blp.arguments(DiffArgs, location="query")
    @blp.response(200)
    def get(self, args: dict[str, int], methodology_id: str, version: int):
        """What changed from version `against` to this one, parameter by parameter"""
        return governance.diff(KIND, methodology_id, args["against"], version)


@blp.route(f"{VERSION_PATH}/submit")
class Submit(MethodView):
    @requires(*AUTHORS)
    @blp.response(200, VersionSchema)
    def post(self, methodology_id: str, version: int):
        """Author: submit a draft for approval (it can no longer be edited)"""
        return governance.view(governance.submit(KIND, methodology_id, version, actor=current_user()))


@blp.route(f"{VERSION_PATH}/approve")
class Approve(MethodView):
    @requires(*AUDITORS)
    @blp.response(200, VersionSchema)
    def post(self, methodology_id: str, version: int):
        """Auditor other than the author: approve; it takes effect at effective_from (or now)"""
        return governance.view(governance.approve(KIND, methodology_id, version, actor=current_user()))


@blp.route(f"{VERSION_PATH}/reject")
class Reject(MethodView):
    @requires(*AUDITORS)
    @blp.arguments(RequiredReasonSchema)
    @blp.response(200, VersionSchema)
    def post(self, body: dict[str, str], methodology_id: str, version: int):
        """Auditor other than the author: reject with a reason"""
        return governance.view(governance.reject(KIND, methodology_id, version, actor=current_user(),
                                                 reason=body["reason"]))


@blp.route(f"{VERSION_PATH}/retire")
class Retire(MethodView):
    @requires(*AUDITORS)
    @blp.arguments(RequiredReasonSchema)
    @blp.response(200, VersionSchema)
    def post(self, body: dict[str, str], methodology_id: str, version: int):
        """Auditor: retire an approved version (the earlier or parent version applies again)"""
        return governance.view(governance.retire(KIND, methodology_id, version, actor=current_user(),
                                                 reason=body["reason"]))


@blp.route(f"{VERSION_PATH}/simulate")
class Simulate(MethodView):
    @requires(*AUTHORS)
    @blp.arguments(SimulateSchema)
    @blp.response(200)
    def post(self, body: dict[str, int], methodology_id: str, version: int):
        """Run a draft or submitted version over the last N days of stored activities; writes nothing"""
        return methodologies.simulate(methodology_id, version, days=body["days"], actor=current_user())
