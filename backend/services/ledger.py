"""The points ledger: credit, spend, expire, reverse, verify (DESIGN §7).

Writers lock the wallet rows they touch (``SELECT … FOR UPDATE``, in id order) before reading a
balance or a cap's usage; the database refuses an overdraft, an unbalanced entry and any edit of
a posted entry. Bulk paths (credit, expire) work set-based: one statement per table per batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Date,
    Integer,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from backend.db import UTCDateTime, db, utcnow
from backend.errors import Conflict, NotFound, field_error
from backend.methodology import CHINA_STANDARD_TIME, start_of_day
from backend.models import (
    Activity,
    BudgetCounter,
    Clawback,
    JournalEntry,
    LedgerAccount,
    Lot,
    LotAllocation,
    PolicyVersion,
    Posting,
    QueuedCredit,
    Reduction,
    ReductionEvaluation,
    User,
)
from backend.models.ledger import UNTRACKED_KINDS
from backend.observability import metrics
from backend.rules.evaluate import Claim, Evaluation, Exchange, Tally
from backend.rules.schema import expiry_date
from backend.services import audit, bulk, governance, id_cache, market, rules, version_cache
from backend.services.regions import ancestors
from backend.services.scope import require_in_scope
from backend.signals import reductions_changed


def china_day(moment: datetime) -> date:
    return moment.astimezone(CHINA_STANDARD_TIME).date()


def period_key(day: date, period: str) -> str:
    """The budget period (month, quarter or year) a China day falls in."""
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    if period == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    return str(day.year)


def among(column: Any, values: Iterable[Any]) -> Any:
    """``column IN values``: on PostgreSQL one array parameter (``= ANY``), not one per value, which
    keeps statements of bulk batches cheap to build and to parse."""
    values = list(values)
    if bulk.on_postgres():
        element = column.type if not isinstance(column.type, Integer) else BigInteger()
        return column == any_(bindparam(None, values, type_=ARRAY(element)))
    return column.in_(values)


def _insert(table: Any) -> Any:
    return (postgresql.insert if bulk.on_postgres() else sqlite.insert)(table)


# --- accounts ------------------------------------------------------------------------------------

OWNER_COLUMN = {"resident_wallet": "resident_id", "household_wallet": "household_id",
                "enterprise_wallet": "enterprise_id", "merchant_settlement": "merchant_id",
                # Each merchant has its own hold account, so reservations at different shops never
                # wait on one row; each welfare project has its own account.
                "redemption_holds": "merchant_id", "welfare_project": "project_id"}


def accounts_for(kind: str, owners: Iterable[Any]) -> dict[Any, int]:
    """Account ids of ``kind`` for owners (resident/household/enterprise/merchant ids, or region codes
    for system accounts), creating the missing ones in one statement."""
    wanted = sorted(set(owners), key=str)
    if not wanted:
        return {}
    known = {owner: account_id for (_, owner), account_id in id_cache.get_many([(kind, o) for o in wanted]).items()}
    if len(known) == len(wanted):
        return known
    column_name = OWNER_COLUMN.get(kind, "region_code")
    column = getattr(LedgerAccount, column_name)
    unknown = [owner for owner in wanted if owner not in known]

    def existing() -> dict[Any, int]:
        query = select(column, LedgerAccount.id).where(LedgerAccount.kind == kind, among(column, unknown))
        return {owner: account_id for owner, account_id in db.session.execute(query).all()}

    found = existing()
    missing = [owner for owner in unknown if owner not in found]
    if missing:
        _create_accounts(kind, column_name, missing)
        found = existing()
    id_cache.stage({(kind, owner): account_id for owner, account_id in found.items()})
    return {**known, **found}


def _create_accounts(kind: str, column_name: str, owners: list[Any]) -> None:
    """Accounts of ``kind`` for ``owners`` in one statement; one a concurrent writer made first stays."""
    if bulk.on_postgres():
        # INSERT … SELECT unnest: an executemany costs a round trip per account (a first batch of
        # 1,000 new wallets spent longer creating them than crediting them).
        rows = bulk.rows_table("o", (("owner", getattr(LedgerAccount, column_name).type),), [(o,) for o in owners])
        db.session.execute(postgresql.insert(LedgerAccount.__table__).from_select(
            ["kind", column_name, "balance", "created_at"],
            select(literal(kind), rows.c.owner, literal(0), literal(utcnow(), UTCDateTime())),
        ).on_conflict_do_nothing())
        return
    db.session.execute(_insert(LedgerAccount.__table__).on_conflict_do_nothing(),
                       [{"kind": kind, column_name: owner, "balance": 0, "created_at": utcnow()} for owner in owners])


def wallet_of_resident(resident_id: int) -> int:
    return accounts_for("resident_wallet", [resident_id])[resident_id]


def lock_accounts(account_ids: Iterable[int]) -> None:
    """Row locks in id order (so two writers never deadlock); SQLite's BEGIN IMMEDIATE already serialises."""
    ids = sorted(set(account_ids))
    if ids:
        db.session.execute(select(LedgerAccount.id).where(among(LedgerAccount.id, ids))
                           .order_by(LedgerAccount.id).with_for_update())


def balance_of(account_id: int) -> int:
    account = db.session.get(LedgerAccount, account_id, populate_existing=True)
    if account is None:
        raise NotFound(f"No account {account_id}.")
    if account.kind in UNTRACKED_KINDS:
        return int(db.session.scalar(select(func.coalesce(func.sum(Posting.amount), 0))
                                     .where(Posting.account_id == account_id)))
    return account.balance


