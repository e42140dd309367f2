"""Public-welfare projects (公益) and the donations residents make to them.

Each project has its own ledger account (kind ``welfare_project``); a donation is a ``donate``
journal entry from the resident's wallet to it, taken oldest-expiring lots first. A donation locks
the project row before checking that the project is open and holds it until commit, and closing
locks the same row, so a donation can never land after the close. Closing refunds nothing: what
was given stays given. Services flush; the request boundary commits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select

from backend.db import db, utcnow
from backend.errors import Conflict, NotFound, field_error
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import Donation, LedgerAccount, Region, Resident, User, WelfareProject
from backend.services import audit, idempotency, ledger
from backend.services.pagination import keyset_page
from backend.services.regions import ancestors, get_region
from backend.services.scope import require_in_scope, scope_filter

ACCOUNT_KIND = "welfare_project"
RECEIPT_PREFIX = "GY"


def _clean(text: str) -> str:
    return " ".join(text.split())


def _account_of(project_id: int) -> int:
    return ledger.accounts_for(ACCOUNT_KIND, [project_id])[project_id]


# --- operators -------------------------------------------------------------------------------------


def create(title: str, description: str, region: str, target_points: int, *, actor: User) -> WelfareProject:
    title = _clean(title)
    if not title:
        raise field_error("title", "must not be blank")
    if target_points <= 0:
        raise field_error("target_points", "must be a positive whole number of points")
    region_row = get_region(region)
    require_in_scope(actor, region_row.code)
    project = WelfareProject(region_code=region_row.code, title=title, description=description.strip(),
                             target_points=target_points, status="open", created_by_user_id=actor.id)
    db.session.add(project)
    db.session.flush()
    _account_of(project.id)  # the account donations go to, made now so progress reads a row from the start
    audit.record("project.create", "welfare_project", project.id, actor=actor, region_code=project.region_code,
                 after={"title": project.title, "region": project.region_code,
                        "target_points": project.target_points})
    return project


def _locked(project_id: int) -> WelfareProject:
    """The project row under ``SELECT … FOR UPDATE`` (re-read, not the identity map's copy)."""
    project = db.session.scalar(select(WelfareProject).where(WelfareProject.id == project_id)
                                .with_for_update().execution_options(populate_existing=True))
    if project is None:
        raise NotFound(f"No welfare project {project_id}.", error="project_not_found")
    return project


def close(project_id: int, *, actor: User, reason: str) -> WelfareProject:
    reason = reason.strip()
    if not reason:
        raise field_error("reason", "say why the project closes", error="reason_required")
    project = _locked(project_id)
    require_in_scope(actor, project.region_code)
    if project.status == "closed":
        raise Conflict(f"Welfare project {project_id} is already closed.", error="project_closed")
    project.status = "closed"
    project.closed_at = utcnow()
    project.closed_by_user_id = actor.id
    db.session.flush()
    progress = progress_of([project.id])[project.id]
    audit.record("project.close", "welfare_project", project.id, actor=actor, region_code=project.region_code,
                 before={"status": "open"},
                 after={"status": "closed", "donated_points": progress.donated_points,
                        "donations": progress.donations},
                 reason=reason)
    return project


def browse_scoped(actor: User, *, status: str | None, before: int | None,
                  limit: int) -> tuple[list[WelfareProject], int | None]:
    query = scope_filter(select(WelfareProject), WelfareProject.region_code, actor)
    return _page(query, status=status, before=before, limit=limit)


# --- the public ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    donated_points: int
    donors: int
    donations: int


def progress_of(project_ids: list[int]) -> dict[int, Progress]:
    """Donated points (the project account's balance), distinct donors and donations: two queries."""
    if not project_ids:
        return {}
    balances = dict(db.session.execute(
        select(LedgerAccount.project_id, LedgerAccount.balance)
        .where(LedgerAccount.kind == ACCOUNT_KIND, LedgerAccount.project_id.in_(project_ids))).all())
    counts = {row.project_id: (row.donors, row.donations) for row in db.session.execute(
        select(Donation.project_id, func.count(func.distinct(Donation.resident_id)).label("donors"),
               func.count(Donation.id).label("donations"))
        .where(Donation.project_id.in_(project_ids)).group_by(Donation.project_id))}
    return {pid: Progress(int(balances.get(pid) or 0), *counts.get(pid, (0, 0))) for pid in project_ids}


def percent(donated: int, target: int) -> int:
    """Integer percent of the target reached, rounded down (it may pass 100)."""
    return donated * 100 // target


def get(project_id: int) -> WelfareProject:
    project = db.session.get(WelfareProject, project_id)
    if project is None:
        raise NotFound(f"No welfare project {project_id}.", error="project_not_found")
    return project


def browse_public(*, region: str | None, status: str | None, before: int | None,
                  limit: int) -> tuple[list[WelfareProject], int | None]:
    query = select(WelfareProject)
    if region is not None:
        if db.session.get(Region, region) is None:
            raise field_error("region", f"unknown region code {region!r}", error="unknown_region", location="query")
        query = query.where(WelfareProject.region_code.in_(ancestors(region)))
    return _page(query, status=status, before=before, limit=limit)


def _page(query: Select[Any], *, status: str | None, before: int | None,
          limit: int) -> tuple[list[WelfareProject], int | None]:
    if status is not None:
        query = query.where(WelfareProject.status == status)
    return keyset_page(query, WelfareProject.id, before=before, limit=limit)


def view(project: WelfareProject, progress: Progress | None = None) -> dict[str, Any]:
    progress = progress or progress_of([project.id])[project.id]
    return {
        "id": project.id, "title": project.title, "description": project.description,
        "region": project.region_code, "target_points": project.target_points, "status": project.status,
        "donated_points": progress.donated_points, "donors": progress.donors, "donations": progress.donations,
        "percent": percent(progress.donated_points, project.target_points),
        "created_at": project.created_at, "closed_at": project.closed_at,
        "created_by_user_id": project.created_by_user_id, "closed_by_user_id": project.closed_by_user_id,
    }


def views(projects: list[WelfareProject]) -> list[dict[str, Any]]:
    progress = progress_of([p.id for p in projects])
    return [view(p, progress[p.id]) for p in projects]


# --- residents -------------------------------------------------------------------------------------


def receipt_no(donation_id: int, at: datetime) -> str:
    """Human-readable and unique: the China date the donation was made and its id."""
    return f"{RECEIPT_PREFIX}-{at.astimezone(CHINA_STANDARD_TIME):%Y%m%d}-{donation_id:06d}"


def _replay(resident: Resident, key: str, project_id: int, points: int) -> Donation | None:
    return idempotency.earlier(Donation, resident.id, key, what="a different donation",
                               same=lambda d: (d.project_id, d.points) == (project_id, points))


def donate(resident: Resident, project_id: int, points: int, *, idempotency_key: str | None,
           actor: User) -> tuple[Donation, bool]:
    """Give ``points`` from the resident's wallet to an open project. Returns the donation and
    whether it was made now (False: a retry with the same Idempotency-Key found it)."""
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise field_error("points", "must be a positive whole number of points")
    key = idempotency_key
    if key is not None:
        earlier = _replay(resident, key, project_id, points)
        if earlier is not None:
            return earlier, False
    project = _locked(project_id)  # held until commit: a close waits for this donation, or it sees the close
    if key is not None:
        # A concurrent retry with the same key may have committed while this one waited for the lock.
        earlier = _replay(resident, key, project_id, points)
        if earlier is not None:
            return earlier, False
    else:
        key = uuid.uuid4().hex
    if project.status != "open":
        raise Conflict(f"Welfare project {project_id} is closed and accepts no more donations.",
                       error="project_closed")
    now = utcnow()
    wallet = ledger.wallet_of_resident(resident.id)
    version = ledger.rules_in_force(resident.region_code, now)
    entry_id = ledger.spend(wallet, points, _account_of(project.id), kind="donate",
                            key=f"donate:{resident.id}:{key}", rule_version=version,
                            memo=f"donation to 公益 project {project.id}: {project.title}"[:200], actor=actor)
    donation = Donation(project_id=project.id, resident_id=resident.id, points=points, entry_id=entry_id,
                        idempotency_key=key, created_at=now)
    db.session.add(donation)
    db.session.flush()
    return donation, True


def receipt(donation: Donation, title: str | None = None) -> dict[str, Any]:
    if title is None:
        title = db.session.scalar(select(WelfareProject.title).where(WelfareProject.id == donation.project_id))
    return {"id": donation.id, "receipt_no": receipt_no(donation.id, donation.created_at),
            "project_id": donation.project_id, "project_title": title, "points": donation.points,
            "donated_at": donation.created_at, "entry_id": donation.entry_id}


def my_donations(resident: Resident, *, before: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    query = (select(Donation, WelfareProject.title).join(WelfareProject, WelfareProject.id == Donation.project_id)
             .where(Donation.resident_id == resident.id))
    rows, next_key = keyset_page(query, Donation.id, before=before, limit=limit)
    return [receipt(donation, title) for donation, title in rows], next_key
