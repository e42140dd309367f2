"""Reports per region and period (issue #8.2): the annual and mid-term reporting the Hunan plans ask
for (SF 002:86 "年度重点工作进展报告制度、中期跟踪评估机制"), as JSON and CSV.

A report covers a region and every region below it, for a period of China-time calendar months
(``backend/services/periods.py``). Like the daily statistics (``stats.py``), it counts what the
platform *recorded* in the period, not when the activity happened: an activity reported on 2 January
for a ride on 31 December is in the new year. So a closed period's flows never change, and each
figure reconciles with the registry and the ledger over exactly the same instants. Every figure is
read from the registry and the ledger directly, set-based (the daily roll-up cannot give distinct
participants over a month, nor methodology versions, nor a status as of now).

What each figure counts (R: the region and the regions below it; "in the period": recorded at an
instant in [start, min(end, now))):

- ``activities``: activities received in the period whose region is in R, by type, with the status
  each has *now* (credited, pending_review, rejected, duplicate): a report re-run after a review
  shows the decision. Equal to the daily statistics' ``activities`` summed over the days.
- ``participants``: distinct residents, and distinct households, with a reduction recorded in the
  period in R that is still certified (a reversed one no longer makes anyone a participant).
- ``reductions``: reductions recorded (certified) in the period in R, by scenario (the activity type)
  and by methodology ``id@version``: ``certified_grams`` as recorded (the daily statistics' grams
  summed over the days), ``reversed_grams`` of those since reversed, ``net_grams`` the difference.
  Engagement-only scenarios (quiz) count 0 g, always.
- ``points``: the points of the people who live in R (residents, households and enterprises by the
  region they are registered in now, as the operator's liability is): ``issued`` to them (credits
  and released queued credits, clawback repayments included), ``redeemed`` (their redemptions a
  merchant fulfilled), ``donated``, ``rights`` (paid for opened rights), ``expired``, ``reversed``
  (taken back from reversed credits, and clawbacks repaid), all by the journal entry's posting
  time; ``outstanding_at_start`` and ``outstanding_at_end`` split into their wallets and the
  points on hold for their open redemptions. Double entry makes ``opening + issued - redeemed -
  donated - rights - expired - reversed = closing`` exact (``balanced``). The daily statistics put
  points where they were earned or spent instead (the activity's, the merchant's, the project's
  region); here they stay with the people who hold them, which is what lets the liability balance.
  ``settlements`` and ``donations`` below give the other view.
- ``settlements``: the settlement statements of the period's months for merchants in R (a month's
  statement exists once the month is over and an operator issued it), per merchant: payable and
  paid, in fen and yuan.
- ``donations``: donations posted in the period to welfare projects in R, per project (where the
  points went; ``points.donated`` is who gave them).
- ``market``: batches of regions in R: ``pooled`` (drafted in the period and not discarded),
  ``issued`` (serials created in the period), ``sold`` and ``retired`` (transactions in the period),
  in tonnes.

Reads only; nothing is written.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select, union
from sqlalchemy.orm import aliased

from backend.db import db, utcnow
from backend.errors import NotFound
from backend.methodology.registry import registry
from backend.models import (
    Activity,
    Donation,
    Household,
    JournalEntry,
    LedgerAccount,
    MarketBatch,
    MarketTransaction,
    Merchant,
    Posting,
    Redemption,
    Reduction,
    Region,
    Resident,
    SettlementStatement,
    User,
    WelfareProject,
)
from backend.models.activity import ACTIVITY_STATUSES
from backend.models.ledger import WALLET_KINDS
from backend.services import periods, stats
from backend.services.scope import descendants, require_in_scope
from backend.services.settlements import yuan

POINT_FLOWS = ("issued", "redeemed", "donated", "rights", "expired", "reversed")
GRAM_FIGURES = ("reductions", "certified_grams", "reversed_grams", "net_grams")


@dataclass(frozen=True)
class Window:
    """What a report reads: the region codes, and the instants [start, until)."""

    codes: list[str]
    start: datetime
    until: datetime


def region_of(code: Any, actor: User | None, *, location: str = "query") -> Region:
    """The region asked for: 404 naming the field when unknown, 403 outside the actor's scope."""
    region = db.session.get(Region, code) if isinstance(code, str) else None
    if region is None:
        raise NotFound(f"No region {code!r}.", error="unknown_region",
                       errors={location: {"region": [f"unknown region code {code!r}"]}})
    if actor is not None:
        require_in_scope(actor, region.code)
    return region


def window_for(region: Region, period: periods.Period, now: datetime) -> Window:
    return Window(sorted(descendants(region.code)), period.start, min(period.end, now))


def during(column: Any, w: Window) -> Any:
    return (column >= w.start) & (column < w.until)