# --- posting ---------------------------------------------------------------------------------------


@dataclass
class EntryDraft:
    key: str
    kind: str
    rule_version: PolicyVersion
    postings: list[tuple[int, int]]  # (account id, signed amount)
    reduction_id: int | None = None
    reverses_id: int | None = None
    memo: str = ""
    actor_id: int | None = None
    lot: tuple[int, int, date | None] | None = None  # (account id, amount, expires_on) of a new lot
    trace: dict[str, str] | None = None
    allocations: list[tuple[int, int]] = field(default_factory=list)  # (lot id, amount)


def _check_balanced(drafts: Sequence[EntryDraft]) -> None:
    """The guard in front of the database's own (which SQLite cannot defer)."""
    for draft in drafts:
        amounts = [a for _, a in draft.postings]
        if len(amounts) < 2 or sum(amounts) != 0 or 0 in amounts:
            raise ValueError(f"entry {draft.key} does not balance: {draft.postings}")


# Below this many entries, one INSERT statement with data-modifying CTEs beats COPY's round trips.
COPY_FROM = 64


def post(drafts: Sequence[EntryDraft]) -> dict[str, int]:
    """Write entries, their postings, lots and lot allocations, and apply the allocations to their
    lots (an allocation is what an entry took from a lot; negative, what it gave back).

    On PostgreSQL a bulk batch goes in by COPY with ids taken from the sequences first, so it writes
    at a good share of the raw COPY rate while every trigger still runs; a few entries (a resident's
    redemption) go in as one statement, one round trip.
    """
    if not drafts:
        return {}
    _check_balanced(drafts)
    if bulk.on_postgres():
        return _post_by_copy(drafts) if len(drafts) >= COPY_FROM else _post_in_one_statement(drafts)
    now = utcnow()
    entry_rows = [{
        "idempotency_key": d.key, "kind": d.kind, "posted_at": now, "rule_version_id": d.rule_version.id,
        "rule_sha256": d.rule_version.payload_sha256, "reduction_id": d.reduction_id, "reverses_id": d.reverses_id,
        "memo": d.memo[:200], "actor_user_id": d.actor_id, "trace": d.trace,
    } for d in drafts]
    table = JournalEntry.__table__
    returned = db.session.execute(
        insert(table).returning(table.c.id, table.c.idempotency_key), entry_rows)  # ids found by key: any order
    ids = {key: entry_id for entry_id, key in returned}
    db.session.execute(insert(Posting.__table__), [
        {"entry_id": ids[d.key], "account_id": account, "amount": amount}
        for d in drafts for account, amount in d.postings
    ])
    lots = [{"account_id": d.lot[0], "entry_id": ids[d.key], "amount": d.lot[1], "remaining": d.lot[1],
             "expires_on": d.lot[2], "created_at": now} for d in drafts if d.lot is not None and d.lot[1] > 0]
    if lots:
        db.session.execute(insert(Lot.__table__), lots)
    allocations = [{"entry_id": ids[d.key], "lot_id": lot_id, "amount": amount}
                   for d in drafts for lot_id, amount in d.allocations]
    if allocations:
        db.session.execute(insert(LotAllocation.__table__), allocations)
        _take_from_lots([(a["lot_id"], a["amount"]) for a in allocations])
    return ids


def _post_by_copy(drafts: Sequence[EntryDraft]) -> dict[str, int]:
    now = utcnow()
    entries = JournalEntry.__table__
    ids = dict(zip((d.key for d in drafts), bulk.next_ids(entries, len(drafts)), strict=True))
    bulk.copy(entries, ("id", "idempotency_key", "kind", "posted_at", "rule_version_id", "rule_sha256", "reduction_id",
                        "reverses_id", "memo", "actor_user_id", "trace"),
              ((ids[d.key], d.key, d.kind, now, d.rule_version.id, d.rule_version.payload_sha256, d.reduction_id,
                d.reverses_id, d.memo[:200], d.actor_id, d.trace) for d in drafts))
    bulk.copy(Posting.__table__, ("entry_id", "account_id", "amount"),
              ((ids[d.key], account, amount) for d in drafts for account, amount in d.postings))
    lots = [(d.lot[0], ids[d.key], d.lot[1], d.lot[1], d.lot[2], now) for d in drafts if d.lot and d.lot[1] > 0]
    if lots:
        bulk.copy(Lot.__table__, ("account_id", "entry_id", "amount", "remaining", "expires_on", "created_at"), lots)
    allocations = [(ids[d.key], lot_id, amount) for d in drafts for lot_id, amount in d.allocations]
    if allocations:
        bulk.copy(LotAllocation.__table__, ("entry_id", "lot_id", "amount"), allocations)
        _take_from_lots([(lot_id, amount) for _, lot_id, amount in allocations])
    return ids


