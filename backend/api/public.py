"""Public endpoints: regions, published methodologies and rules, statistics; liveness, readiness, metrics."""

from __future__ import annotations

import logging

from flask import Response, current_app, request
from flask.blueprints import BlueprintSetupState
from flask.views import MethodView
from marshmallow import Schema, fields

from backend.api.common import REGION_CODE, Blueprint, PeriodArgs
from backend.config import current_settings
from backend.errors import Unauthorized, envelope
from backend.observability import access, metrics, readiness
from backend.services import methodologies, public_stats, regions, rules

blp = Blueprint("public", __name__, url_prefix="/api/v1", description="Public information")
health = Blueprint("health", __name__, description="Liveness, readiness and metrics (for the platform's operators)")
log = logging.getLogger(__name__)


@health.record_once
def _on_register(state: BlueprintSetupState) -> None:
    """Registering the health blueprint instruments the app: request latency and the access log."""
    access.instrument(state.app)
    settings = state.app.extensions["settings"]
    if settings.env == "production" and settings.metrics_token is None:
        log.warning("METRICS_TOKEN is unset: /metrics is open to anyone who reaches this service; "
                    "keep it off the public network or set the token")


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


@blp.route("/public/stats")
class PublicStats(MethodView):
    @blp.arguments(PeriodArgs, location="query")
    @blp.doc(responses={"404": {"description": "`unknown_region` (named in `errors.query.region`)"},
                        "422": {"description": "a malformed, inverted or future period, named in `errors.query`"}})
    @blp.response(200)
    def get(self, args: dict[str, str | None]):
        """Aggregates of a region and period: participants, activities, certified grams, points (small cells hidden)

        Every figure is a cell `{"value": n, "suppressed": false}`; a cell computed from fewer than
        `min_people` (10) distinct people is `{"value": null, "suppressed": true}`, and so is the
        smallest other cell of its group (or the total) when one cell alone would otherwise be the
        total minus the rest. Same definitions as the admin report (what was recorded in the period,
        China time); cached for up to ten minutes."""
        return public_stats.public_stats(args["region"], period=args["period"], first=args["from_"],
                                         last=args["to"])


@health.route("/healthz")
class Healthz(MethodView):
    @health.response(200)
    def get(self):
        """The process is alive (it touches nothing else: see /readyz)"""
        return {"status": "ok"}


@health.route("/readyz")
class Readyz(MethodView):
    @health.doc(responses={
        "200": {"description": "ready, or degraded (Redis down but not required): `{status, checks}`"},
        "503": {"description": "not ready: the error envelope naming what failed, with `checks`"},
    })
    def get(self):
        """Ready to serve: the database answers, Redis answers, migrations are at this code's head"""
        result = readiness.check(current_app)
        checks = {name: c.as_dict() for name, c in result.checks.items()}
        if result.ready:
            return {"status": result.status, "checks": checks}
        body = envelope(503, "Not ready: " + ", ".join(f"{name} {result.checks[name].detail}"
                                                       for name in result.failed) + ".",
                        error="not_ready")
        return {**body, "failed": result.failed, "checks": checks}, 503


@health.route("/metrics")
class Metrics(MethodView):
    @health.doc(responses={
        "200": {"description": "Prometheus text exposition format", "content": {"text/plain": {}}},
        "401": {"description": "METRICS_TOKEN is set and the bearer token is not it"},
    })
    def get(self):
        """Prometheus metrics of every worker. Open unless METRICS_TOKEN is set; then send it as a bearer token"""
        token = current_settings().metrics_token
        refusal = metrics.refused(request.headers.get("Authorization", ""), token) if token is not None else None
        if refusal == "token_missing":
            raise Unauthorized("Send 'Authorization: Bearer <METRICS_TOKEN>'.", error=refusal)
        if refusal == "token_invalid":
            raise Unauthorized("That is not the metrics token.", error=refusal)
        body, content_type = metrics.exposition()
        return Response(body, status=200, content_type=content_type)
