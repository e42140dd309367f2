"""Methodology and exchange-rule versions: the list, one version side by side with another,
simulation, and the decisions (submit, approve, reject).

Each action calls the governance service the admin API calls, with the API's role sets: the
service enforces four eyes, regional scope and the status rules, and audits every decision and
every refused approval.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from backend.api.admin.versions import AUDITORS, AUTHORS, READERS
from backend.console import diffview
from backend.console.blueprint import bp
from backend.console.i18n import current_language, translate
from backend.console.session import current_user, staff_page
from backend.errors import field_error
from backend.services import governance, methodologies, rules, rules_simulation
from backend.services.methodologies import KIND as METHODOLOGY
from backend.services.rules import KIND as RULES

PER_SUBJECT = 20
SIMULATE_DAYS = (7, 30, 90)


def _page_url(kind: str, subject: str, number: int, **args: Any) -> str:
    if kind == RULES:
        return url_for("console.rules_version", version=number, **args)
    return url_for("console.methodology_version", subject=subject, version=number, **args)


def _titles() -> dict[str, str]:
    zh = current_language() == "zh"
    return {m["id"]: (m["title_zh"] if zh and m["title_zh"] else m["title"]) for m in methodologies.catalogue()}


@bp.get("/versions")
@staff_page(*READERS)
def versions() -> str:
    awaiting = governance.views(governance.awaiting_decision())
    sections = []
    for entry in methodologies.catalogue():
        rows, _ = governance.browse(METHODOLOGY, entry["id"], before=None, limit=PER_SUBJECT)
        sections.append({"kind": METHODOLOGY, "subject": entry["id"], "entry": entry,
                         "versions": governance.views(rows)})
    rows, _ = governance.browse(RULES, rules.SUBJECT, before=None, limit=PER_SUBJECT)
    sections.append({"kind": RULES, "subject": rules.SUBJECT, "entry": None, "versions": governance.views(rows)})
    return render_template("console/versions.html", awaiting=awaiting, sections=sections, titles=_titles(),
                           page_url=_page_url)


def _against_arg() -> int | None:
    raw = request.args.get("against", "").strip()
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 2**31 - 1:
        raise field_error("against", "must be a version number", location="query")
    return int(raw)


def _version_page(kind: str, subject: str, number: int, *, simulation: dict[str, Any] | None = None,
                  status: int = 200) -> tuple[str, int]:
    version = governance.get(kind, subject, number)
    against_number = _against_arg()
    if against_number is not None:
        other = governance.get(kind, subject, against_number)
    else:
        other = governance.baseline(version)
    diff = governance.diff(kind, subject, other.version, number) if other is not None else None
    rows = diffview.side_by_side(other.payload if other is not None else None, version.payload)
    choices, _ = governance.browse(kind, subject, before=None, limit=100)
    user = current_user()
    return render_template(
        "console/version.html", kind=kind, subject=subject, version=governance.view(version),
        other=governance.view(other) if other is not None else None, diff=diff, rows=rows,
        choices=[v for v in choices if v.version != number], titles=_titles(), page_url=_page_url,
        simulation=simulation, simulate_days=SIMULATE_DAYS,
        can_simulate=bool(user.roles & frozenset(AUTHORS)),
        can_decide=bool(user.roles & frozenset(AUDITORS)),
        is_author=version.author_user_id == user.id,
        can_submit=version.author_user_id == user.id and bool(user.roles & frozenset(AUTHORS)),
    ), status


def _decided(kind: str, subject: str, number: int, message: str) -> Response:
    flash(message, "success")
    return redirect(_page_url(kind, subject, number), code=303)


def _reason() -> str:
    reason = request.form.get("reason", "")
    if not reason.strip():
        raise field_error("reason", "give the reason for the author", error="reason_required", location="form")
    if len(reason) > 2000:
        raise field_error("reason", "at most 2000 characters", location="form")
    return reason


def _days() -> int:
    raw = request.form.get("days", "30").strip()
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 366:
        raise field_error("days", "must be a whole number of days from 1 to 366", location="form")
    return int(raw)


# --- methodology versions ----------------------------------------------------------------------------


@bp.get("/methodologies/<string:subject>/versions/<int:version>")
@staff_page(*READERS)
def methodology_version(subject: str, version: int) -> tuple[str, int]:
    return _version_page(METHODOLOGY, subject, version)


@bp.post("/methodologies/<string:subject>/versions/<int:version>/simulate")
@staff_page(*AUTHORS)
def methodology_simulate(subject: str, version: int) -> tuple[str, int]:
    result = methodologies.simulate(subject, version, days=_days(), actor=current_user())
    return _version_page(METHODOLOGY, subject, version, simulation=result)


@bp.post("/methodologies/<string:subject>/versions/<int:version>/submit")
@staff_page(*AUTHORS)
def methodology_submit(subject: str, version: int) -> Response:
    done = governance.submit(METHODOLOGY, subject, version, actor=current_user())
    return _decided(METHODOLOGY, subject, version, translate("flash.submitted", ref=done.ref))


@bp.post("/methodologies/<string:subject>/versions/<int:version>/approve")
@staff_page(*AUDITORS)
def methodology_approve(subject: str, version: int) -> Response:
    done = governance.approve(METHODOLOGY, subject, version, actor=current_user())
    return _decided(METHODOLOGY, subject, version, translate("flash.approved", ref=done.ref))


@bp.post("/methodologies/<string:subject>/versions/<int:version>/reject")
@staff_page(*AUDITORS)
def methodology_reject(subject: str, version: int) -> Response:
    done = governance.reject(METHODOLOGY, subject, version, actor=current_user(), reason=_reason())
    return _decided(METHODOLOGY, subject, version, translate("flash.rejected", ref=done.ref))


# --- exchange-rule versions ----------------------------------------------------------------------------


@bp.get("/rules/versions/<int:version>")
@staff_page(*READERS)
def rules_version(version: int) -> tuple[str, int]:
    return _version_page(RULES, rules.SUBJECT, version)


@bp.post("/rules/versions/<int:version>/simulate")
@staff_page(*AUTHORS)
def rules_simulate(version: int) -> tuple[str, int]:
    result = rules_simulation.simulate(rules.SUBJECT, version, days=_days(), actor=current_user())
    return _version_page(RULES, rules.SUBJECT, version, simulation=result)


@bp.post("/rules/versions/<int:version>/submit")
@staff_page(*AUTHORS)
def rules_submit(version: int) -> Response:
    done = governance.submit(RULES, rules.SUBJECT, version, actor=current_user())
    return _decided(RULES, rules.SUBJECT, version, translate("flash.submitted", ref=done.ref))


@bp.post("/rules/versions/<int:version>/approve")
@staff_page(*AUDITORS)
def rules_approve(version: int) -> Response:
    done = governance.approve(RULES, rules.SUBJECT, version, actor=current_user())
    return _decided(RULES, rules.SUBJECT, version, translate("flash.approved", ref=done.ref))


@bp.post("/rules/versions/<int:version>/reject")
@staff_page(*AUDITORS)
def rules_reject(version: int) -> Response:
    done = governance.reject(RULES, rules.SUBJECT, version, actor=current_user(), reason=_reason())
    return _decided(RULES, rules.SUBJECT, version, translate("flash.rejected", ref=done.ref))