def _post_in_one_statement(drafts: Sequence[EntryDraft]) -> dict[str, int]:
    """Entries, postings, lots and allocations in one INSERT … RETURNING with data-modifying CTEs:
    the statement-level triggers (balances, references) still run, once, at its end."""
    params: dict[str, Any] = {
        "now": utcnow(), "key": [d.key for d in drafts], "kind": [d.kind for d in drafts],
        "rv": [d.rule_version.id for d in drafts], "sha": [d.rule_version.payload_sha256 for d in drafts],
        "red": [d.reduction_id for d in drafts], "rev": [d.reverses_id for d in drafts],
        "memo": [d.memo[:200] for d in drafts], "actor": [d.actor_id for d in drafts],
        "trace": [None if d.trace is None else Json(d.trace) for d in drafts],
        "p_key": [d.key for d in drafts for _ in d.postings],
        "p_account": [account for d in drafts for account, _ in d.postings],
        "p_amount": [amount for d in drafts for _, amount in d.postings],
    }
    parts = [_ONE_STATEMENT_ENTRIES, _ONE_STATEMENT_POSTINGS]
    lots = [(d.key, *d.lot) for d in drafts if d.lot is not None and d.lot[1] > 0]
    if lots:
        parts.append(_ONE_STATEMENT_LOTS)
        params.update(l_key=[k for k, *_ in lots], l_account=[a for _, a, _, _ in lots],
                      l_amount=[n for *_, n, _ in lots], l_expires=[e for *_, e in lots])
    allocations = [(d.key, lot_id, amount) for d in drafts for lot_id, amount in d.allocations]
    if allocations:
        parts.append(_ONE_STATEMENT_ALLOCATIONS)
        params.update(a_key=[k for k, _, _ in allocations], a_lot=[lot for _, lot, _ in allocations],
                      a_amount=[n for _, _, n in allocations])
    sql = "WITH " + ",\n".join(parts) + "\nSELECT id, idempotency_key FROM e"
    rows = db.session.connection().exec_driver_sql(sql, params)
    return {key: entry_id for entry_id, key in rows}


_ONE_STATEMENT_ENTRIES = """e AS (
    INSERT INTO journal_entries (idempotency_key, kind, posted_at, rule_version_id, rule_sha256, reduction_id,
                                 reverses_id, memo, actor_user_id, trace)
    SELECT key, kind, %(now)s, rv, sha, red, rev, memo, actor, trace
    FROM unnest(%(key)s::varchar[], %(kind)s::varchar[], %(rv)s::bigint[], %(sha)s::varchar[], %(red)s::bigint[],
                %(rev)s::bigint[], %(memo)s::varchar[], %(actor)s::bigint[], %(trace)s::json[])
         AS d(key, kind, rv, sha, red, rev, memo, actor, trace)
    RETURNING id, idempotency_key)"""
_ONE_STATEMENT_POSTINGS = """p AS (
    INSERT INTO postings (entry_id, account_id, amount)
    SELECT e.id, x.account, x.amount
    FROM unnest(%(p_key)s::varchar[], %(p_account)s::bigint[], %(p_amount)s::bigint[]) AS x(key, account, amount)
    JOIN e ON e.idempotency_key = x.key)"""
_ONE_STATEMENT_LOTS = """l AS (
    INSERT INTO lots (account_id, entry_id, amount, remaining, expires_on, created_at)
    SELECT x.account, e.id, x.amount, x.amount, x.expires, %(now)s
    FROM unnest(%(l_key)s::varchar[], %(l_account)s::bigint[], %(l_amount)s::bigint[], %(l_expires)s::date[])
         AS x(key, account, amount, expires)
    JOIN e ON e.idempotency_key = x.key)"""
_ONE_STATEMENT_ALLOCATIONS = """a AS (
    INSERT INTO lot_allocations (entry_id, lot_id, amount)
    SELECT e.id, x.lot, x.amount
    FROM unnest(%(a_key)s::varchar[], %(a_lot)s::bigint[], %(a_amount)s::bigint[]) AS x(key, lot, amount)
    JOIN e ON e.idempotency_key = x.key),
taken AS (
    UPDATE lots SET remaining = lots.remaining - x.amount
    FROM (SELECT lot, sum(amount) AS amount
          FROM unnest(%(a_lot)s::bigint[], %(a_amount)s::bigint[]) AS y(lot, amount) GROUP BY lot) AS x
    WHERE lots.id = x.lot)"""


def rules_in_force(region: str, at: datetime, *, index: governance.VersionIndex | None = None) -> PolicyVersion:
    """The exchange rules in force in ``region`` at ``at``; pass ``index`` when resolving many."""
    index = index or version_cache.index(rules.KIND, rules.SUBJECT)
    version = index.resolve(ancestors(region), at)
    if version is None:
        raise Conflict(f"No exchange rules are in force in {region}.", error="no_rules")
    return version


# --- credit ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreditResult:
    reduction_id: int
    status: str  # credited | queued | no_points | already_evaluated | no_rules | no_account
    points: int = 0
    capped_grams: int = 0
    entry_id: int | None = None


@dataclass(eq=False)  # identity: a batch holds each reduction once
class _Pending:
    reduction: Any
    account_id: int
    version: PolicyVersion
    claim: Claim
    evaluation: Evaluation | None = None


