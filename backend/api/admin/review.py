"""The review queue: held-back activities and fraud signals, for auditors to decide."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import Blueprint, CursorArgs, ReasonSchema, decode_cursor, page, page_schema
from backend.api.security import current_user, requires
from backend.models import Role
from backend.services import review

blp = Blueprint("admin_review", __name__, url_prefix="/api/v1/admin", description="Review queue and fraud signals")

DECIDERS = (Role.AUDITOR.value,)
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)


class SignalSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "impossible_travel | too_many_hours | rejection_spike | "
                                                  "binding_burst"})
    status = fields.String()
    detail = fields.String()
    resident_id = fields.Integer(allow_none=True)
    partner_id = fields.Integer(allow_none=True)
    activity_id = fields.Integer(allow_none=True)
    region = fields.String(allow_none=True)
    created_at = fields.DateTime()
    resolution = fields.String(allow_none=True)


class QueueItemSchema(Schema):
    id = fields.Integer()
    type = fields.String()
    status = fields.String()
    reason = fields.String(allow_none=True)
    source = fields.String()
    partner_id = fields.Integer(allow_none=True)
    external_id = fields.String(allow_none=True)
    resident_id = fields.Integer(allow_none=True)
    household_id = fields.Integer(allow_none=True)
    region = fields.String()
    occurred_at = fields.DateTime()
    ended_at = fields.DateTime(allow_none=True)
    data = fields.Dict()
    findings = fields.List(fields.Dict())
    duplicate_of = fields.Integer(allow_none=True)
    reviewed_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    signals = fields.List(fields.Nested(SignalSchema))


QueuePage = page_schema(QueueItemSchema, "ReviewQueuePage")
SignalPage = page_schema(SignalSchema, "FraudSignalPage")


class ApproveSchema(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=500))


class DecisionSchema(Schema):
    activity_id = fields.Integer()
    status = fields.String()
    reason = fields.String()
    reduction_id = fields.Integer()
    reduction_g = fields.Integer()
    points = fields.Integer()
    credit = fields.String(metadata={"description": "credited | queued | no_points"})


class SignalArgs(CursorArgs):
    status = fields.String(load_default="open", validate=validate.OneOf(("open", "dismissed", "confirmed")))


class ResolveSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(("dismissed", "confirmed")))
    resolution = fields.String(required=True, validate=validate.Length(min=1, max=500))


@blp.route("/review-queue")
class Queue(MethodView):
    @requires(*READERS)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, QueuePage)
    def get(self, args: dict[str, object]):
        """Activities waiting for an auditor, newest first, with their findings and fraud signals"""
        rows, next_key = review.queue_page(current_user(), before=decode_cursor(args.get("cursor")),
                                           limit=args["limit"])  # type: ignore[arg-type]
        return page(rows, next_key)


@blp.route("/review-queue/<int:activity_id>/approve")
class Approve(MethodView):
    @requires(*DECIDERS)
    @blp.arguments(ApproveSchema)
    @blp.response(200, DecisionSchema)
    def post(self, body: dict[str, str], activity_id: int):
        """Certify and credit it (once: a second approval is a 409)"""
        return review.approve(activity_id, actor=current_user(), note=body["note"])


@blp.route("/review-queue/<int:activity_id>/reject")
class Reject(MethodView):
    @requires(*DECIDERS)
    @blp.arguments(ReasonSchema)
    @blp.response(200, DecisionSchema)
    def post(self, body: dict[str, str], activity_id: int):
        """Reject it with a reason the resident sees"""
        return review.reject(activity_id, actor=current_user(), reason=body.get("reason") or "")


@blp.route("/fraud-signals")
class Signals(MethodView):
    @requires(*READERS)
    @blp.arguments(SignalArgs, location="query")
    @blp.response(200, SignalPage)
    def get(self, args: dict[str, object]):
        """Patterns no single activity shows: impossible days, rejection spikes, binding bursts"""
        rows, next_key = review.signals_page(current_user(), status=args["status"],  # type: ignore[arg-type]
                                             before=decode_cursor(args.get("cursor")), limit=args["limit"])  # type: ignore[arg-type]
        return page(rows, next_key)


@blp.route("/fraud-signals/<int:signal_id>/resolve")
class Resolve(MethodView):
    @requires(*DECIDERS)
    @blp.arguments(ResolveSchema)
    @blp.response(200, SignalSchema)
    def post(self, body: dict[str, str], signal_id: int):
        """Dismiss a signal or confirm it, saying what was found"""
        return review.resolve_signal(signal_id, actor=current_user(), status=body["status"],
                                     resolution=body["resolution"])
