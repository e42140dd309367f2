"""Public-welfare projects and donations."""

from __future__ import annotations

from backend.api.common import Blueprint

blp = Blueprint("projects", __name__, url_prefix="/api/v1", description="Public-welfare projects and donations")
