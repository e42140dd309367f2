"""Routes for governed versions, shared by methodologies and exchange rules (one machinery).

``version_routes`` adds list, draft, view, edit, diff, submit, approve, reject, retire and
(when the kind supports it) simulate to a blueprint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import ID_RANGE, REGION_CODE, Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.security import current_user, requires
from backend.models import Role
from backend.models.governance import VERSION_STATUSES
from backend.services import governance
from backend.validators import in_platform_years

READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)
AUTHORS = (Role.OPERATOR.value, Role.AUDITOR.value)
AUDITORS = (Role.AUDITOR.value,)


class RequiredReasonSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class SimulateSchema(Schema):
    days = fields.Integer(load_default=30, strict=True, validate=validate.Range(min=1, max=366))


class DiffArgs(Schema):
    against = fields.Integer(required=True, validate=ID_RANGE)


class VersionListArgs(CursorArgs):
    region = fields.String(validate=REGION_CODE)
    status = fields.String(validate=validate.OneOf(VERSION_STATUSES))


def _schemas(name: str, payload_field: str, subject_label: str) -> tuple[type[Schema], type[Schema], type[Schema]]:
    draft = Schema.from_dict({
        "region": fields.String(load_default=None, allow_none=True, validate=REGION_CODE,
                                metadata={"description": "GB/T 2260 code; null for the national default"}),
        payload_field: fields.Dict(required=True),
        "effective_from": fields.AwareDateTime(
            load_default=None, allow_none=True, validate=in_platform_years,
            metadata={"description": "a future instant; omitted: takes effect when approved"}),
        "note": fields.String(load_default="", validate=validate.Length(max=2000)),
    }, name=f"{name}DraftSchema")
    edit = Schema.from_dict({
        payload_field: fields.Dict(),
        "effective_from": fields.AwareDateTime(allow_none=True, validate=in_platform_years),
        "note": fields.String(validate=validate.Length(max=2000)),
    }, name=f"{name}DraftUpdateSchema")
    view = Schema.from_dict({
        "subject": fields.String(data_key=subject_label), "version": fields.Integer(), "ref": fields.String(),
        "region": fields.String(allow_none=True), "status": fields.String(),
        "effective_from": fields.DateTime(allow_none=True), "payload": fields.Dict(data_key=payload_field),
        "payload_sha256": fields.String(data_key=f"{payload_field}_sha256"),
        "formula_version": fields.Integer(allow_none=True), "note": fields.String(), "author": fields.String(),
        "created_at": fields.DateTime(), "submitted_at": fields.DateTime(allow_none=True),
        "decided_at": fields.DateTime(allow_none=True), "decided_by": fields.String(allow_none=True),
        "decision_reason": fields.String(allow_none=True), "retired_at": fields.DateTime(allow_none=True),
        "retired_by": fields.String(allow_none=True),
    }, name=f"{name}VersionSchema")
    return draft, edit, view


def version_routes(
    blp: Blueprint, *, kind: str, name: str, payload_field: str, subject_label: str,
    base: str = "", subject: str | None = None,
    simulate: Callable[..., dict[str, Any]] | None = None,
) -> None:
    """Register the version workflow under ``base`` (which may hold ``<string:…>`` for the subject)."""
    draft_schema, edit_schema, view_schema = _schemas(name, payload_field, subject_label)
    page_of = page_schema(view_schema, f"{name}VersionPage")

    def subject_of(path: dict[str, Any]) -> str:
        return subject if subject is not None else next(iter(path.values()))

    @blp.route(f"{base}/versions")
    class Versions(MethodView):
        @requires(*READERS)
        @blp.arguments(VersionListArgs, location="query")
        @blp.response(200, page_of)
        def get(self, args: dict[str, Any], **path: Any):
            """Versions, newest first"""
            rows, next_key = governance.browse(kind, subject_of(path), region=args.get("region"),
                                               status=args.get("status"), before=decode_cursor(args.get("cursor")),
                                               limit=args["limit"])
            return page([governance.view(v) for v in rows], next_key)

        @requires(*AUTHORS)
        @blp.arguments(draft_schema)
        @blp.response(201, view_schema)
        def post(self, body: dict[str, Any], **path: Any):
            """Draft a new version for a region"""
            version = governance.create_draft(kind, subject_of(path), region=body["region"],
                                              payload=body[payload_field], effective_from=body["effective_from"],
                                              note=body["note"], actor=current_user())
            return governance.view(version)

    @blp.route(f"{base}/versions/<int:version>")
    class Version(MethodView):
        @requires(*READERS)
        @blp.response(200, view_schema)
        def get(self, version: int, **path: Any):
            """One version"""
            return governance.view(governance.get(kind, subject_of(path), version))

        @requires(*AUTHORS)
        @blp.arguments(edit_schema)
        @blp.response(200, view_schema)
        def patch(self, body: dict[str, Any], version: int, **path: Any):
            """Author: edit a draft (a submitted version can no longer be edited)"""
            return governance.view(governance.update_draft(
                kind, subject_of(path), version, actor=current_user(), payload=body.get(payload_field),
                effective_from=body.get("effective_from"),
                clear_effective_from="effective_from" in body and body["effective_from"] is None,
                note=body.get("note")))

    @blp.route(f"{base}/versions/<int:version>/diff")
    class Diff(MethodView):
        @requires(*READERS)
        @blp.arguments(DiffArgs, location="query")
        @blp.response(200)
        def get(self, args: dict[str, int], version: int, **path: Any):
            """What changed from version `against` to this one"""
            return governance.diff(kind, subject_of(path), args["against"], version)

    def action(verb: str, roles: tuple[str, ...], summary: str, with_reason: bool = False) -> None:
        def post_plain(self: MethodView, version: int, **path: Any) -> Any:
            return governance.view(getattr(governance, verb)(kind, subject_of(path), version, actor=current_user()))

        def post_reason(self: MethodView, body: dict[str, str], version: int, **path: Any) -> Any:
            return governance.view(getattr(governance, verb)(kind, subject_of(path), version, actor=current_user(),
                                                             reason=body["reason"]))

        handler = post_reason if with_reason else post_plain
        handler.__doc__ = summary
        handler = blp.response(200, view_schema)(handler)
        if with_reason:
            handler = blp.arguments(RequiredReasonSchema)(handler)
        view = type(f"{name}{verb.title()}", (MethodView,), {"post": requires(*roles)(handler)})
        blp.route(f"{base}/versions/<int:version>/{verb}")(view)

    action("submit", AUTHORS, "Author: submit a draft for approval (it can no longer be edited)")
    action("approve", AUDITORS, "Auditor other than the author: approve; it takes effect at effective_from (or now)")
    action("reject", AUDITORS, "Auditor other than the author: reject with a reason", with_reason=True)
    action("retire", AUDITORS, "Auditor: retire an approved version (the earlier or parent version applies again)",
           with_reason=True)

    if simulate is not None:
        @blp.route(f"{base}/versions/<int:version>/simulate")
        class Simulate(MethodView):
            @requires(*AUTHORS)
            @blp.arguments(SimulateSchema)
            @blp.response(200)
            def post(self, body: dict[str, int], version: int, **path: Any):
                """Run a draft or submitted version over the last N days of stored activities; writes nothing"""
                return simulate(subject_of(path), version, days=body["days"], actor=current_user())
