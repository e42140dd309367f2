"""Admin: reports per region and period (issue #8.2), as JSON or CSV, for operators, auditors and
admins within their regional scope."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import fields, validate

from backend.api.common import Blueprint, PeriodArgs
from backend.api.security import current_user, requires
from backend.models import Role
from backend.services import reports

blp = Blueprint("admin_reports", __name__, url_prefix="/api/v1/admin",
                description="Reports per region and period (annual and mid-term reporting)")

READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)
_ERRORS = {"404": {"description": "`unknown_region`: no such region (named in `errors.query.region`)"},
           "422": {"description": "a malformed, inverted or future period, named in `errors.query`"}}


class ReportArgs(PeriodArgs):
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv")),
                           metadata={"description": "json (default) or csv (as `/reports.csv`)"})


def _build(args: dict[str, Any]) -> dict[str, Any]:
    return reports.build(args["region"], period=args["period"], first=args["from_"], last=args["to"],
                         actor=current_user())


def _csv(report: dict[str, Any]) -> Response:
    name = f"report-{report['region']}-{report['period'].replace('..', '_')}.csv"
    return Response(reports.to_csv(report).encode(), status=200, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


_CSV_DOC = {"200": {"description": "one row per figure: " + ", ".join(reports.CSV_HEADER),
                    "content": {"text/csv": {"schema": {"type": "string"}}}}, **_ERRORS}


@blp.route("/reports")
class Report(MethodView):
    @requires(*READERS)
    @blp.arguments(ReportArgs, location="query")
    @blp.doc(responses=_ERRORS)
    @blp.response(200)
    def get(self, args: dict[str, Any]):
        """A region's report for a month, quarter, year or range of months

        Sections: `activities` (received, by type and current status), `participants` (distinct
        residents and households credited), `reductions` (certified, reversed and net grams by scenario
        and methodology id@version), `points` (issued, redeemed, donated, rights, expired, reversed,
        and outstanding at the start and end, with `balanced`), `settlements` (the months' statements
        per merchant), `donations` (per project), `market` (tonnes pooled, issued, sold, retired).
        Everything counts what was recorded in the period, China time; `backend/services/reports.py`
        says exactly what each figure counts. `format=csv` answers the CSV of `/reports.csv`."""
        report = _build(args)
        return _csv(report) if args["format"] == "csv" else report


@blp.route("/reports.csv")
class ReportCsv(MethodView):
    @requires(*READERS)
    @blp.arguments(PeriodArgs, location="query")
    @blp.doc(responses=_CSV_DOC)
    def get(self, args: dict[str, Any]):
        """A region's report as CSV: one row per figure of the JSON report"""
        return _csv(_build(args))