def credit(reduction_ids: Sequence[int]) -> list[CreditResult]:
    """Evaluate certified reductions with the rules in force when they happened and post their points.

    Set-based for batches of up to a few thousand. Caps use the account's stored usage plus this
    batch; campaign bonuses and the region's issuance budget are reserved under row locks; what
    does not fit the issuance budget is queued for the next period (first come, first served).
    """
    if not reduction_ids:
        return []
    rows = db.session.execute(
        select(Reduction.id, Reduction.activity_type, Reduction.grams, Reduction.occurred_at, Reduction.region_code,
               Reduction.resident_id, Reduction.household_id, Reduction.status, Reduction.activity_id)
        .where(among(Reduction.id, set(reduction_ids)))
    ).all()
    # Engagement rules need the evidence (a quiz's score); nothing else does, so load only that.
    quiz_activities = [r.activity_id for r in rows if r.activity_type == "quiz"]
    scores = dict(db.session.execute(select(Activity.id, Activity.data).where(among(Activity.id, quiz_activities)))
                  .all()) if quiz_activities else {}
    results: dict[int, CreditResult] = {}
    residents = {r.resident_id for r in rows if r.household_id is None and r.resident_id is not None}
    households = {r.household_id for r in rows if r.household_id is not None}
    resident_wallets = accounts_for("resident_wallet", residents)
    household_wallets = accounts_for("household_wallet", households)
    lock_accounts([*resident_wallets.values(), *household_wallets.values()])
    # Re-read under the locks: a concurrent batch may have evaluated some of these meanwhile.
    evaluated = set(db.session.scalars(select(ReductionEvaluation.reduction_id).where(
        among(ReductionEvaluation.reduction_id, [r.id for r in rows]))).all())
    index = version_cache.index(rules.KIND, rules.SUBJECT)
    chains: dict[str, list[str]] = {}
    pending: list[_Pending] = []
    for r in rows:
        if r.id in evaluated or r.status != "certified":
            results[r.id] = CreditResult(r.id, "already_evaluated")
            continue
        account = household_wallets.get(r.household_id) if r.household_id is not None else \
            resident_wallets.get(r.resident_id)
        if account is None:
            results[r.id] = CreditResult(r.id, "no_account")
            continue
        if r.region_code not in chains:
            chains[r.region_code] = ancestors(r.region_code)
        version = index.resolve(chains[r.region_code], r.occurred_at)
        if version is None:
            results[r.id] = CreditResult(r.id, "no_rules")
            continue
        score = scores[r.activity_id].get("score") if r.activity_type == "quiz" else None
        pending.append(_Pending(r, account, version, Claim(r.activity_type, r.grams, china_day(r.occurred_at), score)))
    pending.sort(key=lambda p: (p.reduction.occurred_at, p.reduction.id))
    ids = _post_credits(pending, locked=False)
    if ids is None:  # a concurrent batch used the budget room this one counted on: redo under the locks
        ids = _post_credits(pending, locked=True)
        if ids is None:  # under the locks the plan is exact: this cannot happen
            raise RuntimeError("budget reservation failed although the budget rows were locked")
    for p in pending:
        ev = p.evaluation
        assert ev is not None
        key = f"credit:{p.reduction.id}"
        status = "credited" if key in ids else ("queued" if ev.points > 0 else "no_points")
        results[p.reduction.id] = CreditResult(p.reduction.id, status, ev.points, ev.capped_grams, ids.get(key))
    return [results[r] for r in reduction_ids if r in results]


def _post_credits(pending: list[_Pending], *, locked: bool) -> dict[str, int] | None:
    """Evaluate, post, queue and record a batch in a savepoint, reserving budgets at the end.

    Optimistic (``locked=False``): budgets are planned from an unlocked read and reserved with a
    conditional UPDATE just before returning, so concurrent batches hold the budget row only
    briefly; None means the reservation failed and everything was rolled back. Pessimistic: the
    budget rows are locked first, so the plan is exact.
    """
    savepoint = db.session.begin_nested()
    _evaluate_all(pending)
    today = china_day(utcnow())  # one day for the whole batch: its budget period, expiry and queue
    credited, reservations = _plan_budgets(pending, today, locked=locked)
    ids = post(_credit_entries(credited, today))
    credited_now = set(credited)
    _queue([p for p in pending if p.evaluation and p.evaluation.points > 0 and p not in credited_now], today)
    _record_evaluations(pending)
    if not _reserve(reservations):
        savepoint.rollback()
        return None
    savepoint.commit()
    return ids


def _usage(pending: list[_Pending], month_types: set[str]) -> tuple[Sequence[Any], Sequence[Any]]:
    """What the batch's wallets already used where its claims fall: per (wallet, type, China day)
    on each day a wallet claims, and per (wallet, type, month) for types under a monthly cap. Only
    those windows are read, however long the history."""
    days = sorted({(p.account_id, p.claim.day) for p in pending})
    daily = _used_in("w", [(account, day, start_of_day(day), start_of_day(day + timedelta(days=1)))
                           for account, day in days])
    months = sorted({(p.account_id, p.claim.day.replace(day=1)) for p in pending
                     if p.claim.activity_type in month_types})
    monthly = _used_in("m", [(account, first, start_of_day(first),
                              start_of_day((first + timedelta(days=32)).replace(day=1)))
                             for account, first in months], types=month_types) if months else []
    return daily, monthly


def _used_in(name: str, windows: list[tuple[int, date, datetime, datetime]], *,
             types: set[str] | None = None) -> Sequence[Any]:
    """(wallet, type, window's day, creditable grams, engagement credits) summed over the
    evaluations inside each window (wallet, day, from, until)."""
    evaluation = ReductionEvaluation
    table = bulk.rows_table(name, (("account", BigInteger()), ("day", Date()), ("lo", UTCDateTime()),
                                   ("hi", UTCDateTime())), windows)
    conditions = [evaluation.account_id == table.c.account, evaluation.occurred_at >= table.c.lo,
                  evaluation.occurred_at < table.c.hi,
                  # The wallets and the whole span again, as plain conditions: they let the planner
                  # read by the (account_id, occurred_at) index whatever it guesses the windows hold.
                  among(evaluation.account_id, {w[0] for w in windows}),
                  evaluation.occurred_at >= min(w[2] for w in windows),
                  evaluation.occurred_at < max(w[3] for w in windows)]
    if types is not None:
        conditions.append(among(evaluation.activity_type, types))
    return db.session.execute(
        select(evaluation.account_id, evaluation.activity_type, table.c.day, func.sum(evaluation.creditable_grams),
               func.count().filter(evaluation.points > 0))
        .select_from(table).join(evaluation, and_(*conditions))
        .group_by(evaluation.account_id, evaluation.activity_type, table.c.day)).all()


