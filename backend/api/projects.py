"""Public-welfare projects and donations."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import (
    ID_RANGE,
    REGION_CODE,
    Blueprint,
    CursorArgs,
    IdempotencyHeaders,
    decode_cursor,
    page,
    page_schema,
)
from backend.api.security import current_resident, current_user, requires
from backend.db import BIGINT_MAX
from backend.models import Role
from backend.services import projects

blp = Blueprint("projects", __name__, url_prefix="/api/v1", description="Public-welfare projects and donations")

RESIDENT = Role.RESIDENT.value
STAFF = (Role.OPERATOR.value, Role.ADMIN.value)
# Auditors read what operators manage but change none of it.
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)

POINTS = validate.Range(min=1, max=BIGINT_MAX, error="must be a positive whole number of points")
STATUS = validate.OneOf(("open", "closed"))


class ProjectCreateSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=120))
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    region = fields.String(required=True, validate=REGION_CODE)
    target_points = fields.Integer(required=True, strict=True, validate=POINTS)


class CloseSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class ProjectListArgs(CursorArgs):
    status = fields.String(load_default=None, validate=STATUS)


class PublicProjectListArgs(ProjectListArgs):
    region = fields.String(load_default=None, validate=REGION_CODE,
                           metadata={"description": "projects of this region and of the regions above it"})


class ProjectSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    description = fields.String()
    region = fields.String()
    target_points = fields.Integer()
    status = fields.String()
    donated_points = fields.Integer(metadata={"description": "the balance of the project's ledger account"})
    donors = fields.Integer(metadata={"description": "distinct residents who donated"})
    donations = fields.Integer()
    percent = fields.Integer(metadata={"description": "donated_points / target_points in percent, rounded down"})
    created_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)


class AdminProjectSchema(ProjectSchema):
    created_by_user_id = fields.Integer()
    closed_by_user_id = fields.Integer(allow_none=True)


class DonateSchema(Schema):
    project_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    points = fields.Integer(required=True, strict=True, validate=POINTS)


class ReceiptSchema(Schema):
    id = fields.Integer()
    receipt_no = fields.String()
    project_id = fields.Integer()
    project_title = fields.String()
    points = fields.Integer()
    donated_at = fields.DateTime()
    entry_id = fields.Integer()


ProjectPage = page_schema(ProjectSchema, "WelfareProjectPage")
AdminProjectPage = page_schema(AdminProjectSchema, "AdminWelfareProjectPage")
ReceiptPage = page_schema(ReceiptSchema, "DonationReceiptPage")


# --- operators -------------------------------------------------------------------------------------


@blp.route("/admin/projects")
class AdminProjects(MethodView):
    @requires(*READERS)
    @blp.arguments(ProjectListArgs, location="query")
    @blp.response(200, AdminProjectPage)
    def get(self, args: dict[str, Any]):
        """Welfare projects in your region, newest first"""
        rows, next_key = projects.browse_scoped(current_user(), status=args["status"],
                                                before=decode_cursor(args["cursor"]), limit=args["limit"])
        return page(projects.views(rows), next_key)

    @requires(*STAFF)
    @blp.arguments(ProjectCreateSchema)
    @blp.response(201, AdminProjectSchema)
    def post(self, body: dict[str, Any]):
        """Open a public-welfare project residents can donate points to"""
        project = projects.create(body["title"], body["description"], body["region"], body["target_points"],
                                  actor=current_user())
        return projects.view(project)


@blp.route("/admin/projects/<int:project_id>/close")
class CloseProject(MethodView):
    @requires(*STAFF)
    @blp.arguments(CloseSchema)
    @blp.response(200, AdminProjectSchema)
    def post(self, body: dict[str, str], project_id: int):
        """Close the project: it accepts no more donations and refunds nothing"""
        return projects.view(projects.close(project_id, actor=current_user(), reason=body["reason"]))


# --- the public ------------------------------------------------------------------------------------


@blp.route("/projects")
class PublicProjects(MethodView):
    @blp.arguments(PublicProjectListArgs, location="query")
    @blp.response(200, ProjectPage)
    def get(self, args: dict[str, Any]):
        """Welfare projects and their progress, newest first (no login needed)"""
        rows, next_key = projects.browse_public(region=args["region"], status=args["status"],
                                                before=decode_cursor(args["cursor"]), limit=args["limit"])
        return page(projects.views(rows), next_key)


@blp.route("/projects/<int:project_id>")
class PublicProject(MethodView):
    @blp.response(200, ProjectSchema)
    def get(self, project_id: int):
        """One welfare project and its progress (no login needed)"""
        return projects.view(projects.get(project_id))


# --- residents -------------------------------------------------------------------------------------


@blp.route("/me/donations")
class MyDonations(MethodView):
    @requires(RESIDENT)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, ReceiptPage)
    def get(self, args: dict[str, Any]):
        """Your donation receipts, newest first"""
        rows, next_key = projects.my_donations(current_resident(), before=decode_cursor(args["cursor"]),
                                               limit=args["limit"])
        return page(rows, next_key)

    @requires(RESIDENT)
    @blp.arguments(DonateSchema)
    @blp.arguments(IdempotencyHeaders, location="headers")
    @blp.response(201, ReceiptSchema)
    @blp.alt_response(200, schema=ReceiptSchema, description="A retry with the same Idempotency-Key")
    def post(self, body: dict[str, int], headers: dict[str, str | None]):
        """Donate points to an open project; the answer is your receipt"""
        donation, created = projects.donate(current_resident(), body["project_id"], body["points"],
                                            idempotency_key=headers["idempotency_key"], actor=current_user())
        return projects.receipt(donation), 201 if created else 200
