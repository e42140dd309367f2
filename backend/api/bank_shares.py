"""Bank linkage (issue #8.4): operators enable bank partners, residents share (and revoke) a signed
green statement with one, banks verify or fetch it through their signed partner API."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import (
    ID_RANGE,
    REGION_CODE,
    Blueprint,
    CursorArgs,
    ReasonSchema,
    decode_cursor,
    page,
    page_schema,
)
from backend.api.security import current_partner, current_resident, current_user, partner_signed, requires
from backend.models import Role
from backend.services import bank_shares
from backend.signals import resident_anonymise, resident_export

blp = Blueprint("bank_shares", __name__, url_prefix="/api/v1",
                description="Bank linkage: residents' consented green statements for bank partners")

RESIDENT = Role.RESIDENT.value
MANAGERS = (Role.OPERATOR.value, Role.ADMIN.value)
READERS = (Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value)


def _connect_signals(_state: Any) -> None:
    """A resident's export lists their shares; deleting the account revokes them (backend/signals.py)."""
    resident_export.connect(bank_shares.export_section)
    resident_anonymise.connect(bank_shares.on_anonymise)


blp.record_once(_connect_signals)


class BankPartnerCreateSchema(Schema):
    partner_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    region = fields.String(required=True, validate=REGION_CODE,
                           metadata={"description": "residents of this region and below may share with it"})


class BankPartnerSchema(Schema):
    partner_id = fields.Integer()
    name = fields.String()
    region = fields.String()
    status = fields.String(metadata={"description": "active | disabled"})
    created_at = fields.DateTime()
    disabled_at = fields.DateTime(allow_none=True)


class BankPartnerListSchema(Schema):
    items = fields.List(fields.Nested(BankPartnerSchema))


class BankShareCreateSchema(Schema):
    partner_id = fields.Integer(required=True, strict=True, validate=ID_RANGE,
                                metadata={"description": "one of GET /api/v1/bank-partners"})
    valid_days = fields.Integer(load_default=bank_shares.DEFAULT_VALID_DAYS, strict=True,
                                validate=validate.Range(min=1, max=bank_shares.MAX_VALID_DAYS),
                                metadata={"description": "how long the bank may read it"})


class GreenStatementSchema(Schema):
    token = fields.String(metadata={"description": "the statement: a compact JWS (EdDSA) the bank verifies with "
                                                   "GET /api/v1/public/keys"})
    key_id = fields.String()
    share_id = fields.Integer()
    subject = fields.String(metadata={"description": "your pseudonym for this bank"})
    green_level = fields.String(allow_none=True)
    lifetime_certified_grams = fields.Integer()
    issued_at = fields.DateTime()
    expires_at = fields.DateTime()


class BankShareEventSchema(Schema):
    event = fields.String(metadata={"description": "created | fetched | verified | refused | revoked"})
    occurred_at = fields.DateTime()
    disclosed = fields.Dict(allow_none=True, metadata={"description": "what the bank was told"})
    detail = fields.String(allow_none=True)


class BankShareSchema(Schema):
    id = fields.Integer()
    partner_id = fields.Integer()
    partner_name = fields.String(allow_none=True)
    subject = fields.String()
    status = fields.String(metadata={"description": "active | expired | revoked"})
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)
    revoked_reason = fields.String(allow_none=True)


class BankShareCreatedSchema(BankShareSchema):
    statement = fields.Nested(GreenStatementSchema)


class BankShareDetailSchema(BankShareSchema):
    statement = fields.Nested(GreenStatementSchema, allow_none=True,
                              metadata={"description": "a fresh statement while the share is active"})
    events = fields.List(fields.Nested(BankShareEventSchema))


class StatementVerifySchema(Schema):
    statement = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class StatementVerifiedSchema(Schema):
    valid = fields.Boolean()
    share_id = fields.Integer()
    subject = fields.String()
    green_level = fields.String(allow_none=True)
    lifetime_certified_grams = fields.Integer()
    issued_at = fields.DateTime()
    expires_at = fields.DateTime()
    key_id = fields.String()


BankSharePage = page_schema(BankShareSchema, "BankSharePage")


# --- operators -------------------------------------------------------------------------------------


