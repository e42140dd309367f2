"""Merchant settlement statements and the operator's liability.

Operators issue a month's statements and mark them paid; auditors read them; merchant staff read
their own merchant's (another merchant's statement does not exist for them: 404).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import ID_RANGE, REGION_CODE, Blueprint, CursorArgs, decode_cursor, page, page_schema
from backend.api.security import current_user, requires
from backend.models import Role, SettlementStatement
from backend.services import merchants, settlements

blp = Blueprint("settlements", __name__, url_prefix="/api/v1",
                description="Merchant settlement statements and the operator's liability")

MANAGERS = (Role.OPERATOR.value, Role.ADMIN.value)
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)
SHOP = Role.MERCHANT_STAFF.value

PERIOD = validate.Regexp(r"^\d{4}-(0[1-9]|1[0-2])$", error="must be a month YYYY-MM")
CSV_DOC = {"responses": {"200": {"description": "The statement as CSV (UTF-8 with a byte-order mark, for "
                                                "spreadsheets): a header row, one row per redemption, a total row",
                                 "content": {"text/csv": {"schema": {"type": "string"}}}}}}


class IssueSchema(Schema):
    period = fields.String(required=True, metadata={"description": "the month to settle, YYYY-MM, China time"})
    region = fields.String(load_default=None, validate=REGION_CODE,
                           metadata={"description": "only merchants in this region (default: your whole scope)"})


class PaidSchema(Schema):
    reference = fields.String(required=True, validate=validate.Length(min=1, max=settlements.REFERENCE_MAX),
                              metadata={"description": "the payment's reference (bank transfer number)"})


class StatementArgs(CursorArgs):
    status = fields.String(load_default=None, validate=validate.OneOf(("issued", "paid")))
    period = fields.String(load_default=None, validate=PERIOD)


class AdminStatementArgs(StatementArgs):
    merchant_id = fields.Integer(load_default=None, validate=ID_RANGE)


class LiabilityArgs(Schema):
    region = fields.String(load_default=None, validate=REGION_CODE)


def _yuan(obj: Any) -> str:
    fen = obj["amount_fen"] if isinstance(obj, dict) else obj.amount_fen
    return settlements.yuan(fen)


class StatementSchema(Schema):
    id = fields.Integer()
    merchant_id = fields.Integer()
    region = fields.String(attribute="region_code")
    period = fields.String()
    redemptions = fields.Integer()
    points = fields.Integer()
    yuan_per_point = fields.String(metadata={"description": "the settlement rate of the rules version, as published"})
    amount_fen = fields.Integer(metadata={"description": "payable, in fen: floor(points × rate × 100)"})
    amount_yuan = fields.Function(_yuan, metadata={"description": "amount_fen as yuan, two decimals"})
    rules_version_id = fields.Integer()
    status = fields.String()
    issued_at = fields.DateTime()
    issued_by_user_id = fields.Integer()
    paid_at = fields.DateTime(allow_none=True)
    paid_by_user_id = fields.Integer(allow_none=True)
    payment_reference = fields.String(allow_none=True)


class LineSchema(Schema):
    redemption_id = fields.Integer()
    offer_id = fields.Integer()
    offer_title = fields.String()
    points = fields.Integer()
    closed_at = fields.DateTime(metadata={"description": "when the merchant confirmed the code"})
    code = fields.String(metadata={"description": "the redemption code, all but its last four characters hidden"})


class StatementDetailSchema(StatementSchema):
    merchant_name = fields.String()
    rules_version = fields.String(metadata={"description": "the rules version id@version the rate came from"})
    lines = fields.List(fields.Nested(LineSchema))


class IssuedSchema(Schema):
    statements = fields.List(fields.Nested(StatementSchema))


class RegionLiabilitySchema(Schema):
    region = fields.String()
    yuan_per_point = fields.String(allow_none=True)
    rules_version = fields.String(allow_none=True)
    resident_wallet_points = fields.Integer()
    household_wallet_points = fields.Integer()
    enterprise_wallet_points = fields.Integer()
    outstanding_points = fields.Integer(metadata={"description": "points in wallets, still to be spent"})
    held_points = fields.Integer(metadata={"description": "points reserved at merchants, not yet confirmed"})
    unstated_points = fields.Integer(metadata={"description": "points merchants took that are on no statement yet"})
    unpaid_statements = fields.Integer()
    unpaid_points = fields.Integer()
    unpaid_fen = fields.Integer(metadata={"description": "issued, unpaid statements"})
    outstanding_value_fen = fields.Integer(allow_none=True,
                                           metadata={"description": "outstanding points at the current rate"})
    exposure_fen = fields.Integer(allow_none=True, metadata={
        "description": "unpaid statements plus every other point at the current rate"})


class LiabilityTotalsSchema(Schema):
    outstanding_points = fields.Integer()
    resident_wallet_points = fields.Integer()
    household_wallet_points = fields.Integer()
    enterprise_wallet_points = fields.Integer()
    held_points = fields.Integer()
    unstated_points = fields.Integer()
    unpaid_statements = fields.Integer()
    unpaid_points = fields.Integer()
    unpaid_fen = fields.Integer()
    unpaid_yuan = fields.String()
    outstanding_value_fen = fields.Integer()
    outstanding_value_yuan = fields.String()
    exposure_fen = fields.Integer()
    exposure_yuan = fields.String()
    regions_without_rate = fields.List(fields.String())


class LiabilitySchema(Schema):
    as_of = fields.DateTime()
    region = fields.String(allow_none=True)
    regions = fields.List(fields.Nested(RegionLiabilitySchema))
    totals = fields.Nested(LiabilityTotalsSchema)


StatementPage = page_schema(StatementSchema, "SettlementStatementPage")


def _detail(statement: SettlementStatement) -> SimpleNamespace:
    columns = {column.key: getattr(statement, column.key) for column in SettlementStatement.__mapper__.column_attrs}
    return SimpleNamespace(**columns, **settlements.detail(statement))


def _csv(statement: SettlementStatement) -> Response:
    body = "\ufeff" + settlements.to_csv(statement)
    filename = f"statement-{statement.merchant_id}-{statement.period}.csv"
    return Response(body.encode("utf-8"), status=200, mimetype="text/csv",
                    headers={"Content-Type": "text/csv; charset=utf-8",
                             "Content-Disposition": f'attachment; filename="{filename}"'})


# --- operators -------------------------------------------------------------------------------------


@blp.route("/admin/settlements")
class Statements(MethodView):
    @requires(*READERS)
    @blp.arguments(AdminStatementArgs, location="query")
    @blp.response(200, StatementPage)
    def get(self, args: dict[str, Any]):
        """Settlement statements in your region, newest first"""
        rows, next_key = settlements.browse(current_user(), status=args["status"], merchant_id=args["merchant_id"],
                                            period=args["period"], before=decode_cursor(args.get("cursor")),
                                            limit=args["limit"])
        return page(rows, next_key)

    @requires(*MANAGERS)
    @blp.arguments(IssueSchema)
    @blp.response(201, IssuedSchema)
    def post(self, body: dict[str, Any]):
        """Issue a month's statements

        One statement per merchant in your scope with fulfilled redemptions in the month that are on no
        statement yet. Running it again creates nothing new (an empty list). A month that is not over
        (plus a short grace) answers 409 `period_not_over`."""
        issued = settlements.issue_statements(body["period"], actor=current_user(), region=body["region"])
        return {"statements": issued}


@blp.route("/admin/settlements/<int:statement_id>")
class StatementDetail(MethodView):
    @requires(*READERS)
    @blp.response(200, StatementDetailSchema)
    def get(self, statement_id: int):
        """One statement with its redemptions"""
        return _detail(settlements.get_scoped(statement_id, current_user()))


@blp.route("/admin/settlements/<int:statement_id>/csv")
class StatementCsv(MethodView):
    @requires(*READERS)
    @blp.doc(**CSV_DOC)
    def get(self, statement_id: int):
        """One statement as CSV"""
        return _csv(settlements.get_scoped(statement_id, current_user()))


@blp.route("/admin/settlements/<int:statement_id>/paid")
class StatementPaid(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(PaidSchema)
    @blp.response(200, StatementSchema)
    def post(self, body: dict[str, str], statement_id: int):
        """Record that a statement was paid

        The ledger does not move: the points stay in the merchant's settlement account as the record of
        what it was paid for. Paying twice answers 409 `already_paid`."""
        return settlements.mark_paid(statement_id, actor=current_user(), reference=body["reference"])


@blp.route("/admin/liability")
class Liability(MethodView):
    @requires(*READERS)
    @blp.arguments(LiabilityArgs, location="query")
    @blp.response(200, LiabilitySchema)
    def get(self, args: dict[str, Any]):
        """What the operator owes now: outstanding points, holds, unsettled and unpaid amounts, per region"""
        return settlements.liability(args["region"], actor=current_user())


# --- merchant staff --------------------------------------------------------------------------------


@blp.route("/merchant/statements")
class MerchantStatements(MethodView):
    @requires(SHOP)
    @blp.arguments(StatementArgs, location="query")
    @blp.response(200, StatementPage)
    def get(self, args: dict[str, Any]):
        """Your merchant's settlement statements, newest first"""
        merchant = merchants.merchant_of_staff(current_user())
        rows, next_key = settlements.browse_for_merchant(merchant, status=args["status"], period=args["period"],
                                                         before=decode_cursor(args.get("cursor")),
                                                         limit=args["limit"])
        return page(rows, next_key)


@blp.route("/merchant/statements/<int:statement_id>")
class MerchantStatementDetail(MethodView):
    @requires(SHOP)
    @blp.response(200, StatementDetailSchema)
    def get(self, statement_id: int):
        """One of your merchant's statements with its redemptions"""
        merchant = merchants.merchant_of_staff(current_user())
        return _detail(settlements.get_for_merchant(statement_id, merchant))


@blp.route("/merchant/statements/<int:statement_id>/csv")
class MerchantStatementCsv(MethodView):
    @requires(SHOP)
    @blp.doc(**CSV_DOC)
    def get(self, statement_id: int):
        """One of your merchant's statements as CSV"""
        merchant = merchants.merchant_of_staff(current_user())
        return _csv(settlements.get_for_merchant(statement_id, merchant))