def _evaluate_all(pending: list[_Pending]) -> None:
    """Evaluate the batch in time order, each claim seeing the usage before it: stored, then the batch's."""
    if not pending:
        return
    exchanges: dict[tuple[int, str], Exchange] = {}
    for p in pending:
        if (p.version.id, p.claim.activity_type) not in exchanges:
            exchanges[(p.version.id, p.claim.activity_type)] = Exchange(p.version.payload, p.claim.activity_type,
                                                                         p.version.ref)
    month_types = {t for exchange in exchanges.values() for _, cap in exchange.caps if cap["period"] == "month"
                   for t in cap["types"]}
    tally = Tally(lambda version_id, campaign: _counter_used(campaign_key(version_id, campaign)))
    used_daily, used_monthly = _usage(pending, month_types)
    for account_id, activity_type, day, creditable, earning in used_daily:
        tally.seed_day(account_id, activity_type, _as_date(day), int(creditable), int(earning))
    for account_id, activity_type, first, creditable, _ in used_monthly:
        tally.seed_month(account_id, activity_type, _as_date(first), int(creditable))
    for p in pending:
        p.evaluation = tally.evaluate(exchanges[(p.version.id, p.claim.activity_type)], p.version.id, p.account_id,
                                      p.claim)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)  # SQLite returns the text


def campaign_key(version_id: int, campaign: str) -> str:
    """The budget counter of a campaign of a rule version."""
    return f"campaign:{version_id}:{campaign}"


def _counter_used(key: str) -> int:
    return int(db.session.scalar(select(BudgetCounter.used).where(BudgetCounter.key == key)) or 0)


def _counters(limits: dict[str, int], *, locked: bool) -> dict[str, int]:
    """What each budget counter has used; created if missing; locked in key order when asked."""
    if not limits:
        return {}
    db.session.execute(_insert(BudgetCounter.__table__).on_conflict_do_nothing(),
                       [{"key": k, "points_limit": v, "used": 0} for k, v in sorted(limits.items())])
    query = select(BudgetCounter.key, BudgetCounter.used).where(BudgetCounter.key.in_(sorted(limits)))
    if locked:
        query = query.order_by(BudgetCounter.key).with_for_update()
    return {key: used for key, used in db.session.execute(query)}


def _reserve(reservations: dict[str, tuple[int, int]]) -> bool:
    """Add each reservation to its counter if it still fits the limit; False if one does not."""
    for key, (amount, limit) in sorted(reservations.items()):
        done = db.session.execute(
            update(BudgetCounter).where(BudgetCounter.key == key, BudgetCounter.used + amount <= limit)
            .values(used=BudgetCounter.used + amount, points_limit=limit)
            .execution_options(synchronize_session=False))
        if done.rowcount != 1:
            return False
    return True


def _plan_budgets(pending: list[_Pending], today: date, *,
                  locked: bool) -> tuple[list[_Pending], dict[str, tuple[int, int]]]:
    """Which credits fit the issuance budget now (first come, first served), and campaign bonuses
    trimmed to what their budget has left; returns them and the reservations to make."""
    limits: dict[str, int] = {}
    issuance_key: dict[int, str] = {}
    for p in pending:
        ev = p.evaluation
        if ev is None or ev.points == 0:
            continue
        budget = p.version.payload["budget"]
        key = f"issuance:{p.version.region_code}:{period_key(today, budget['period'])}"
        issuance_key[id(p)] = key
        limits[key] = budget["points"]
        if ev.campaign:
            campaign = next(c for c in p.version.payload["campaigns"] if c["id"] == ev.campaign)
            limits[campaign_key(p.version.id, ev.campaign)] = campaign["budget_points"]
    used = _counters(limits, locked=locked)
    spent: dict[str, int] = defaultdict(int)
    credited = []
    for p in pending:
        ev = p.evaluation
        if ev is None or ev.points == 0:
            continue
        if ev.campaign:  # the campaign's budget may have been used since the evaluation read it
            key = campaign_key(p.version.id, ev.campaign)
            room = limits[key] - used[key] - spent[key]
            if ev.bonus_points > room:
                ev = p.evaluation = ev.with_bonus(max(0, room))
            spent[key] += ev.bonus_points
        key = issuance_key[id(p)]
        if used[key] + spent[key] + ev.points <= limits[key]:
            spent[key] += ev.points
            credited.append(p)
    return credited, {key: (amount, limits[key]) for key, amount in spent.items() if amount}


@dataclass(frozen=True)
class _Issue:
    """Points to issue for one reduction: a credit now, or a queued credit released."""

    reduction_id: int
    account_id: int
    version: PolicyVersion
    points: int
    trace: dict[str, str]
    memo: str


def _credit_entries(credited: list[_Pending], today: date) -> list[EntryDraft]:
    return _issue_entries([_Issue(p.reduction.id, p.account_id, p.version, p.evaluation.points,  # type: ignore[union-attr]
                                  p.evaluation.trace, p.reduction.activity_type)  # type: ignore[union-attr]
                           for p in credited], today, kind="credit")


