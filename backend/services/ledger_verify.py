"""`carbon-points ledger verify`: every ledger invariant, checked over the whole ledger, set-based."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text

from backend.db import db
from backend.models import (
    JournalEntry,
    LedgerAccount,
    Lot,
    Posting,
    QueuedCredit,
    Redemption,
    ReductionEvaluation,
)
from backend.models.ledger import UNTRACKED_KINDS, WALLET_KINDS

SAMPLE = 5


@dataclass
class VerifyReport:
    breaches: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.breaches

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "breaches": self.breaches, "totals": self.totals}


def _ids(rows: list[Any]) -> str:
    shown = ", ".join(str(r[0]) for r in rows[:SAMPLE])
    return shown + (f" and {len(rows) - SAMPLE} more" if len(rows) > SAMPLE else "")


def verify() -> VerifyReport:
    report = VerifyReport()
    s = db.session

    unbalanced = s.execute(select(Posting.entry_id, func.sum(Posting.amount), func.count())
                           .group_by(Posting.entry_id)
                           .having((func.sum(Posting.amount) != 0) | (func.count() < 2))).all()
    if unbalanced:
        report.breaches.append(f"entries that do not sum to zero or have fewer than two postings: {_ids(unbalanced)}")
    empty = s.execute(select(JournalEntry.id).where(~select(Posting.id).where(Posting.entry_id == JournalEntry.id)
                                                    .exists())).all()
    if empty:
        report.breaches.append(f"entries without postings: {_ids(empty)}")

    sums = select(Posting.account_id, func.sum(Posting.amount).label("total")).group_by(Posting.account_id).subquery()
    drift = s.execute(select(LedgerAccount.id, LedgerAccount.balance, func.coalesce(sums.c.total, 0))
                      .outerjoin(sums, sums.c.account_id == LedgerAccount.id)
                      .where(LedgerAccount.kind.not_in(UNTRACKED_KINDS),
                             LedgerAccount.balance != func.coalesce(sums.c.total, 0))).all()
    if drift:
        report.breaches.append(f"accounts whose balance differs from their postings: {_ids(drift)}")
    negative = s.execute(select(LedgerAccount.id).where(LedgerAccount.balance < 0)).all()
    if negative:
        report.breaches.append(f"accounts below zero: {_ids(negative)}")
    system_nonzero = s.execute(select(LedgerAccount.id).where(LedgerAccount.kind.in_(UNTRACKED_KINDS),
                                                              LedgerAccount.balance != 0)).all()
    if system_nonzero:
        report.breaches.append(f"system accounts with a stored balance: {_ids(system_nonzero)}")

    lot_sums = select(Lot.account_id, func.sum(Lot.remaining).label("left")).group_by(Lot.account_id).subquery()
    lots_off = s.execute(select(LedgerAccount.id).outerjoin(lot_sums, lot_sums.c.account_id == LedgerAccount.id)
                         .where(LedgerAccount.kind.in_(WALLET_KINDS),
                                LedgerAccount.balance != func.coalesce(lot_sums.c.left, 0))).all()
    if lots_off:
        report.breaches.append(f"wallets whose lots do not add up to their balance: {_ids(lots_off)}")
    bad_lots = s.execute(select(Lot.id).where((Lot.remaining < 0) | (Lot.remaining > Lot.amount))).all()
    if bad_lots:
        report.breaches.append(f"lots with remaining outside 0..amount: {_ids(bad_lots)}")

    by_kind = {kind: int(total) for kind, total in s.execute(
        select(LedgerAccount.kind, func.coalesce(func.sum(Posting.amount), 0))
        .join(Posting, Posting.account_id == LedgerAccount.id).group_by(LedgerAccount.kind))}
    issued = -by_kind.get("issuance", 0)
    held = sum(by_kind.get(k, 0) for k in (*WALLET_KINDS, "redemption_holds"))
    spent = sum(by_kind.get(k, 0) for k in ("merchant_settlement", "welfare_project"))
    expired, reversed_ = by_kind.get("expired", 0), by_kind.get("reversed", 0)
    report.totals = {"issued": issued, "held": held, "spent": spent, "expired": expired, "reversed": reversed_,
                     "entries": int(s.scalar(select(func.count()).select_from(JournalEntry)) or 0),
                     "queued": int(s.scalar(select(func.coalesce(func.sum(QueuedCredit.points), 0))
                                            .where(QueuedCredit.released_entry_id.is_(None))) or 0)}
    if issued != held + spent + expired + reversed_:
        report.breaches.append(f"issued {issued} ≠ held {held} + spent {spent} + expired {expired} "
                               f"+ reversed {reversed_}")

    credit_sums = select(JournalEntry.reduction_id, func.sum(-Posting.amount).label("points")) \
        .join(Posting, Posting.entry_id == JournalEntry.id) \
        .join(LedgerAccount, LedgerAccount.id == Posting.account_id) \
        .where(JournalEntry.kind.in_(("credit", "release")), LedgerAccount.kind == "issuance") \
        .group_by(JournalEntry.reduction_id).subquery()
    mismatched = s.execute(select(ReductionEvaluation.reduction_id)
                           .join(credit_sums, credit_sums.c.reduction_id == ReductionEvaluation.reduction_id)
                           .where(credit_sums.c.points != ReductionEvaluation.points)).all()
    if mismatched:
        report.breaches.append(f"credits whose points differ from the reduction's evaluation: {_ids(mismatched)}")
    holds = select(Redemption.merchant_id, func.sum(Redemption.points).label("points")) \
        .where(Redemption.status == "reserved").group_by(Redemption.merchant_id).subquery()
    holds_off = s.execute(select(LedgerAccount.id).outerjoin(holds, holds.c.merchant_id == LedgerAccount.merchant_id)
                          .where(LedgerAccount.kind == "redemption_holds",
                                 LedgerAccount.balance != func.coalesce(holds.c.points, 0))).all()
    if holds_off:
        report.breaches.append(f"hold accounts that differ from their reserved redemptions: {_ids(holds_off)}")
    twice = s.execute(text("SELECT reduction_id FROM journal_entries WHERE kind IN ('credit', 'release') "
                           "AND reduction_id IS NOT NULL GROUP BY reduction_id HAVING count(*) > 1")).all()
    if twice:
        report.breaches.append(f"reductions credited more than once: {_ids(twice)}")
    return report