# --- the registry ----------------------------------------------------------------------------------


def activities(w: Window) -> dict[str, Any]:
    rows = db.session.execute(
        select(Activity.type, Activity.status, func.count())
        .where(Activity.region_code.in_(w.codes), during(Activity.created_at, w))
        .group_by(Activity.type, Activity.status)).all()
    by_type: dict[str, dict[str, int]] = defaultdict(lambda: {"total": 0, **dict.fromkeys(ACTIVITY_STATUSES, 0)})
    for kind, status, count in rows:
        by_type[kind][status] += int(count)
        by_type[kind]["total"] += int(count)
    by_status = {status: sum(row[status] for row in by_type.values()) for status in ACTIVITY_STATUSES}
    return {"total": sum(by_status.values()), "by_status": by_status,
            "by_type": [{"type": kind, **by_type[kind]} for kind in sorted(by_type)]}


def engagement_only() -> list[str]:
    """Methodologies whose scenarios earn points but never grams."""
    return sorted(entry.id for entry in registry() if entry.methodology.engagement_only)


def gram_expression() -> Any:
    """A reduction's grams as reports count them: 0 for engagement-only methodologies."""
    engaged = engagement_only()
    return case((Reduction.methodology_id.in_(engaged), 0), else_=Reduction.grams) if engaged else Reduction.grams


def reductions(w: Window) -> dict[str, Any]:
    grams = gram_expression()
    rows = db.session.execute(
        select(Reduction.activity_type, Reduction.methodology_id, Reduction.methodology_version, Reduction.status,
               func.count(), func.coalesce(func.sum(grams), 0))
        .where(Reduction.region_code.in_(w.codes), during(Reduction.created_at, w))
        .group_by(Reduction.activity_type, Reduction.methodology_id, Reduction.methodology_version,
                  Reduction.status)).all()
    engaged = set(engagement_only())

    def empty() -> dict[str, int]:
        return dict.fromkeys(GRAM_FIGURES, 0)

    total, scenarios, methods = empty(), defaultdict(empty), defaultdict(empty)
    scenario_method: dict[str, str] = {}
    for kind, methodology, version, status, count, amount in rows:
        scenario_method[kind] = methodology
        for cell in (total, scenarios[kind], methods[f"{methodology}@{version}"]):
            cell["reductions"] += int(count)
            cell["certified_grams"] += int(amount)
            if status == "reversed":
                cell["reversed_grams"] += int(amount)
            cell["net_grams"] = cell["certified_grams"] - cell["reversed_grams"]
    return {"total": total,
            "by_scenario": [{"scenario": kind, "engagement_only": scenario_method[kind] in engaged, **scenarios[kind]}
                            for kind in sorted(scenarios)],
            "by_methodology": [{"methodology": ref, **methods[ref]} for ref in sorted(methods)]}


def participants(w: Window) -> dict[str, int]:
    residents, households = db.session.execute(
        select(func.count(func.distinct(Reduction.resident_id)), func.count(func.distinct(Reduction.household_id)))
        .where(Reduction.region_code.in_(w.codes), during(Reduction.created_at, w),
               Reduction.status == "certified")).one()
    return {"residents": int(residents), "households": int(households)}


# --- the ledger ------------------------------------------------------------------------------------


def attributed_entries(codes: list[str]) -> Any:
    """Ids of the journal entries that move the points of people living in ``codes``: those posting
    to their wallets; those of their reductions (credits, releases, reversals: a credit that went
    wholly to repay a clawback posts to no wallet); and the fulfilments of their redemptions (a hold
    moving to a merchant posts to no wallet either). Each entry belongs to one owner."""
    by_wallet = stats.join_wallet_owners(
        select(Posting.entry_id.label("entry_id")).join(LedgerAccount, LedgerAccount.id == Posting.account_id)
    ).where(LedgerAccount.kind.in_(WALLET_KINDS), stats.wallet_owner_region().in_(codes))
    household, resident = aliased(Household), aliased(Resident)
    owner = case((Reduction.household_id.is_not(None), household.region_code), else_=resident.region_code)
    by_reduction = (select(JournalEntry.id.label("entry_id"))
                    .join(Reduction, Reduction.id == JournalEntry.reduction_id)
                    .outerjoin(household, household.id == Reduction.household_id)
                    .outerjoin(resident, resident.id == Reduction.resident_id)
                    .where(owner.in_(codes)))
    fulfilled = (select(Redemption.close_entry_id.label("entry_id"))
                 .join(Resident, Resident.id == Redemption.resident_id)
                 .where(Redemption.status == "fulfilled", Resident.region_code.in_(codes)))
    return union(by_wallet, by_reduction, fulfilled).subquery()


