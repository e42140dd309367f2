"""Merchant staff: their own merchant (offers and redemptions join this blueprint later)."""

from __future__ import annotations

from flask.views import MethodView

from backend.api.admin.merchants import MerchantSchema
from backend.api.common import Blueprint
from backend.api.security import current_user, requires
from backend.models import Role
from backend.services import merchants

blp = Blueprint("merchant", __name__, url_prefix="/api/v1/merchant", description="Merchant staff")


@blp.route("/me")
class MerchantMe(MethodView):
    @requires(Role.MERCHANT_STAFF.value)
    @blp.response(200, MerchantSchema)
    def get(self):
        """The merchant this till login works for"""
        return merchants.merchant_of_staff(current_user())
