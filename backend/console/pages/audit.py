"""The audit log, newest first, with the state of its hash chain: what the nightly check found,
and a check of the whole chain on demand (as ``GET /api/v1/admin/audit-log/verify`` does)."""

from __future__ import annotations

from flask import render_template, request

from backend.api.admin.audit import READERS
from backend.console.blueprint import bp
from backend.console.pages import PAGE_SIZE, before_arg, text_arg
from backend.console.session import staff_page
from backend.db import db
from backend.services import audit as audit_service
from backend.services import jobruns

NIGHTLY_JOB = "verify_audit"


@bp.get("/audit")
@staff_page(*READERS)
def audit() -> str:
    action, target_type = text_arg("action", 64), text_arg("target_type", 32)
    before = before_arg()
    # First: verifying walks the chain in batches and empties the session as it goes.
    checked_now = audit_service.verify_chain(db.session) if request.args.get("verify") == "1" else None
    nightly = jobruns.latest([NIGHTLY_JOB]).get(NIGHTLY_JOB)
    rows, next_key = audit_service.browse(action=action, target_type=target_type, target_id=None, before=before,
                                          limit=PAGE_SIZE)
    return render_template("console/audit.html", rows=rows, next_key=next_key, checked_now=checked_now,
                           nightly=nightly, action=action, target_type=target_type)
