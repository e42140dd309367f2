"""The review queue: held-back activities with their evidence, findings and fraud signals, decided
by auditors; and the open fraud signals. The review service scopes both to the person's region
and credits an approved activity exactly once."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from backend.api.admin.review import DECIDERS, READERS
from backend.console.blueprint import bp
from backend.console.i18n import label, translate
from backend.console.pages import PAGE_SIZE, before_arg
from backend.console.session import current_user, has_role, staff_page
from backend.errors import field_error
from backend.services import review as review_service

RESOLUTIONS = ("dismissed", "confirmed")


def _form_text(name: str, limit: int, *, required: bool) -> str:
    value = request.form.get(name, "")
    if required and not value.strip():
        raise field_error(name, "must not be blank", error="reason_required", location="form")
    if len(value) > limit:
        raise field_error(name, f"at most {limit} characters", location="form")
    return value


@bp.get("/review")
@staff_page(*READERS)
def review() -> str:
    user = current_user()
    items, next_key = review_service.queue_page(user, before=before_arg(), limit=PAGE_SIZE)
    signals, _ = review_service.signals_page(user, status="open", before=None, limit=PAGE_SIZE)
    return render_template("console/review.html", items=items, next_key=next_key, signals=signals,
                           can_decide=has_role(*DECIDERS))


@bp.post("/review/<int:activity_id>/approve")
@staff_page(*DECIDERS)
def review_approve(activity_id: int) -> Response:
    outcome = review_service.approve(activity_id, actor=current_user(), note=_form_text("note", 500, required=False))
    flash(translate("flash.activity_approved", id=activity_id, grams=f"{outcome['reduction_g']:,}",
                    points=outcome["points"], credit=outcome["credit"]), "success")
    return redirect(url_for("console.review"), code=303)


@bp.post("/review/<int:activity_id>/reject")
@staff_page(*DECIDERS)
def review_reject(activity_id: int) -> Response:
    review_service.reject(activity_id, actor=current_user(), reason=_form_text("reason", 500, required=True))
    flash(translate("flash.activity_rejected", id=activity_id), "success")
    return redirect(url_for("console.review"), code=303)


@bp.post("/signals/<int:signal_id>/resolve")
@staff_page(*DECIDERS)
def signal_resolve(signal_id: int) -> Response:
    status = request.form.get("status")
    if status not in RESOLUTIONS:
        raise field_error("status", f"must be one of {', '.join(RESOLUTIONS)}", location="form")
    review_service.resolve_signal(signal_id, actor=current_user(), status=status,
                                  resolution=_form_text("resolution", 500, required=True))
    flash(translate("flash.signal_resolved", id=signal_id, status=label("status", status)), "success")
    return redirect(url_for("console.review"), code=303)
