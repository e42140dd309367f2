"""Merchant offers and redemptions: reserve with points, confirm at the till, cancel or time out."""

from __future__ import annotations

from backend.api.common import Blueprint

blp = Blueprint("redemptions", __name__, url_prefix="/api/v1", description="Offers and redemptions")