def _issue_entries(issues: list[_Issue], today: date, *, kind: str) -> list[EntryDraft]:
    """Entries moving points from the region's issuance into wallets, as lots that expire by the
    rules; an account's outstanding clawbacks are repaid first, into the reversed account."""
    if not issues:
        return []
    issuance = accounts_for("issuance", {i.version.region_code for i in issues})
    debts = _open_clawbacks({i.account_id for i in issues})
    reversed_ = accounts_for("reversed", {i.version.region_code for i in issues if i.account_id in debts})
    expiries: dict[int, date | None] = {}
    drafts = []
    for i in issues:
        if i.version.id not in expiries:
            expiries[i.version.id] = expiry_date(i.version.payload, today)
        repaid = _repay(debts[i.account_id], i.points) if i.account_id in debts else 0
        region = i.version.region_code
        postings = [(issuance[region], -i.points)]
        if i.points - repaid:
            postings.append((i.account_id, i.points - repaid))
        if repaid:
            postings.append((reversed_[region], repaid))
        drafts.append(EntryDraft(
            key=f"credit:{i.reduction_id}", kind=kind, rule_version=i.version, postings=postings,
            reduction_id=i.reduction_id, memo=i.memo, trace=i.trace,
            lot=(i.account_id, i.points - repaid, expiries[i.version.id]),
        ))
    return drafts


def _open_clawbacks(accounts: set[int]) -> dict[int, list[Clawback]]:
    debts: dict[int, list[Clawback]] = defaultdict(list)
    for clawback in db.session.scalars(select(Clawback).where(among(Clawback.account_id, accounts),
                                                              Clawback.outstanding > 0)
                                       .order_by(Clawback.id).with_for_update()):
        debts[clawback.account_id].append(clawback)
    return debts


def _repay(debts: list[Clawback], points: int) -> int:
    repaid = 0
    for debt in debts:
        take = min(debt.outstanding, points - repaid)
        if take:
            debt.outstanding -= take
            repaid += take
    return repaid


def _queue(queued: list[_Pending], today: date) -> None:
    if not queued:
        return
    issuance = accounts_for("issuance", {p.version.region_code for p in queued})
    now = utcnow()
    db.session.execute(insert(QueuedCredit.__table__), [{
        "reduction_id": p.reduction.id, "account_id": p.account_id,
        "issuance_account_id": issuance[p.version.region_code], "rule_version_id": p.version.id,
        "points": p.evaluation.points,  # type: ignore[union-attr]
        "period_key": period_key(today, p.version.payload["budget"]["period"]),
        "trace": p.evaluation.trace, "created_at": now,  # type: ignore[union-attr]
    } for p in queued])


def _record_evaluations(pending: list[_Pending]) -> None:
    """One append-only row per evaluated reduction (the registry's record of capped grams)."""
    if not pending:
        return
    now = utcnow()
    rows = [(p.reduction.id, p.account_id, p.version.id, p.reduction.activity_type, p.reduction.occurred_at,
             p.reduction.grams, p.evaluation.creditable_grams, p.evaluation.points,  # type: ignore[union-attr]
             p.evaluation.bonus_points, p.evaluation.campaign, now) for p in pending]  # type: ignore[union-attr]
    columns = ("reduction_id", "account_id", "rules_version_id", "activity_type", "occurred_at", "grams",
               "creditable_grams", "points", "bonus_points", "campaign", "created_at")
    if bulk.on_postgres():
        bulk.copy(ReductionEvaluation.__table__, columns, rows)
    else:
        db.session.execute(insert(ReductionEvaluation.__table__),
                           [dict(zip(columns, row, strict=True)) for row in rows])


def release_queued(*, limit: int = 5000) -> dict[str, int]:
    """Issue queued credits, oldest first, as far as each region's budget now allows. Rows another
    run holds are skipped, so overlapping runs never issue one twice."""
    queued = list(db.session.scalars(select(QueuedCredit).where(QueuedCredit.released_entry_id.is_(None))
                                     .order_by(QueuedCredit.id).limit(limit).with_for_update(skip_locked=True)))
    if not queued:
        return {"released": 0, "still_queued": 0}
    lock_accounts(q.account_id for q in queued)
    versions = {v.id: v for v in db.session.scalars(
        select(PolicyVersion).where(among(PolicyVersion.id, {q.rule_version_id for q in queued})))}
    today = china_day(utcnow())
    periods = {q.id: period_key(today, versions[q.rule_version_id].payload["budget"]["period"]) for q in queued}
    keys = {q.id: f"issuance:{versions[q.rule_version_id].region_code}:{periods[q.id]}" for q in queued}
    limits = {keys[q.id]: versions[q.rule_version_id].payload["budget"]["points"] for q in queued}
    used = _counters(limits, locked=True)
    spent: dict[str, int] = defaultdict(int)
    released = []
    for q in queued:
        key = keys[q.id]
        if periods[q.id] == q.period_key:
            continue  # still the period whose budget ran out
        if used[key] + spent[key] + q.points > limits[key]:
            continue
        spent[key] += q.points
        released.append(q)
    ids = post(_issue_entries([_Issue(q.reduction_id, q.account_id, versions[q.rule_version_id], q.points, q.trace,
                                      "queued credit released") for q in released], today, kind="release"))
    for q in released:
        q.released_entry_id = ids[f"credit:{q.reduction_id}"]
    if not _reserve({key: (amount, limits[key]) for key, amount in spent.items() if amount}):
        raise RuntimeError("a locked budget counter refused a reservation that fitted it")
    db.session.flush()
    metrics.points_issued(sum(q.points for q in released), "release")  # counted when the run commits
    return {"released": len(released), "still_queued": len(queued) - len(released)}