def points(w: Window) -> dict[str, Any]:
    """The flow statement of the region's people's points (see the module docstring)."""
    entries = attributed_entries(w.codes)
    before = JournalEntry.posted_at < w.start
    rows = db.session.execute(
        select(JournalEntry.kind, LedgerAccount.kind,
               func.coalesce(func.sum(case((before, Posting.amount), else_=0)), 0),
               func.coalesce(func.sum(case((before, 0), else_=Posting.amount)), 0))
        .select_from(Posting)
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
        .where(Posting.entry_id.in_(select(entries.c.entry_id)), JournalEntry.posted_at < w.until)
        .group_by(JournalEntry.kind, LedgerAccount.kind)).all()
    flows = dict.fromkeys(POINT_FLOWS, 0)
    opening = {"wallets": 0, "on_hold": 0}
    moved = {"wallets": 0, "on_hold": 0}
    unexplained = 0
    for entry_kind, account_kind, earlier, within in rows:
        earlier, within = int(earlier), int(within)
        pocket = "wallets" if account_kind in WALLET_KINDS else "on_hold" if account_kind == "redemption_holds" \
            else None
        if pocket is not None:
            opening[pocket] += earlier
            moved[pocket] += within
        elif account_kind == "issuance" and entry_kind in ("credit", "release"):
            flows["issued"] -= within
        elif account_kind == "issuance" and entry_kind == "spend":
            flows["rights"] += within
        elif account_kind in ("merchant_settlement", "welfare_project", "expired", "reversed"):
            flow = {"merchant_settlement": "redeemed", "welfare_project": "donated"}.get(account_kind, account_kind)
            flows[flow] += within
        else:
            unexplained += within
    closing = {pocket: opening[pocket] + moved[pocket] for pocket in opening}
    start_total, end_total = sum(opening.values()), sum(closing.values())
    out = flows["redeemed"] + flows["donated"] + flows["rights"] + flows["expired"] + flows["reversed"]
    return {**flows,
            "outstanding_at_start": {**opening, "total": start_total},
            "outstanding_at_end": {**closing, "total": end_total},
            "balanced": not unexplained and start_total + flows["issued"] - out == end_total}


# --- money, welfare, markets -----------------------------------------------------------------------


def settlements(codes: list[str], period: periods.Period) -> dict[str, Any]:
    paid = case((SettlementStatement.status == "paid", SettlementStatement.amount_fen), else_=0)
    rows = db.session.execute(
        select(Merchant.id, Merchant.name, Merchant.region_code, func.count(SettlementStatement.id),
               func.sum(SettlementStatement.redemptions), func.sum(SettlementStatement.points),
               func.sum(SettlementStatement.amount_fen), func.sum(paid))
        .join(Merchant, Merchant.id == SettlementStatement.merchant_id)
        .where(SettlementStatement.region_code.in_(codes), SettlementStatement.period.in_(period.months()))
        .group_by(Merchant.id, Merchant.name, Merchant.region_code).order_by(Merchant.id)).all()
    merchants = [{"merchant_id": mid, "name": name, "region": region, "statements": int(n),
                  "redemptions": int(redeemed), "points": int(points_), "amount_fen": int(fen),
                  "paid_fen": int(paid_fen), "unpaid_fen": int(fen) - int(paid_fen)}
                 for mid, name, region, n, redeemed, points_, fen, paid_fen in rows]
    totals = {key: sum(m[key] for m in merchants)
              for key in ("statements", "redemptions", "points", "amount_fen", "paid_fen", "unpaid_fen")}
    for row in (totals, *merchants):
        row["amount_yuan"], row["unpaid_yuan"] = yuan(row["amount_fen"]), yuan(row["unpaid_fen"])
    return {**totals, "by_merchant": merchants}


def donations(w: Window) -> dict[str, Any]:
    base = (select().select_from(Donation)
            .join(WelfareProject, WelfareProject.id == Donation.project_id)
            .join(JournalEntry, JournalEntry.id == Donation.entry_id)
            .where(WelfareProject.region_code.in_(w.codes), during(JournalEntry.posted_at, w)))
    rows = db.session.execute(base.add_columns(
        WelfareProject.id, WelfareProject.title, WelfareProject.region_code, func.count(Donation.id),
        func.count(func.distinct(Donation.resident_id)), func.sum(Donation.points))
        .group_by(WelfareProject.id, WelfareProject.title, WelfareProject.region_code)
        .order_by(WelfareProject.id)).all()
    projects = [{"project_id": pid, "title": title, "region": region, "donations": int(n), "donors": int(donors),
                 "points": int(points_)} for pid, title, region, n, donors, points_ in rows]
    donors = db.session.scalar(base.add_columns(func.count(func.distinct(Donation.resident_id))))
    return {"donations": sum(p["donations"] for p in projects), "donors": int(donors or 0),
            "points": sum(p["points"] for p in projects), "by_project": projects}


