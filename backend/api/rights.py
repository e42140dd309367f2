"""Opened rights (权益开放) and green levels."""

from __future__ import annotations

from backend.api.common import Blueprint

blp = Blueprint("rights", __name__, url_prefix="/api/v1", description="Opened rights (权益开放) and green levels")