@blp.route("/admin/bank-partners")
class AdminBankPartners(MethodView):
    @requires(*READERS)
    @blp.response(200, BankPartnerListSchema)
    def get(self):
        """Partners residents may share green statements with, in your region"""
        return {"items": bank_shares.browse_banks(current_user())}

    @requires(*MANAGERS)
    @blp.arguments(BankPartnerCreateSchema)
    @blp.response(201, BankPartnerSchema)
    def post(self, body: dict[str, Any]):
        """Enable a partner as a bank residents of a region may share their green statement with"""
        bank = bank_shares.enable_bank(body["partner_id"], body["region"], actor=current_user())
        return bank_shares.bank_view(bank, bank_shares.partner_of(bank))


@blp.route("/admin/bank-partners/<int:partner_id>/disable")
class AdminBankPartnerDisable(MethodView):
    @requires(*MANAGERS)
    @blp.arguments(ReasonSchema)
    @blp.response(200, BankPartnerSchema)
    def post(self, body: dict[str, str | None], partner_id: int):
        """Stop new shares with a bank and refuse its statement calls (existing shares stay listed)"""
        bank = bank_shares.disable_bank(partner_id, actor=current_user(), reason=body["reason"])
        return bank_shares.bank_view(bank, bank_shares.partner_of(bank))


# --- residents -------------------------------------------------------------------------------------


@blp.route("/bank-partners")
class BankPartners(MethodView):
    @requires(RESIDENT)
    @blp.response(200, BankPartnerListSchema)
    def get(self):
        """Banks you may share your green statement with"""
        return {"items": bank_shares.banks_for(current_resident())}


@blp.route("/me/bank-shares")
class MyBankShares(MethodView):
    @requires(RESIDENT)
    @blp.arguments(CursorArgs, location="query")
    @blp.response(200, BankSharePage)
    def get(self, args: dict[str, Any]):
        """Your shares with banks, newest first"""
        resident = current_resident()
        rows, next_key = bank_shares.my_shares(resident, before=decode_cursor(args.get("cursor")), limit=args["limit"])
        names = bank_shares.names_of({s.partner_id for s in rows})
        return page([bank_shares.share_view(s, names.get(s.partner_id)) for s in rows], next_key)

    @requires(RESIDENT)
    @blp.arguments(BankShareCreateSchema)
    @blp.response(201, BankShareCreatedSchema)
    def post(self, body: dict[str, Any]):
        """Share your green level and lifetime certified grams with a bank: answers the signed statement

        The bank sees your pseudonym for it (never your name or ids), your green level and your
        lifetime certified grams, until the share expires or you revoke it. Every look is logged."""
        resident = current_resident()
        share, statement = bank_shares.create_share(resident, body["partner_id"], body["valid_days"],
                                                    actor=current_user())
        view = bank_shares.share_view(share, bank_shares.names_of({share.partner_id}).get(share.partner_id))
        return {**view, "statement": statement}


@blp.route("/me/bank-shares/<int:share_id>")
class MyBankShare(MethodView):
    @requires(RESIDENT)
    @blp.response(200, BankShareDetailSchema)
    def get(self, share_id: int):
        """One share: what was disclosed under it and when, and (while active) a fresh statement"""
        return bank_shares.share_detail(current_resident(), share_id)

    @requires(RESIDENT)
    @blp.response(200, BankShareSchema)
    def delete(self, share_id: int):
        """Revoke a share: the bank's statement calls are refused from now on"""
        share = bank_shares.revoke(current_resident(), share_id, actor=current_user())
        return bank_shares.share_view(share, bank_shares.names_of({share.partner_id}).get(share.partner_id))


# --- banks (signed) --------------------------------------------------------------------------------


@blp.route("/partner/bank-shares/<int:share_id>")
class PartnerBankShare(MethodView):
    @partner_signed
    @blp.response(200, GreenStatementSchema)
    def get(self, share_id: int):
        """A fresh signed statement under a share a resident gave you (409 share_revoked / share_expired)"""
        return bank_shares.fetch(current_partner(), share_id)


@blp.route("/partner/bank-shares/verify")
class PartnerVerifyStatement(MethodView):
    @partner_signed
    @blp.arguments(StatementVerifySchema)
    @blp.response(200, StatementVerifiedSchema)
    def post(self, body: dict[str, str]):
        """Check a statement a resident handed you: ours, for you, its share still live

        422 on `statement` when it is altered, forged or for another partner; 409 `share_revoked` or
        `share_expired` when its share ended."""
        return bank_shares.verify(current_partner(), body["statement"])