def market(w: Window) -> dict[str, Any]:
    pooled = (MarketBatch.status != "discarded") & during(MarketBatch.drafted_at, w)
    issued = (MarketBatch.issued_at.is_not(None)) & during(MarketBatch.issued_at, w)

    def when(condition: Any, value: Any) -> Any:
        return func.coalesce(func.sum(case((condition, value), else_=0)), 0)

    batches = db.session.execute(
        select(when(pooled, 1), when(pooled, MarketBatch.tonnes), when(pooled, MarketBatch.pooled_grams),
               when(issued, 1), when(issued, MarketBatch.tonnes))
        .where(MarketBatch.region_code.in_(w.codes))).one()
    used = {kind: (int(n), int(tonnes), int(fen or 0)) for kind, n, tonnes, fen in db.session.execute(
        select(MarketTransaction.kind, func.count(MarketTransaction.id), func.sum(MarketTransaction.tonnes),
               func.sum(MarketTransaction.amount_fen))
        .join(MarketBatch, MarketBatch.id == MarketTransaction.batch_id)
        .where(MarketBatch.region_code.in_(w.codes), during(MarketTransaction.created_at, w))
        .group_by(MarketTransaction.kind))}
    sold, retired = used.get("sale", (0, 0, 0)), used.get("retirement", (0, 0, 0))
    return {"pooled": {"batches": int(batches[0]), "tonnes": int(batches[1]), "grams": int(batches[2])},
            "issued": {"batches": int(batches[3]), "tonnes": int(batches[4])},
            "sold": {"transactions": sold[0], "tonnes": sold[1], "amount_fen": sold[2], "amount_yuan": yuan(sold[2])},
            "retired": {"transactions": retired[0], "tonnes": retired[1]}}


# --- the report ------------------------------------------------------------------------------------


def build(region: Any, *, period: str | None = None, first: str | None = None, last: str | None = None,
          actor: User | None, now: datetime | None = None, location: str = "query") -> dict[str, Any]:
    """The report of ``region`` (and below) for a period; ``actor`` None: the platform itself (CLI)."""
    now = now or utcnow()
    found = region_of(region, actor, location=location)
    span = periods.parse(period, first, last, today=stats.china_day(now), location=location)
    w = window_for(found, span, now)
    return {
        "region": found.code, "region_name": found.name, "region_name_en": found.name_en, "regions": w.codes,
        "period": span.label, "from": span.first.isoformat(), "to": span.last.isoformat(),
        "timezone": "Asia/Shanghai", "complete": span.end <= now, "as_of": w.until.isoformat(),
        "activities": activities(w), "participants": participants(w), "reductions": reductions(w),
        "points": points(w), "settlements": settlements(w.codes, span), "donations": donations(w),
        "market": market(w),
    }


# --- CSV -------------------------------------------------------------------------------------------

CSV_HEADER = ("region", "period", "section", "item", "label", "figure", "value")
# In a list, the key that names each row, and the one that labels it for people.
_ITEM_KEYS = {"by_type": ("type", None), "by_scenario": ("scenario", None), "by_methodology": ("methodology", None),
              "by_merchant": ("merchant_id", "name"), "by_project": ("project_id", "title")}


def rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every figure of the report as a row ``(section, item, label, figure, value)``: a section's own
    figures have item ``total``; a breakdown's rows are named ``<list>:<key>`` (``by_type:bus_ride``,
    ``by_merchant:12``), a nested group by its name (``by_status``, ``outstanding_at_end``)."""
    found: list[tuple[Any, ...]] = []
    sections = ("activities", "participants", "reductions", "points", "settlements", "donations", "market")
    for section in sections:
        for key, value in report[section].items():
            if isinstance(value, list):
                id_key, label_key = _ITEM_KEYS[key]
                for entry in value:
                    item, label = f"{key}:{entry[id_key]}", entry.get(label_key, "") if label_key else ""
                    found += [(section, item, label, name, v) for name, v in entry.items()
                              if name not in (id_key, label_key)]
            elif isinstance(value, dict):
                found += [(section, key, "", name, v) for name, v in value.items()]
            else:
                found.append((section, "total", "", key, value))
    return found


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet would run it as a formula
    return value


def to_csv(report: dict[str, Any]) -> str:
    """RFC 4180, UTF-8, CRLF: the header ``CSV_HEADER``, then one row per figure (see ``rows``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for section, item, label, figure, value in rows(report):
        writer.writerow((report["region"], report["period"], section, item, _text(label), figure, _text(value)))
    return buffer.getvalue()
