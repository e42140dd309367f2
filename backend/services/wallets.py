"""What residents and households see of their points: balance, ledger, reductions, expiry forecast."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import BigInteger, TextClause, bindparam, func, select, text

from backend.db import PREPARE, db, utcnow
from backend.models import (
    JournalEntry,
    LedgerAccount,
    Lot,
    PolicyVersion,
    Posting,
    Reduction,
    ReductionEvaluation,
)
from backend.services.ledger import OWNER_COLUMN, china_day
from backend.services.pagination import keyset_page

TYPE_LABELS = {
    "bus_ride": "公交出行 bus ride", "metro_ride": "地铁出行 metro ride", "bike_ride": "骑行 cycling",
    "walk": "步行 walking", "carpool": "拼车 carpool", "recycling": "回收 recycling",
    "household_electricity": "家庭节电 household electricity saving", "rooftop_pv": "屋顶光伏 rooftop solar",
    "quiz": "低碳答题 low-carbon quiz",
}


def label(activity_type: str) -> str:
    return TYPE_LABELS.get(activity_type, activity_type)


def wallet_id(kind: str, owner_id: int) -> int | None:
    column = getattr(LedgerAccount, OWNER_COLUMN[kind])
    return db.session.scalar(select(LedgerAccount.id).where(LedgerAccount.kind == kind, column == owner_id))


def certified_grams(kind: str, owner_id: int) -> int:
    """Lifetime certified grams of a resident's or household's activities (reversed ones excluded)."""
    owner = Reduction.household_id == owner_id if kind == "household_wallet" else Reduction.resident_id == owner_id
    return int(db.session.scalar(select(func.coalesce(func.sum(Reduction.grams), 0))
                                 .where(owner, Reduction.status == "certified")) or 0)


def _balance_statement(kind: str) -> TextClause:
    """Points, lifetime certified grams and queued points of one owner's wallet in one statement:
    ``/me/balance`` is the most frequent read there is. Every figure comes straight from the
    database; a missing wallet (nothing credited yet) reads as 0 points."""
    owner = OWNER_COLUMN[kind]  # the same column names the owner of a wallet and of a reduction
    # Constants only (a wallet kind and its owner column): the owner id is a bound parameter.
    wallet = f"SELECT {{}} FROM ledger_accounts WHERE kind = '{kind}' AND {owner} = :owner"  # noqa: S608
    return text(
        f"SELECT ({wallet.format('balance')}),"  # noqa: S608
        f" (SELECT coalesce(sum(grams), 0) FROM reductions WHERE {owner} = :owner AND status = 'certified'),"
        " (SELECT coalesce(sum(points), 0) FROM queued_credits"
        f"  WHERE released_entry_id IS NULL AND account_id = ({wallet.format('id')}))"
    ).bindparams(bindparam("owner", type_=BigInteger)).execution_options(**{PREPARE: True})


_BALANCE = {kind: _balance_statement(kind) for kind in ("resident_wallet", "household_wallet")}


def balance(kind: str, owner_id: int) -> dict[str, int]:
    """Points in the wallet and lifetime certified grams (the activities behind them)."""
    points, grams, queued = db.session.execute(_BALANCE[kind], {"owner": owner_id}).one()
    return {"points": int(points or 0), "reduction_g": int(grams or 0), "queued_points": int(queued or 0)}


def _reason(kind: str, memo: str, activity_type: str | None, rules_ref: str) -> str:
    if kind == "credit":
        return f"Points for {label(activity_type or memo)} ({rules_ref})"
    if kind == "release":
        return f"Points for {label(activity_type or '')}, released after waiting for the issuance budget"
    if kind == "expire":
        return f"Points expired ({memo})"
    if kind == "reverse":
        return f"Credit for {label(activity_type or '')} reversed by an auditor: {memo}"
    return memo or kind


def ledger_page(kind: str, owner_id: int, *, before: int | None,
                limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """An owner's wallet postings, newest first: one query, the wallet found inside it, and only
    the columns shown (no entry's trace, no ORM objects), since every app open reads it."""
    wallet = select(LedgerAccount.id).where(LedgerAccount.kind == kind,
                                            getattr(LedgerAccount, OWNER_COLUMN[kind]) == owner_id)
    query = (select(Posting.id, Posting.amount, JournalEntry.kind, JournalEntry.posted_at, JournalEntry.memo,
                    JournalEntry.rule_sha256, JournalEntry.reduction_id, Reduction.activity_type,
                    PolicyVersion.subject, PolicyVersion.version)
             .join(JournalEntry, JournalEntry.id == Posting.entry_id)
             .join(PolicyVersion, PolicyVersion.id == JournalEntry.rule_version_id)
             .outerjoin(Reduction, Reduction.id == JournalEntry.reduction_id)
             .where(Posting.account_id == wallet.scalar_subquery())
             .execution_options(**{PREPARE: True}))
    rows, next_key = keyset_page(query, Posting.id, before=before, limit=limit)
    return [{
        "id": posting_id, "amount": amount, "kind": entry_kind, "posted_at": posted_at,
        "reason": _reason(entry_kind, memo, activity_type, f"{subject}@{version}"),
        "rules": f"{subject}@{version}", "rules_sha256": sha256, "reduction_id": reduction_id,
    } for posting_id, amount, entry_kind, posted_at, memo, sha256, reduction_id, activity_type, subject, version
        in rows], next_key


def reductions_page(resident_id: int, *, before: int | None, limit: int) -> tuple[list[dict[str, Any]], int | None]:
    query = (select(Reduction, ReductionEvaluation)
             .outerjoin(ReductionEvaluation, ReductionEvaluation.reduction_id == Reduction.id)
             .where(Reduction.resident_id == resident_id))
    pairs, next_key = keyset_page(query, Reduction.id, before=before, limit=limit)
    rules = {v.id: v.ref for v in db.session.scalars(
        select(PolicyVersion).where(PolicyVersion.id.in_({e.rules_version_id for _, e in pairs if e})))}
    return [{
        "id": r.id, "activity_id": r.activity_id, "activity_type": r.activity_type, "label": label(r.activity_type),
        "occurred_at": r.occurred_at, "region": r.region_code, "grams": r.grams, "status": r.status,
        "methodology": r.methodology_ref, "factors_sha256": r.factors_sha256, "trace": r.trace,
        "points": e.points if e else None, "capped_grams": e.capped_grams if e else None,
        "campaign": e.campaign if e else None, "rules": rules.get(e.rules_version_id) if e else None,
        "credited_to": "household" if r.household_id is not None else "resident",
    } for r, e in pairs], next_key


def expiring(account_id: int | None) -> dict[str, Any]:
    """Points that expire within 30 and 90 days, and the next few lots to go."""
    if account_id is None:
        return {"within_30_days": 0, "within_90_days": 0, "next": []}
    today = china_day(utcnow())

    def within(days: int) -> int:
        return int(db.session.scalar(select(func.coalesce(func.sum(Lot.remaining), 0)).where(
            Lot.account_id == account_id, Lot.remaining > 0, Lot.expires_on <= today + timedelta(days=days))) or 0)

    upcoming = db.session.execute(
        select(Lot.expires_on, func.sum(Lot.remaining)).where(Lot.account_id == account_id, Lot.remaining > 0,
                                                               Lot.expires_on.is_not(None))
        .group_by(Lot.expires_on).order_by(Lot.expires_on).limit(5)).all()
    return {"within_30_days": within(30), "within_90_days": within(90),
            "next": [{"expires_on": day, "points": int(points)} for day, points in upcoming]}
