"""Ledger health: the nightly ``verify_ledger`` run and what it found, a run on demand for admins
(as ``POST /api/v1/admin/jobs/verify_ledger/run``), and the operator's liability — the points
outstanding in wallets and what they are worth — from the settlement service."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from backend.api.admin.operations import ADMIN, ALERT_READERS
from backend.api.admin.settlements import READERS
from backend.console.blueprint import bp
from backend.console.i18n import label, translate
from backend.console.session import current_user, has_role, staff_page
from backend.jobs import scheduler
from backend.services import alerts, jobruns, settlements
from backend.services.checks import LEDGER_BREACH

JOB = "verify_ledger"


@bp.get("/ledger")
@staff_page(*READERS)
def ledger() -> str:
    user = current_user()
    last_run = jobruns.latest([JOB]).get(JOB)
    last_success = jobruns.last_success([JOB]).get(JOB)
    open_alerts = []
    if has_role(*ALERT_READERS):  # alerts are the auditors' and admins' to follow up, as in the API
        open_alerts, _ = alerts.browse(state="open", kind=LEDGER_BREACH, before=None, limit=5)
    return render_template("console/ledger.html", last_run=last_run, last_success=last_success,
                           open_alerts=open_alerts, liability=settlements.liability(None, actor=user),
                           can_verify=has_role(*ADMIN))


@bp.post("/ledger/verify")
@staff_page(*ADMIN)
def ledger_verify() -> Response:
    result = scheduler.run_now(current_app._get_current_object(), JOB, actor=current_user())  # type: ignore[attr-defined]
    flash(translate("flash.verify_ran", outcome=label("outcome", result.outcome)),
          "success" if result.outcome == "ok" else "error")
    return redirect(url_for("console.ledger"), code=303)
