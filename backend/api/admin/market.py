"""Admin: carbon-market batches (issue #8.3) — pool, issue (four eyes), sell or retire serial ranges,
replace a member, keep reductions out, export for the exchange."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import ID_RANGE, REGION_CODE, Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.security import current_user, requires
from backend.db import BIGINT_MAX
from backend.models import Role
from backend.models.market import BATCH_STATUSES, EXCLUSION_CATEGORIES
from backend.services import market

blp = Blueprint("admin_market", __name__, url_prefix="/api/v1/admin/market",
                description="Admin: carbon-market batches, serials, sales and retirements")

MANAGERS = (Role.OPERATOR.value, Role.ADMIN.value)
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)
# Issuing is the second pair of eyes on a draft: any of these, but not the drafter.
ISSUERS = READERS
GUARDS = (Role.OPERATOR.value, Role.AUDITOR.value)
AUDITOR = Role.AUDITOR.value

SERIAL = validate.Range(min=1, max=BIGINT_MAX)
TONNES = validate.Range(min=1, max=10**9)


class MarketScopeArgs(Schema):
    methodology = fields.String(required=True, validate=validate.Length(min=1, max=64))
    region = fields.String(required=True, validate=REGION_CODE)
    include_subregions = fields.Boolean(load_default=True, metadata={
        "description": "true (default): the region and its districts; false: the region's own reductions only"})
    vintage = fields.Integer(required=True, validate=validate.Range(min=2000, max=2999),
                             metadata={"description": "the year (China time) the reductions occurred in"})


class MarketAvailableSchema(Schema):
    methodology = fields.String()
    region = fields.String()
    include_subregions = fields.Boolean()
    vintage = fields.Integer()
    reductions = fields.Integer(metadata={"description": "certified, unpooled, unexcluded reductions with grams"})
    grams = fields.Integer()
    whole_tonnes = fields.Integer()
    remainder_grams = fields.Integer()


class MarketDraftSchema(MarketScopeArgs):
    vintage = fields.Integer(required=True, strict=True, validate=validate.Range(min=2000, max=2999),
                             metadata={"description": "the year (China time) the reductions occurred in"})
    tonnes = fields.Integer(load_default=None, strict=True, validate=TONNES, metadata={
        "description": "tonnes to pool (default: every whole tonne available)"})
    note = fields.String(load_default=None, validate=validate.Length(max=500))


class MarketBatchArgs(CursorArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(BATCH_STATUSES))
    methodology = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    vintage = fields.Integer(load_default=None, validate=validate.Range(min=2000, max=2999))


class MarketBatchSchema(Schema):
    id = fields.Integer()
    status = fields.String(metadata={"description": "draft | discarded | issued | sold | retired | closed"})
    region = fields.String(attribute="region_code")
    include_subregions = fields.Boolean()
    methodology = fields.String(attribute="methodology_id")
    methodology_versions = fields.List(fields.Integer())
    vintage = fields.Integer()
    tonnes = fields.Integer(metadata={"description": "serials: one per tonne"})
    pooled_grams = fields.Integer(metadata={"description": "the active members' grams"})
    unserialised_grams = fields.Integer(metadata={"description": "the sub-tonne rest, never sold or pooled again"})
    member_count = fields.Integer()
    members_sha256 = fields.String(metadata={"description": "sha256 of 'id:grams\\n' per active member, id order"})
    serial_key = fields.String()
    serial_start = fields.Integer(allow_none=True)
    serial_end = fields.Integer(allow_none=True)
    serial_range = fields.String(allow_none=True, metadata={"description": "REGION-METHOD-YEAR-START-END"})
    available_tonnes = fields.Integer()
    sold_tonnes = fields.Integer()
    retired_tonnes = fields.Integer()
    note = fields.String()
    drafted_by_user_id = fields.Integer()
    drafted_at = fields.DateTime()
    issued_by_user_id = fields.Integer(allow_none=True)
    issued_at = fields.DateTime(allow_none=True)
    discarded_by_user_id = fields.Integer(allow_none=True)
    discarded_at = fields.DateTime(allow_none=True)
    discard_reason = fields.String(allow_none=True)


class MarketTransactionSchema(Schema):
    id = fields.Integer()
    batch_id = fields.Integer()
    kind = fields.String(metadata={"description": "sale | retirement"})
    serials = fields.String()
    first_serial = fields.Integer()
    last_serial = fields.Integer()
    tonnes = fields.Integer()
    buyer = fields.String(allow_none=True)
    unit_price_fen = fields.Integer(allow_none=True)
    amount_fen = fields.Integer(allow_none=True)
    beneficiary = fields.String(allow_none=True)
    purpose = fields.String(allow_none=True)
    reference = fields.String(allow_none=True)
    created_by_user_id = fields.Integer()
    created_at = fields.DateTime()
    certificate_url = fields.String(allow_none=True, metadata={"description": "a retirement's public certificate"})


class MarketBlockSchema(Schema):
    serials = fields.String()
    first_serial = fields.Integer()
    last_serial = fields.Integer()
    tonnes = fields.Integer()
    state = fields.String(metadata={"description": "available | sold | retired"})
    transaction_id = fields.Integer(allow_none=True)


class MarketBatchDetailSchema(MarketBatchSchema):
    transactions = fields.List(fields.Nested(MarketTransactionSchema))
    blocks = fields.List(fields.Nested(MarketBlockSchema))


class MarketReasonSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class _RangeSchema(Schema):
    tonnes = fields.Integer(load_default=None, strict=True, validate=TONNES,
                            metadata={"description": "take the lowest contiguous run of this many available serials"})
    first_serial = fields.Integer(load_default=None, strict=True, validate=SERIAL)
    last_serial = fields.Integer(load_default=None, strict=True, validate=SERIAL)
    reference = fields.String(load_default=None, validate=validate.Length(max=120))


class MarketSaleSchema(_RangeSchema):
    buyer = fields.String(required=True, validate=validate.Length(min=1, max=200))
    price_yuan_per_tonne = fields.String(required=True, validate=validate.Length(min=1, max=24),
                                         metadata={"description": "yuan per tonne, a decimal string, e.g. \"58.50\""})


class MarketRetirementSchema(_RangeSchema):
    beneficiary = fields.String(required=True, validate=validate.Length(min=1, max=200),
                                metadata={"description": "on whose behalf the tonnes are retired"})
    purpose = fields.String(required=True, validate=validate.Length(min=1, max=500),
                            metadata={"description": "e.g. offsetting the 2025 Yueyang marathon"})


class MarketReplaceSchema(Schema):
    reduction_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class MarketReplacementSchema(Schema):
    batch_id = fields.Integer()
    reduction_id = fields.Integer()
    withdrawn_grams = fields.Integer()
    added_reductions = fields.List(fields.Integer())
    added_grams = fields.Integer()
    pooled_grams = fields.Integer()
    unserialised_grams = fields.Integer()


class MarketMemberSchema(Schema):
    reduction_id = fields.Integer()
    grams = fields.Integer()
    status = fields.String(metadata={"description": "active | withdrawn"})
    added_at = fields.DateTime()
    withdrawn_at = fields.DateTime(allow_none=True)
    withdraw_reason = fields.String(allow_none=True)
    region = fields.String()
    occurred_at = fields.DateTime()
    activity_type = fields.String()
    methodology = fields.String(metadata={"description": "id@version"})
    factors_sha256 = fields.String()
    reduction_status = fields.String()


class MarketExcludeSchema(Schema):
    reduction_ids = fields.List(fields.Integer(strict=True, validate=ID_RANGE), required=True,
                                validate=validate.Length(min=1, max=market.MAX_EXCLUSIONS))
    category = fields.String(required=True, validate=validate.OneOf(EXCLUSION_CATEGORIES))
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class MarketExclusionResultSchema(Schema):
    reduction_id = fields.Integer()
    status = fields.String(metadata={"description": "excluded | already_excluded | pooled | reversed | not_found"})
    exclusion_id = fields.Integer()
    batch_id = fields.Integer()


class MarketExclusionResultsSchema(Schema):
    results = fields.List(fields.Nested(MarketExclusionResultSchema))


class MarketExclusionSchema(Schema):
    id = fields.Integer()
    reduction_id = fields.Integer()
    category = fields.String()
    reason = fields.String()
    created_by_user_id = fields.Integer()
    created_at = fields.DateTime()
    lifted_at = fields.DateTime(allow_none=True)
    lifted_by_user_id = fields.Integer(allow_none=True)
    lift_reason = fields.String(allow_none=True)


class MarketExclusionArgs(CursorArgs):
    live = fields.Boolean(load_default=None, metadata={"description": "true: in force; false: lifted"})
    reduction_id = fields.Integer(load_default=None, validate=ID_RANGE)


MarketBatchPage = page_schema(MarketBatchSchema, "MarketBatchPage")
MarketMemberPage = page_schema(MarketMemberSchema, "MarketMemberPage")
MarketExclusionPage = page_schema(MarketExclusionSchema, "MarketExclusionPage")


def _certificate_url(token: str | None) -> str | None:
    return f"{request.host_url}certificates/{token}" if token else None


def _transaction(transaction: Any, batch: Any) -> dict[str, Any]:
    view = market.transaction_view(transaction, batch)
    view["certificate_url"] = _certificate_url(view.pop("certificate_token"))
    return view


def _detail(batch: Any) -> dict[str, Any]:
    view = market.detail(batch)
    for item in view["transactions"]:
        item["certificate_url"] = _certificate_url(item.pop("certificate_token"))
    return view


@blp.route("/available")
class Available(MethodView):
    @requires(*READERS)
    @blp.arguments(MarketScopeArgs, location="query")
    @blp.response(200, MarketAvailableSchema)
    def get(self, args: dict[str, Any]):
        """What a pool of this methodology, region and vintage would find now"""
        return market.available(actor=current_user(), **args)


@blp.route("/batches")
class Batches(MethodView):
    @requires(*READERS)
    @blp.arguments(MarketBatchArgs, location="query")
    @blp.response(200, MarketBatchPage)
    def get(self, args: dict[str, Any]):
        """Batches in your region, newest first"""
        rows, next_key = market.browse(current_user(), status=args["status"], methodology=args["methodology"],
                                       vintage=args["vintage"], before=decode_cursor(args.get("cursor")),
                                       limit=args["limit"])
        return page(market.views(rows), next_key)

    @requires(*MANAGERS)
    @blp.arguments(MarketDraftSchema)
    @blp.response(201, MarketBatchSchema)
    def post(self, body: dict[str, Any]):
        """Pool a draft batch

        Whole certified reductions of the methodology, region and vintage that are in no batch and not
        excluded, oldest first, until they reach the tonnes asked for (default: every whole tonne);
        the sub-tonne rest of what was taken stays in the batch unserialised. 409
        `not_enough_reductions` when the scope holds fewer whole tonnes."""
        batch = market.draft(actor=current_user(), **body)
        return market.view(batch)


@blp.route("/batches/<int:batch_id>")
class BatchDetail(MethodView):
    @requires(*READERS)
    @blp.response(200, MarketBatchDetailSchema)
    def get(self, batch_id: int):
        """One batch with its sales, retirements and serial blocks"""
        return _detail(market.get_scoped(batch_id, current_user()))


@blp.route("/batches/<int:batch_id>/reductions")
class BatchReductions(MethodView):
    @requires(*READERS)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, MarketMemberPage)
    def get(self, args: dict[str, Any], batch_id: int):
        """The reductions pooled in a batch, highest id first"""
        batch = market.get_scoped(batch_id, current_user())
        rows, next_key = market.members_page(batch, before=decode_cursor(args.get("cursor")), limit=args["limit"])
        return page(rows, next_key)


@blp.route("/batches/<int:batch_id>/issue")
class Issue(MethodView):
    @requires(*ISSUERS)
    @blp.response(200, MarketBatchSchema)
    def post(self, batch_id: int):
        """Issue a draft: its serials are allocated (by someone other than its drafter: four eyes)"""
        return market.view(market.issue(batch_id, actor=current_user()))


@blp.route("/batches/<int:batch_id>/discard")
class Discard(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(MarketReasonSchema)
    @blp.response(200, MarketBatchSchema)
    def post(self, body: dict[str, str], batch_id: int):
        """Discard a draft: its reductions can be pooled again"""
        return market.view(market.discard(batch_id, actor=current_user(), reason=body["reason"]))


@blp.route("/batches/<int:batch_id>/sales")
class Sales(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(MarketSaleSchema)
    @blp.response(201, MarketTransactionSchema)
    def post(self, body: dict[str, Any], batch_id: int):
        """Sell a serial range (give tonnes, or first_serial and last_serial): each serial once

        409 `serials_used` when any serial of the range was sold or retired, `not_enough_serials`
        when the batch holds fewer available tonnes."""
        transaction = market.sell(batch_id, actor=current_user(), **body)
        return _transaction(transaction, market.get(batch_id))


@blp.route("/batches/<int:batch_id>/retirements")
class Retirements(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(MarketRetirementSchema)
    @blp.response(201, MarketTransactionSchema)
    def post(self, body: dict[str, Any], batch_id: int):
        """Retire a serial range for a beneficiary and purpose; answers its public certificate's URL

        409 `serials_used` when any serial of the range was sold or retired, `not_enough_serials`
        when the batch holds fewer available tonnes."""
        transaction = market.retire(batch_id, actor=current_user(), **body)
        return _transaction(transaction, market.get(batch_id))


@blp.route("/batches/<int:batch_id>/replace")
class Replace(MethodView):
    @requires(AUDITOR)
    @blp.arguments(MarketReplaceSchema)
    @blp.response(200, MarketReplacementSchema)
    def post(self, body: dict[str, Any], batch_id: int):
        """Auditor: take a reduction out of a batch, keeping its tonnes backed (then it can be reversed)

        Covered by the batch's unserialised rest first, then by further unpooled reductions of its
        scope; 409 `no_replacement` (nothing changed) when the scope has not enough."""
        return market.replace_member(batch_id, body["reduction_id"], actor=current_user(), reason=body["reason"])


def _download(body: str | bytes, mimetype: str, filename: str) -> Response:
    return Response(body, status=200, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@blp.route("/batches/<int:batch_id>/export.csv")
class ExportCsv(MethodView):
    @requires(*READERS)
    @blp.doc(responses={"200": {"description": "The batch for the exchange: one row per block of serials "
                                               "(see services/market.py export_csv for the columns)",
                                "content": {"text/csv": {"schema": {"type": "string"}}}}})
    def get(self, batch_id: int):
        """A batch as CSV for the exchange"""
        batch = market.get_scoped(batch_id, current_user())
        return _download(market.export_csv(batch).encode(), "text/csv", f"market-batch-{batch.id}.csv")


@blp.route("/batches/<int:batch_id>/export.json")
class ExportJson(MethodView):
    @requires(*READERS)
    @blp.response(200)
    def get(self, batch_id: int):
        """A batch as JSON for the exchange (format carbon-points.market-batch/1)"""
        return market.export_json(market.get_scoped(batch_id, current_user()))


@blp.route("/exclusions")
class Exclusions(MethodView):
    @requires(*READERS)
    @blp.arguments(MarketExclusionArgs, location="query")
    @blp.response(200, MarketExclusionPage)
    def get(self, args: dict[str, Any]):
        """Reductions kept out of batches, newest first"""
        rows, next_key = market.browse_exclusions(current_user(), live=args["live"],
                                                  reduction_id=args["reduction_id"],
                                                  before=decode_cursor(args.get("cursor")), limit=args["limit"])
        return page(rows, next_key)

    @requires(*GUARDS)
    @blp.arguments(MarketExcludeSchema)
    @blp.response(200, MarketExclusionResultsSchema)
    def post(self, body: dict[str, Any]):
        """Keep reductions out of every batch (claimed elsewhere: green certificates, CCER, ...), per item"""
        return {"results": market.exclude(body["reduction_ids"], category=body["category"], reason=body["reason"],
                                          actor=current_user())}


@blp.route("/exclusions/<int:exclusion_id>/lift")
class LiftExclusion(MethodView):
    @requires(AUDITOR)
    @blp.arguments(MarketReasonSchema)
    @blp.response(200, MarketExclusionSchema)
    def post(self, body: dict[str, str], exclusion_id: int):
        """Auditor: lift an exclusion (the reduction can be pooled again)"""
        return market.lift_exclusion(exclusion_id, actor=current_user(), reason=body["reason"])
