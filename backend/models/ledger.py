"""The double-entry points ledger (DESIGN §7).

Accounts hold points; a journal entry moves them with postings that sum to zero. Entries and
postings are append-only; a correction is a reversing entry. The database keeps the balance of
every account that must never go below zero (wallets, holds, merchants, projects) from the
postings themselves, so a posting that would overdraw one is refused by a CHECK, whatever wrote it.
Points are issued as lots with an expiry date and spent oldest-expiring first.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base, BigId, UTCDateTime, statement_checked, utcnow

WALLET_KINDS = ("resident_wallet", "household_wallet", "enterprise_wallet")
# Accounts whose balance is a sum of postings, not kept on the row: they may go negative
# (issuance is where points come from) and many writers touch them at once.
UNTRACKED_KINDS = ("issuance", "expired", "reversed")
ACCOUNT_KINDS = (*WALLET_KINDS, "merchant_settlement", "welfare_project", "redemption_holds", *UNTRACKED_KINDS)
ENTRY_KINDS = ("credit", "expire", "reverse", "spend", "release", "settle", "donate", "adjust")

_kinds = ", ".join(f"'{k}'" for k in ACCOUNT_KINDS)
_entry_kinds = ", ".join(f"'{k}'" for k in ENTRY_KINDS)


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_kinds})", name="kind"),
        CheckConstraint("balance >= 0", name="balance_non_negative"),
        CheckConstraint("(kind = 'resident_wallet') = (resident_id IS NOT NULL)", name="resident_owner"),
        CheckConstraint("(kind = 'household_wallet') = (household_id IS NOT NULL)", name="household_owner"),
        CheckConstraint("(kind = 'enterprise_wallet') = (enterprise_id IS NOT NULL)", name="enterprise_owner"),
        UniqueConstraint("kind", "resident_id"),
        UniqueConstraint("kind", "household_id"),
        UniqueConstraint("kind", "enterprise_id"),
        UniqueConstraint("kind", "merchant_id"),
        UniqueConstraint("kind", "region_code"),
        Index("uq_ledger_accounts_project", "kind", "project_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    resident_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"))
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"))
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"))  # settlement and holds
    project_id: Mapped[int | None] = mapped_column(ForeignKey("welfare_projects.id"))
    # System accounts (issuance, expired, reversed, holds) are per region.
    region_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"))
    # Kept by the database from postings for tracked kinds; always 0 for untracked kinds.
    balance: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JournalEntry(Base):
    __tablename__ = "journal_entries"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_entry_kinds})", name="kind"),
        Index("ix_journal_entries_reduction", "reduction_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # A retry with the same key finds the entry already there: nothing is posted twice.
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # DESIGN invariant 4: the rule set in force (id@version and sha256) for every posting.
    rule_version_id: Mapped[int] = mapped_column(statement_checked("policy_versions.id"))
    rule_sha256: Mapped[str] = mapped_column(String(64))
    reduction_id: Mapped[int | None] = mapped_column(statement_checked("reductions.id"))
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), unique=True)
    memo: Mapped[str] = mapped_column(String(200), default="")
    # For credits: the exchange rules' trace (rate, caps and their usage, campaign, points).
    trace: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))  # no trace: SQL NULL
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # PostgreSQL fills it with txid_current(): postings may only join an entry of their own transaction.
    created_txid: Mapped[int | None] = mapped_column(BigInteger)


class Posting(Base):
    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_postings_account", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(statement_checked("journal_entries.id"), index=True)
    account_id: Mapped[int] = mapped_column(statement_checked("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)


class Lot(Base):
    """Points issued together, spent or expired together: what is left of each is exact."""

    __tablename__ = "lots"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
        Index("ix_lots_open", "account_id", "expires_on", "id",
              postgresql_where=text("remaining > 0"), sqlite_where=text("remaining > 0")),
        Index("ix_lots_expiring", "expires_on", postgresql_where=text("remaining > 0"),
              sqlite_where=text("remaining > 0")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(statement_checked("ledger_accounts.id"))
    entry_id: Mapped[int] = mapped_column(statement_checked("journal_entries.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    # The last day the points can be spent; NULL: they never expire.
    expires_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LotAllocation(Base):
    """Which lots an entry took points from (positive) or gave them back to (negative)."""

    __tablename__ = "lot_allocations"
    __table_args__ = (CheckConstraint("amount <> 0", name="amount_not_zero"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("lots.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class Clawback(Base):
    """Points of a reversed credit that were already spent: future credits repay them first."""

    __tablename__ = "clawbacks"
    __table_args__ = (
        CheckConstraint("shortfall > 0", name="shortfall_positive"),
        CheckConstraint("outstanding >= 0 AND outstanding <= shortfall", name="outstanding_within_shortfall"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    reduction_id: Mapped[int] = mapped_column(ForeignKey("reductions.id"), unique=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    shortfall: Mapped[int] = mapped_column(BigInteger)
    outstanding: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QueuedCredit(Base):
    """Points earned while the region's issuance budget was exhausted: issued first next period."""

    __tablename__ = "queued_credits"
    __table_args__ = (
        CheckConstraint("points > 0", name="points_positive"),
        # What still waits for an account (every balance read shows it).
        Index("ix_queued_credits_waiting", "account_id", postgresql_where=text("released_entry_id IS NULL"),
              sqlite_where=text("released_entry_id IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reduction_id: Mapped[int] = mapped_column(ForeignKey("reductions.id"), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    issuance_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    rule_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    period_key: Mapped[str] = mapped_column(String(16))
    trace: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"))


class BudgetCounter(Base):
    """Points used of a budget (a region's issuance per period, a campaign's bonus pool)."""

    __tablename__ = "budget_counters"
    __table_args__ = (CheckConstraint("used >= 0 AND used <= points_limit", name="within_limit"),)

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    points_limit: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


def check_balanced_flush(session: Any, _context: Any, _instances: Any) -> None:
    """Refuse to flush new postings whose entries do not balance (SQLite cannot defer a trigger).

    Entries written through the ORM must arrive with all their postings in the same flush. The
    bulk path (``services.ledger.post``) runs the same check before its own statements.
    """
    totals: dict[Any, list[int]] = {}
    for obj in session.new:
        if isinstance(obj, Posting):
            key = obj.entry_id if obj.entry_id is not None else id(getattr(obj, "entry", None))
            totals.setdefault(key, []).append(obj.amount)
    for amounts in totals.values():
        if len(amounts) < 2 or sum(amounts) != 0 or 0 in amounts:
            raise ValueError(f"a journal entry's postings must be two or more and sum to zero, got {amounts}")