# --- spend -----------------------------------------------------------------------------------------


def _posted(key: str) -> int | None:
    """The entry an earlier call with this idempotency key posted, if any."""
    return db.session.scalar(select(JournalEntry.id).where(JournalEntry.idempotency_key == key))


@dataclass(frozen=True)
class Locked:
    """A wallet row locked by this transaction: its balance then, and the entry a key posted before."""

    account_id: int
    balance: int
    key: str | None
    posted: int | None


def lock_wallet(account_id: int, key: str | None = None) -> Locked:
    """Lock one account row, reading its balance and whether ``key`` was posted, in one statement."""
    posted = (select(JournalEntry.id).where(JournalEntry.idempotency_key == key).scalar_subquery()
              if key is not None else null())
    row = db.session.execute(select(LedgerAccount.balance, LedgerAccount.kind, posted)
                             .where(LedgerAccount.id == account_id).with_for_update(of=LedgerAccount)).first()
    if row is None:
        raise NotFound(f"No account {account_id}.")
    balance = balance_of(account_id) if row.kind in UNTRACKED_KINDS else row.balance
    return Locked(account_id, balance, key, row[2])


def spend(account_id: int, points: int, to_account_id: int, *, kind: str, key: str, rule_version: PolicyVersion,
          memo: str, actor: User | None = None, locked: Locked | None = None) -> int:
    """Move ``points`` out of a wallet, oldest-expiring lots first; idempotent on ``key``. A caller
    that already locked the wallet with this key (``lock_wallet``) passes what it read."""
    if locked is None or (locked.account_id, locked.key) != (account_id, key):
        locked = lock_wallet(account_id, key)
    if locked.posted is not None:
        return locked.posted
    if points <= 0:
        raise ValueError("points must be positive")
    balance = locked.balance
    if balance < points:
        raise Conflict(f"Not enough points: {balance} available, {points} needed.", error="insufficient_points")
    lots = db.session.execute(
        select(Lot.id, Lot.remaining).where(Lot.account_id == account_id, Lot.remaining > 0)
        .order_by(Lot.expires_on.is_(None), Lot.expires_on, Lot.id)
    ).all()
    allocations, left = [], points
    for lot_id, remaining in lots:
        take = min(remaining, left)
        allocations.append((lot_id, take))
        left -= take
        if not left:
            break
    if left:
        raise RuntimeError(f"account {account_id}: lots hold less than the balance")  # ledger verify names it
    ids = post([EntryDraft(key=key, kind=kind, rule_version=rule_version, memo=memo,
                           actor_id=actor.id if actor else None, allocations=allocations,
                           postings=[(account_id, -points), (to_account_id, points)])])
    return ids[key]


def transfer(from_account_id: int, to_account_id: int, points: int, *, kind: str, key: str,
             rule_version: PolicyVersion, memo: str, actor: User | None = None, new: bool = False) -> int:
    """Move points between accounts that keep no lots (a hold to a merchant's settlement);
    idempotent on ``key`` (``new``: the caller holds a lock that proves the key unused, so it is not
    looked up; the unique key still refuses a second post). The database refuses it if the source
    would go below zero."""
    existing = None if new else _posted(key)
    if existing is not None:
        return existing
    if points <= 0:
        raise ValueError("points must be positive")
    ids = post([EntryDraft(key=key, kind=kind, rule_version=rule_version, memo=memo,
                           actor_id=actor.id if actor else None,
                           postings=[(from_account_id, -points), (to_account_id, points)])])
    return ids[key]


def give_back(spend_entry_id: int, *, key: str, memo: str, actor: User | None = None) -> int:
    """Reverse a spend that has not gone further (a cancelled or timed-out hold): the points go
    back into the very lots they came from, with their original expiry; idempotent on ``key``.
    ``reverses_id`` is unique, so a spend is given back at most once."""
    existing = _posted(key)
    if existing is not None:
        return existing
    spend_entry = db.session.get(JournalEntry, spend_entry_id)
    if spend_entry is None:
        raise NotFound(f"No journal entry {spend_entry_id}.")
    postings = db.session.execute(select(Posting.account_id, Posting.amount)
                                  .where(Posting.entry_id == spend_entry_id)).all()
    allocations = db.session.execute(select(LotAllocation.lot_id, LotAllocation.amount)
                                     .where(LotAllocation.entry_id == spend_entry_id)).all()
    lock_accounts([account for account, amount in postings if amount < 0])
    version = db.session.get(PolicyVersion, spend_entry.rule_version_id)
    ids = post([EntryDraft(key=key, kind="reverse", rule_version=version, reverses_id=spend_entry_id, memo=memo,
                           actor_id=actor.id if actor else None,
                           postings=[(account, -amount) for account, amount in postings],
                           allocations=[(lot_id, -amount) for lot_id, amount in allocations])])
    return ids[key]


def _take_from_lots(allocations: list[tuple[int, int]]) -> None:
    if allocations:
        table = Lot.__table__
        db.session.execute(update(table).where(table.c.id == bindparam("lid"))
                           .values(remaining=table.c.remaining - bindparam("taken")),
                           [{"lid": lot_id, "taken": amount} for lot_id, amount in allocations],
                           execution_options={"synchronize_session": False})


# --- expiry ----------------------------------------------------------------------------------------


