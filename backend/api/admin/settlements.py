"""Merchant settlement statements and the operator's liability."""

from __future__ import annotations

from backend.api.common import Blueprint

blp = Blueprint("settlements", __name__, url_prefix="/api/v1",
                description="Merchant settlement statements and the operator's liability")
