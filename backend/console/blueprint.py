"""The console's blueprint and what every console request passes through.

Before the view: the language, the signed-in user (``session.load_user``), and the CSRF check of
every POST (Flask-WTF's token, bound to the session). After it: a Content-Security-Policy that
allows only this origin (no inline script or style), and headers that keep the pages out of frames
and caches. Errors become pages in the person's language that say what was refused and, for a
refused form, that nothing was changed; the unit of work around the view has already rolled back
(or kept what a refusal must keep, such as the audit entry of a refused approval).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, g, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError, IntegrityError
from werkzeug.exceptions import HTTPException

from backend.console import i18n
from backend.errors import ApiError
from backend.extensions import csrf

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, url_prefix="/console")

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
KNOWN_HINTS = {"own_version", "out_of_scope", "role_required", "not_submitted", "already_decided",
               "reason_required", "rate_limited"}


@bp.before_request
def _before() -> None:
    from backend.console.session import load_user

    g.console_lang = i18n.choose_language()
    load_user()
    csrf.protect()  # POST only; raises CSRFError (400) before the view can change anything


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    # Same-origin referrers only: Flask-WTF's check of HTTPS form posts compares the Referer.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Cookie")
    return response


@bp.context_processor
def _context() -> dict[str, Any]:
    from backend.console.session import current_user_or_none, nav_items

    return {"t": i18n.translate, "label": i18n.label, "lang": i18n.current_language(),
            "user": current_user_or_none(), "nav": nav_items(), "page_link": page_link, "region_label": region_label}


def region_label(code: str) -> str:
    """A region's name in the page's language (the regions are read once per request)."""
    if "console_regions" not in g:
        from backend.services.regions import list_regions

        g.console_regions = {region.code: region for region in list_regions()}
    region = g.console_regions.get(code)
    if region is None:
        return code
    return region.name if i18n.current_language() == "zh" else region.name_en


def page_link(before: int | None) -> str:
    """This page with the same filters, from ``before`` (None: the newest)."""
    args = {key: value for key, value in request.args.items() if key != "before"}
    if before is not None:
        args["before"] = str(before)
    return url_for(request.endpoint or "console.dashboard", **(request.view_args or {}), **args)


def back_link() -> str:
    """Where "back" goes from an error: the console page the person came from, else the dashboard."""
    referrer = request.referrer or ""
    parts = urlsplit(referrer)
    if parts.netloc == request.host and parts.path.startswith("/console"):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return url_for("console.dashboard")


def error_page(status: int, message: str, *, error: str | None = None, detail: str | None = None,
               changed_nothing: bool | None = None) -> tuple[str, int]:
    if changed_nothing is None:
        changed_nothing = request.method == "POST"
    hint = i18n.translate(f"error.hint.{error}") if error in KNOWN_HINTS else None
    title_key = f"error.title.{status}"
    title = i18n.translate(title_key if title_key in i18n.EN else "error.title.400")
    page = render_template("console/error.html", status=status, title=title, message=message, hint=hint, error=error,
                           detail=detail, changed_nothing=changed_nothing, back=back_link(),
                           request_id=g.get("request_id"))
    return page, status


@bp.errorhandler(CSRFError)
def _csrf(exc: CSRFError) -> tuple[str, int]:
    return error_page(400, i18n.translate("error.csrf"), error="csrf", detail=exc.description,
                      changed_nothing=False)


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[str, int]:
    return error_page(exc.status_code, exc.message, error=exc.error)


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> tuple[str, int]:
    code = exc.code or 500
    error = "rate_limited" if code == 429 else None
    return error_page(code, exc.description or "", error=error)


@bp.errorhandler(IntegrityError)
def _constraint(exc: IntegrityError) -> tuple[str, int]:
    log.info("console write refused by a database constraint: %s", exc.orig)
    return error_page(409, "The change conflicts with another change made at the same time; try again.",
                      error="concurrent_change")


@bp.errorhandler(DataError)
def _data(exc: DataError) -> tuple[str, int]:
    log.warning("console value refused by the database: %s", exc.orig)
    return error_page(422, "A value is out of the range the platform stores.", error="out_of_range")


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[str, int]:
    log.exception("unhandled error in the console")
    return error_page(500, "Something went wrong on our side; it has been logged.", error="internal")
