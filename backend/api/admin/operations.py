"""Operations: the scheduler's jobs and their runs, alerts, daily statistics.

Admins see the jobs and their runs, run a job on demand and acknowledge alerts; auditors read the
alerts too (ledger and audit-chain breaches are theirs to follow up). Operators, auditors and
admins read the daily statistics of the regions in their scope.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.security import current_user, requires
from backend.errors import field_error
from backend.jobs import scheduler
from backend.models import Role
from backend.models.operations import ALERT_SEVERITIES, RUN_OUTCOMES, RUN_TRIGGERS
from backend.services import alerts, jobruns, stats
from backend.validators import in_platform_years

blp = Blueprint("admin_operations", __name__, url_prefix="/api/v1/admin",
                description="Operations: scheduled jobs and their runs, alerts, daily statistics")

ADMIN = (Role.ADMIN.value,)
ALERT_READERS = (Role.AUDITOR.value, Role.ADMIN.value)
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)


# --- jobs ------------------------------------------------------------------------------------------


class JobRunSchema(Schema):
    id = fields.Integer()
    job = fields.String(attribute="job_id")
    scheduled_for = fields.DateTime(metadata={"description": "the fire time this run stands for (a manual run: "
                                                             "when it was asked for)"})
    trigger = fields.String(metadata={"description": " | ".join(RUN_TRIGGERS)})
    attempt = fields.Integer()
    outcome = fields.String(metadata={"description": " | ".join(RUN_OUTCOMES)})
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    counts = fields.Dict(allow_none=True, metadata={"description": "what the job did, as it reported it"})
    error = fields.String(allow_none=True, metadata={
        "description": "why it failed or was skipped (the end of the traceback); on an ok run, a warning"})
    runner = fields.String(metadata={"description": "host:pid of the process that ran or skipped it"})
    requested_by_user_id = fields.Integer(allow_none=True)


class JobSchema(Schema):
    id = fields.String()
    description = fields.String()
    schedule = fields.String(metadata={"description": "the cron expression, in the timezone below"})
    timezone = fields.String()
    misfire_grace_seconds = fields.Integer(allow_none=True, metadata={
        "description": "how late a run may start and still run (null: however late)"})
    catch_up = fields.Boolean(metadata={"description": "a fire time missed while no scheduler ran is run at start"})
    lock_ttl_seconds = fields.Float()
    retry_delays_seconds = fields.List(fields.Integer())
    next_run_at = fields.DateTime(allow_none=True)
    last_run = fields.Nested(JobRunSchema, allow_none=True)
    last_success_at = fields.DateTime(allow_none=True)


class JobListSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema))


class JobRunArgs(CursorArgs):
    job = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    outcome = fields.String(load_default=None, validate=validate.OneOf(RUN_OUTCOMES))


RunPage = page_schema(JobRunSchema, "JobRunPage")


@blp.route("/jobs")
class Jobs(MethodView):
    @requires(*ADMIN)
    @blp.response(200, JobListSchema)
    def get(self):
        """The scheduled jobs: schedule, next fire time, latest run and its outcome"""
        return {"jobs": scheduler.overview()}


@blp.route("/jobs/runs")
class JobRuns(MethodView):
    @requires(*ADMIN)
    @blp.arguments(JobRunArgs, location="query")
    @blp.response(200, RunPage)
    def get(self, args: dict[str, Any]):
        """Job runs, newest first; filter by job and outcome"""
        if args["job"] is not None and args["job"] not in {spec.id for spec in scheduler.JOBS}:
            raise field_error("job", f"no job {args['job']!r}", location="query")
        rows, next_key = jobruns.browse(job_id=args["job"], outcome=args["outcome"],
                                        before=decode_cursor(args.get("cursor")), limit=args["limit"])
        return page(rows, next_key)


@blp.route("/jobs/<string:job_id>/run")
class RunJob(MethodView):
    @requires(*ADMIN)
    @blp.response(200, JobRunSchema)
    def post(self, job_id: str):
        """Run a job now

        Runs at once, in this request, under the job's lock like a scheduled run, and answers with the
        run's record (its outcome may be `failed`: the error says why). The jobs are idempotent, so
        running one early only does the work that is due. 409 `job_running` while a run of it holds the
        lock; 503 `lock_unavailable` when Redis (or the database) is unreachable."""
        result = scheduler.run_now(current_app._get_current_object(), job_id,  # type: ignore[attr-defined]
                                   actor=current_user())
        return jobruns.get(result.run_id)  # type: ignore[arg-type]


# --- alerts ----------------------------------------------------------------------------------------


class AlertSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "ledger_breach | audit_chain_broken | review_backlog | job_failed"})
    subject = fields.String(metadata={"description": "what it is about within its kind (job_failed: the job)"})
    severity = fields.String(metadata={"description": " | ".join(ALERT_SEVERITIES)})
    state = fields.Function(alerts.state_of, metadata={"description": "open | acknowledged | resolved"})
    message = fields.String()
    details = fields.Dict()
    raised_at = fields.DateTime()
    last_seen_at = fields.DateTime(metadata={"description": "when a check last found the condition"})
    occurrences = fields.Integer(metadata={"description": "how many checks found it"})
    acknowledged_by = fields.Integer(allow_none=True)
    acknowledged_at = fields.DateTime(allow_none=True)
    acknowledgement_note = fields.String(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True, metadata={"description": "when a check found it gone"})


class AlertArgs(CursorArgs):
    state = fields.String(load_default=None, validate=validate.OneOf(alerts.STATES))
    kind = fields.String(load_default=None, validate=validate.Length(min=1, max=40))


class AcknowledgeSchema(Schema):
    note = fields.String(load_default=None, validate=validate.Length(max=500),
                         metadata={"description": "what was done or who follows it up"})


AlertPage = page_schema(AlertSchema, "AlertPage")


@blp.route("/alerts")
class Alerts(MethodView):
    @requires(*ALERT_READERS)
    @blp.arguments(AlertArgs, location="query")
    @blp.response(200, AlertPage)
    def get(self, args: dict[str, Any]):
        """Alerts raised by the checks, newest first"""
        rows, next_key = alerts.browse(state=args["state"], kind=args["kind"],
                                       before=decode_cursor(args.get("cursor")), limit=args["limit"])
        return page(rows, next_key)


@blp.route("/alerts/<int:alert_id>")
class AlertDetail(MethodView):
    @requires(*ALERT_READERS)
    @blp.response(200, AlertSchema)
    def get(self, alert_id: int):
        """One alert"""
        return alerts.get(alert_id)


@blp.route("/alerts/<int:alert_id>/acknowledge")
class AcknowledgeAlert(MethodView):
    @requires(*ADMIN)
    @blp.arguments(AcknowledgeSchema)
    @blp.response(200, AlertSchema)
    def post(self, body: dict[str, Any], alert_id: int):
        """Acknowledge an alert: someone has seen it

        An acknowledged alert that a check finds again stays acknowledged while what it is about is
        unchanged; a new breach, or a backlog turning critical, raises a new one. 409
        `already_acknowledged`."""
        return alerts.acknowledge(alert_id, actor=current_user(), note=body["note"])


# --- statistics ------------------------------------------------------------------------------------


class StatsArgs(Schema):
    region = fields.String(load_default=None, validate=REGION_CODE,
                           metadata={"description": "this region and the ones below it (default: your scope)"})
    from_ = fields.Date(data_key="from", load_default=None, validate=in_platform_years,
                        metadata={"description": "first day, China time (default: 30 days before `to`)"})
    to = fields.Date(load_default=None, validate=in_platform_years,
                     metadata={"description": "last day (default: yesterday)"})


_ACTIVITY_DOC = {
    "activities": "activities received that day, whatever became of them",
    "credited": "certified reductions recorded that day (an approval in review counts on its day)",
    "residents": "distinct residents among those reductions",
    "households": "distinct households credited among them",
    "grams": "certified CO2e of those reductions, grams (engagement-only scenarios count zero)",
    "points_issued": "points issued that day for reductions (credits, and queued credits released)",
}


def _figures(names: dict[str, str]) -> dict[str, fields.Field]:
    return {name: fields.Integer(metadata={"description": doc}) for name, doc in names.items()}


TypeStatsSchema = Schema.from_dict({"activity_type": fields.String(), **_figures(_ACTIVITY_DOC)},
                                   name="DailyTypeStats")

_DAY_DOC = {
    **_ACTIVITY_DOC,
    "residents": "distinct residents credited that day, across types (summed over the regions below: a "
                 "person credited in two districts counts in each)",
    "households": "distinct households credited that day, across types",
    "points_redeemed": "points settled at merchants of the region",
    "points_donated": "points donated to welfare projects of the region",
    "points_rights": "points paid for opened rights of the region",
    "points_spent": "redeemed + donated + rights",
    "points_expired": "points expired from wallets of residents, households and enterprises of the region",
}
DayStatsSchema = Schema.from_dict({"day": fields.Date(), **_figures(_DAY_DOC),
                                   "by_type": fields.List(fields.Nested(TypeStatsSchema))}, name="DailyStats")
_TOTALS = ("activities", "credited", "grams", "points_issued", "points_redeemed", "points_donated", "points_rights",
           "points_spent", "points_expired")
TotalsSchema = Schema.from_dict(_figures({name: _DAY_DOC[name] for name in _TOTALS}), name="DailyStatsTotals")


class DailySeriesSchema(Schema):
    region = fields.String(allow_none=True)
    from_ = fields.Date(data_key="from", attribute="from")
    to = fields.Date()
    complete_through = fields.Date(allow_none=True, metadata={
        "description": "the latest day rolled up; days after it are not in the series yet"})
    days = fields.List(fields.Nested(DayStatsSchema), metadata={"description": "one per rolled-up day, oldest first"})
    totals = fields.Nested(TotalsSchema, metadata={"description": "the sums over the days (participants are "
                                                                  "not summed: a person counts once a day)"})


@blp.route("/stats/daily")
class DailyStats(MethodView):
    @requires(*READERS)
    @blp.arguments(StatsArgs, location="query")
    @blp.response(200, DailySeriesSchema)
    def get(self, args: dict[str, Any]):
        """Daily statistics of a region, China days

        A day counts what the platform recorded that day (so a closed day never changes): activities
        received, reductions certified, points issued, spent and expired. At most 366 days at once."""
        return stats.daily(current_user(), region=args["region"], first=args["from_"], last=args["to"])