def expire(as_of: date, *, chunk: int = 2000) -> dict[str, int]:
    """Expire exactly what is left of every lot whose last day is before ``as_of``. Idempotent:
    a second run finds nothing left to expire. Commits per chunk of accounts."""
    totals = {"entries": 0, "points": 0, "lots": 0}
    while True:
        accounts = list(db.session.scalars(
            select(Lot.account_id).where(Lot.remaining > 0, Lot.expires_on < as_of)
            .group_by(Lot.account_id).order_by(Lot.account_id).limit(chunk)))
        if not accounts:
            return totals
        lock_accounts(accounts)
        rows = db.session.execute(
            select(Lot.id, Lot.account_id, Lot.remaining, JournalEntry.rule_version_id)
            .join(JournalEntry, JournalEntry.id == Lot.entry_id)
            .where(among(Lot.account_id, accounts), Lot.remaining > 0, Lot.expires_on < as_of)
        ).all()
        groups: dict[tuple[int, int], list[Any]] = defaultdict(list)
        for row in rows:
            groups[(row.account_id, row.rule_version_id)].append(row)
        versions = {v.id: v for v in db.session.scalars(
            select(PolicyVersion).where(among(PolicyVersion.id, {k[1] for k in groups})))}
        expired = accounts_for("expired", {v.region_code for v in versions.values()})
        drafts = []
        for (account_id, version_id), lots in sorted(groups.items()):
            version = versions[version_id]
            amount = sum(lot.remaining for lot in lots)
            drafts.append(EntryDraft(key=f"expire:{account_id}:{version_id}:{as_of.isoformat()}", kind="expire",
                                     rule_version=version, memo=f"points earned under {version.ref} expired",
                                     postings=[(account_id, -amount), (expired[version.region_code], amount)]))
            totals["points"] += amount
        post(drafts)
        # The same lots as read above: their accounts are locked.
        db.session.execute(update(Lot).where(among(Lot.account_id, accounts), Lot.remaining > 0,
                                             Lot.expires_on < as_of).values(remaining=0)
                           .execution_options(synchronize_session=False))
        totals["entries"] += len(drafts)
        totals["lots"] += len(rows)
        db.session.commit()


# --- reversal and clawback ---------------------------------------------------------------------------


def reverse_reduction(reduction_id: int, *, actor: User, reason: str) -> dict[str, Any]:
    """An auditor reverses a credit found fraudulent: the unspent points of it are taken back, the
    spent part becomes a clawback that the account's future credits repay first."""
    reduction = db.session.scalar(select(Reduction).where(Reduction.id == reduction_id).with_for_update())
    if reduction is None:
        raise NotFound(f"No reduction {reduction_id}.")
    require_in_scope(actor, reduction.region_code)
    if reduction.status != "certified":
        raise Conflict(f"Reduction {reduction_id} is already {reduction.status}.", error="already_reversed")
    if not reason.strip():
        raise field_error("reason", "say why the credit is reversed", error="reason_required")
    # A reduction backing issued market serials is replaced in its batch first (the database refuses
    # the reversal too, but only this says why, and that retrying will not help).
    market.check_reversible(reduction_id)
    credit_entry = db.session.scalar(
        select(JournalEntry).where(JournalEntry.idempotency_key == f"credit:{reduction_id}"))
    taken = shortfall = 0
    queued_cancelled = db.session.execute(
        delete(QueuedCredit).where(QueuedCredit.reduction_id == reduction_id, QueuedCredit.released_entry_id.is_(None))
    ).rowcount or 0
    if credit_entry is not None:
        lot = db.session.scalar(select(Lot).where(Lot.entry_id == credit_entry.id))
        if lot is not None:
            lock_accounts([lot.account_id])
            db.session.refresh(lot, with_for_update=True)
            spent = int(db.session.scalar(select(func.coalesce(func.sum(LotAllocation.amount), 0))
                                          .where(LotAllocation.lot_id == lot.id)))
            taken, shortfall = lot.remaining, spent
            version = db.session.get(PolicyVersion, credit_entry.rule_version_id)
            reversed_account = accounts_for("reversed", [version.region_code])[version.region_code]
            key = f"reverse:{reduction_id}"
            if taken:
                ids = post([EntryDraft(key=key, kind="reverse", rule_version=version, reduction_id=reduction_id,
                                       reverses_id=credit_entry.id, actor_id=actor.id, memo=reason.strip()[:200],
                                       postings=[(lot.account_id, -taken), (reversed_account, taken)],
                                       allocations=[(lot.id, taken)])])
                entry_id = ids[key]
            else:
                entry_id = credit_entry.id
            if shortfall:
                db.session.add(Clawback(account_id=lot.account_id, reduction_id=reduction_id, entry_id=entry_id,
                                        shortfall=shortfall, outstanding=shortfall))
    reduction.status = "reversed"
    db.session.flush()
    reductions_changed.send("reversal",
                            subjects=[(reduction.resident_id, reduction.region_code, reduction.occurred_at)])
    outcome = {"reduction_id": reduction_id, "points_taken_back": taken, "clawback_outstanding": shortfall,
               "queued_credit_cancelled": bool(queued_cancelled)}
    points = db.session.scalar(select(ReductionEvaluation.points)
                               .where(ReductionEvaluation.reduction_id == reduction_id))
    audit.record("reduction.reverse", "reduction", reduction_id, actor=actor, region_code=reduction.region_code,
                 before={"status": "certified", "grams": reduction.grams, "points": points},
                 after=outcome, reason=reason.strip())
    return outcome
