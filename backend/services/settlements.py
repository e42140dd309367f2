"""Settlement, the money leg (issue #6 point 3): what merchants are owed for the points they took,
and what the operator owes overall.

Each region's exchange rules set a settlement rate (``settlement.yuan_per_point``, a decimal
string). Once a month (China time) is over, an operator issues one statement per merchant for
the fulfilled redemptions of that month that are on no statement yet: their count, their points
and the amount payable in fen, ``floor(points × rate × 100)`` computed in ``Decimal`` (never a
float; rounded down). A statement is immutable (the database refuses any change but recording its
payment, and refuses DELETE); marking it paid records the bank reference. The ledger does not move
on issue or on payment.

Services flush, never commit: the request boundary commits.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import Select, func, select, update

from backend.db import db, utcnow
from backend.errors import Conflict, NotFound, field_error
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import (
    Enterprise,
    Household,
    LedgerAccount,
    Merchant,
    Offer,
    PolicyVersion,
    Redemption,
    Resident,
    SettlementStatement,
    User,
)
from backend.services import audit, governance, ledger, rules
from backend.services.pagination import keyset_page
from backend.services.regions import ancestors, get_region
from backend.services.scope import descendants, require_in_scope, scope_filter
from backend.validators import FIRST_YEAR, LAST_YEAR, platform_year

PERIOD_PATTERN = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
# A till's confirmation stamps ``closed_at`` when it runs and commits a moment later. A month is
# only settled this long after it ended, so a confirmation made in its last second is committed
# (and so seen) before the month's statements are drawn up, not left behind on none.
SETTLEMENT_GRACE = timedelta(minutes=15)
REFERENCE_MAX = 120


# --- periods and money -----------------------------------------------------------------------------


def period_bounds(period: Any, *, field: str = "period", location: str = "json") -> tuple[datetime, datetime]:
    """The UTC instants a ``YYYY-MM`` month (China time) starts and ends (end exclusive)."""
    match = PERIOD_PATTERN.match(period) if isinstance(period, str) else None
    if match is None or not platform_year(int(match.group(1))):
        raise field_error(field, f"must be a month YYYY-MM ({FIRST_YEAR}-01 to {LAST_YEAR}-12)", location=location)
    year, month = int(match.group(1)), int(match.group(2))
    start = datetime(year, month, 1, tzinfo=CHINA_STANDARD_TIME)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=CHINA_STANDARD_TIME)
    return start, end


def amount_fen(points: int, yuan_per_point: str) -> int:
    """``floor(points × rate × 100)``: exact decimal arithmetic, rounded down (in the operator's favour
    by less than one fen per statement, never in anyone's by a float's error)."""
    value = Decimal(points) * Decimal(yuan_per_point) * 100
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def yuan(fen: int) -> str:
    """Fen as a yuan string with two decimals, without a float."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def mask_code(code: str) -> str:
    """A redemption code with all but its last four characters hidden."""
    return "*" * max(len(code) - 4, 0) + code[-4:] if len(code) > 4 else "*" * len(code)


def _rate_of(version: Any) -> str:
    return str(version.payload["settlement"]["yuan_per_point"])


# --- issuing ---------------------------------------------------------------------------------------


def issue_statements(period: str, *, actor: User, region: str | None = None) -> list[SettlementStatement]:
    """One statement per merchant in the actor's scope (and ``region``, when given) for the fulfilled
    redemptions closed in ``period`` that are on no statement yet; merchants with none get none.

    Idempotent: a second run for the same period finds nothing left to put on a statement, so it
    creates nothing and returns an empty list. Concurrent runs are safe: the merchants concerned are
    locked in id order before their redemptions are counted (SQLite's BEGIN IMMEDIATE serialises the
    whole run), a statement that already exists for (merchant, period) is never drawn up again, and
    the unique (merchant, period) constraint backs both up.
    """
    start, end = period_bounds(period)
    now = utcnow()
    if now < end + SETTLEMENT_GRACE:
        raise Conflict(f"Period {period} is not over: it can be settled from "
                       f"{(end + SETTLEMENT_GRACE).astimezone(CHINA_STANDARD_TIME).isoformat()}.",
                       error="period_not_over")
    merchants = scope_filter(select(Merchant.id), Merchant.region_code, actor)
    if region is not None:
        code = get_region(region).code
        require_in_scope(actor, code)
        merchants = merchants.where(Merchant.region_code.in_(sorted(descendants(code))))
    in_period = (Redemption.status == "fulfilled", Redemption.closed_at >= start, Redemption.closed_at < end,
                 Redemption.statement_id.is_(None))
    candidates = sorted(db.session.scalars(
        select(Redemption.merchant_id).where(*in_period, Redemption.merchant_id.in_(merchants.scalar_subquery()))
        .distinct()
    ))
    if not candidates:
        return []
    # Row locks in id order: a concurrent run for the same merchants waits here, then sees our statements.
    locked = list(db.session.scalars(
        select(Merchant).where(ledger.among(Merchant.id, candidates)).order_by(Merchant.id).with_for_update()
    ))
    at = end - timedelta(microseconds=1)  # the rules in force at the end of the period
    stated = set(db.session.scalars(select(SettlementStatement.merchant_id).where(
        ledger.among(SettlementStatement.merchant_id, candidates), SettlementStatement.period == period)))
    totals = {merchant_id: (int(count), int(points)) for merchant_id, count, points in db.session.execute(
        select(Redemption.merchant_id, func.count(Redemption.id), func.coalesce(func.sum(Redemption.points), 0))
        .where(ledger.among(Redemption.merchant_id, candidates), *in_period).group_by(Redemption.merchant_id))}
    index = governance.index_for(rules.KIND, rules.SUBJECT)
    issued: list[SettlementStatement] = []
    for merchant in locked:
        count, points = totals.get(merchant.id, (0, 0))
        if merchant.id in stated or not count:
            continue
        version = ledger.rules_in_force(merchant.region_code, at, index=index)
        rate = _rate_of(version)
        statement = SettlementStatement(
            merchant_id=merchant.id, region_code=merchant.region_code, period=period, redemptions=count,
            points=points, yuan_per_point=rate, amount_fen=amount_fen(points, rate),
            rules_version_id=version.id, status="issued", issued_at=now, issued_by_user_id=actor.id,
        )
        db.session.add(statement)
        db.session.flush()
        moved = db.session.execute(
            update(Redemption).where(Redemption.merchant_id == merchant.id, *in_period)
            .values(statement_id=statement.id).execution_options(synchronize_session=False)
        ).rowcount
        if moved != count:  # the merchant row is locked: nothing can have changed in between
            raise RuntimeError(f"statement {statement.id}: counted {count} redemptions but assigned {moved}")
        audit.record("settlement.issue", "settlement_statement", statement.id, actor=actor,
                     region_code=merchant.region_code,
                     after={"merchant_id": merchant.id, "period": period, "redemptions": statement.redemptions,
                            "points": statement.points, "yuan_per_point": rate, "amount_fen": statement.amount_fen,
                            "rules_version": version.ref})
        issued.append(statement)
    return issued


# --- reading ---------------------------------------------------------------------------------------


def _get(statement_id: int, *, lock: bool = False) -> SettlementStatement:
    query = select(SettlementStatement).where(SettlementStatement.id == statement_id)
    statement = db.session.scalar(query.with_for_update() if lock else query)
    if statement is None:
        raise NotFound(f"No settlement statement {statement_id}.")
    return statement


def get_scoped(statement_id: int, actor: User, *, lock: bool = False) -> SettlementStatement:
    statement = _get(statement_id, lock=lock)
    require_in_scope(actor, statement.region_code)
    return statement


def get_for_merchant(statement_id: int, merchant: Merchant) -> SettlementStatement:
    """A merchant sees its own statements only; another merchant's does not exist for it."""
    statement = _get(statement_id)
    if statement.merchant_id != merchant.id:
        raise NotFound(f"No settlement statement {statement_id}.")
    return statement


def _filtered(query: Select[Any], *, status: str | None, merchant_id: int | None, period: str | None) -> Select[Any]:
    if status is not None:
        query = query.where(SettlementStatement.status == status)
    if merchant_id is not None:
        query = query.where(SettlementStatement.merchant_id == merchant_id)
    if period is not None:
        period_bounds(period, location="query")
        query = query.where(SettlementStatement.period == period)
    return query


def browse(actor: User, *, status: str | None = None, merchant_id: int | None = None, period: str | None = None,
           before: int | None, limit: int) -> tuple[list[SettlementStatement], int | None]:
    """Statements in the actor's scope, newest first."""
    query = scope_filter(select(SettlementStatement), SettlementStatement.region_code, actor)
    return keyset_page(_filtered(query, status=status, merchant_id=merchant_id, period=period),
                       SettlementStatement.id, before=before, limit=limit)


def browse_for_merchant(merchant: Merchant, *, status: str | None = None, period: str | None = None,
                        before: int | None, limit: int) -> tuple[list[SettlementStatement], int | None]:
    query = select(SettlementStatement).where(SettlementStatement.merchant_id == merchant.id)
    return keyset_page(_filtered(query, status=status, merchant_id=None, period=period),
                       SettlementStatement.id, before=before, limit=limit)


@dataclass(frozen=True)
class Line:
    redemption_id: int
    offer_id: int
    offer_title: str
    points: int
    closed_at: datetime
    code: str  # masked


def lines_of(statement: SettlementStatement) -> list[Line]:
    rows = db.session.execute(
        select(Redemption.id, Redemption.offer_id, Offer.title, Redemption.points, Redemption.closed_at,
               Redemption.code)
        .join(Offer, Offer.id == Redemption.offer_id)
        .where(Redemption.statement_id == statement.id)
        .order_by(Redemption.closed_at, Redemption.id)
    ).all()
    return [Line(rid, offer_id, title, points, closed_at, mask_code(code))
            for rid, offer_id, title, points, closed_at, code in rows]


def detail(statement: SettlementStatement) -> dict[str, Any]:
    """The statement with its merchant's name, its rules version and its redemption lines."""
    merchant = db.session.get(Merchant, statement.merchant_id)
    version = db.session.get(PolicyVersion, statement.rules_version_id)
    return {"merchant_name": merchant.name if merchant else None,
            "rules_version": version.ref if version else None, "lines": lines_of(statement)}


CSV_HEADER = ("redemption_id", "fulfilled_at", "offer", "code", "points", "amount_fen")


def _cell(value: str) -> str:
    """Text a spreadsheet would run as a formula is written as text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(statement: SettlementStatement) -> str:
    """A header row, one row per redemption (fulfilled_at in China time, code masked), then a total
    row: the redemptions' count in ``offer``, the points and the amount payable in fen. Amounts
    exist per statement only (rounding is on the total), so redemption rows leave it empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    lines = lines_of(statement)
    for line in lines:
        writer.writerow((line.redemption_id, line.closed_at.astimezone(CHINA_STANDARD_TIME).isoformat(),
                         _cell(line.offer_title), line.code, line.points, ""))
    writer.writerow(("total", "", f"{len(lines)} redemptions at {statement.yuan_per_point} yuan/point", "",
                     statement.points, statement.amount_fen))
    return buffer.getvalue()


# --- payment ---------------------------------------------------------------------------------------


def mark_paid(statement_id: int, *, actor: User, reference: Any) -> SettlementStatement:
    """Record that the operator paid the statement (``reference``: the bank transfer's, 1..120 chars).

    The ledger does not move on payment: the points stay in the merchant's settlement account as the
    record of what the merchant was paid for; the statement (and its redemptions' ``statement_id``)
    say which of them this payment covers. Paying twice is refused (409 ``already_paid``)."""
    clean = " ".join(reference.split()) if isinstance(reference, str) else ""
    if not clean or len(clean) > REFERENCE_MAX:
        raise field_error("reference", f"must be 1 to {REFERENCE_MAX} characters")
    statement = get_scoped(statement_id, actor, lock=True)
    if statement.status == "paid":
        raise Conflict(f"Statement {statement_id} was already paid ({statement.payment_reference}).",
                       error="already_paid")
    statement.status = "paid"
    statement.paid_at = utcnow()
    statement.paid_by_user_id = actor.id
    statement.payment_reference = clean
    db.session.flush()
    audit.record("settlement.paid", "settlement_statement", statement.id, actor=actor,
                 region_code=statement.region_code, before={"status": "issued"},
                 after={"status": "paid", "reference": clean, "amount_fen": statement.amount_fen})
    return statement


# --- the operator's liability ----------------------------------------------------------------------

_FIGURES = ("resident_wallet_points", "household_wallet_points", "enterprise_wallet_points", "outstanding_points",
            "held_points", "unstated_points", "unpaid_statements", "unpaid_points", "unpaid_fen")


def _regions_for(region: str | None, actor: User | None) -> list[str] | None:
    """Region codes the report covers; None: all of them."""
    if region is not None:
        code = get_region(region, field="region", location="query").code
        if actor is not None:
            require_in_scope(actor, code)
        return sorted(descendants(code))
    if actor is not None and actor.scope_region_code is not None:
        return sorted(descendants(actor.scope_region_code))
    return None


def _sum_by_region(query: Select[Any], region_column: Any, codes: list[str] | None) -> dict[str, Any]:
    if codes is not None:
        query = query.where(region_column.in_(codes))
    return {row[0]: row[1:] for row in db.session.execute(query.group_by(region_column))}


def liability(region: str | None = None, *, actor: User | None = None) -> dict[str, Any]:
    """What the operator owes, now, per region (the owner's: a resident's, household's, enterprise's
    or merchant's region) and in total:

    - ``outstanding_points``: points in resident, household and enterprise wallets, which residents
      may still spend at a merchant; ``outstanding_value_fen`` values them at the region's current rate;
    - ``held_points``: points reserved at a merchant, not yet confirmed or given back;
    - ``unstated_points``: points merchants took that are on no statement yet;
    - ``unpaid_statements``/``unpaid_points``/``unpaid_fen``: issued statements not yet paid;
    - ``exposure_fen``: unpaid statements plus every other point above at the current rate, i.e. what
      would be payable if every point ended at a merchant.
    """
    codes = _regions_for(region, actor)
    balance = func.coalesce(func.sum(LedgerAccount.balance), 0)
    figures: dict[str, dict[str, int]] = {}

    def add(figure: str, found: dict[str, Any], index: int = 0) -> None:
        for code, values in found.items():
            row = figures.setdefault(code, dict.fromkeys(_FIGURES, 0))
            row[figure] += int(values[index] or 0)

    for kind, owner, column in (("resident_wallet", Resident, LedgerAccount.resident_id),
                                ("household_wallet", Household, LedgerAccount.household_id),
                                ("enterprise_wallet", Enterprise, LedgerAccount.enterprise_id)):
        add(f"{kind}_points", _sum_by_region(
            select(owner.region_code, balance).join(LedgerAccount, column == owner.id)
            .where(LedgerAccount.kind == kind), owner.region_code, codes))
    add("held_points", _sum_by_region(
        select(Merchant.region_code, balance).join(LedgerAccount, LedgerAccount.merchant_id == Merchant.id)
        .where(LedgerAccount.kind == "redemption_holds"), Merchant.region_code, codes))
    add("unstated_points", _sum_by_region(
        select(Merchant.region_code, func.coalesce(func.sum(Redemption.points), 0))
        .join(Redemption, Redemption.merchant_id == Merchant.id)
        .where(Redemption.status == "fulfilled", Redemption.statement_id.is_(None)), Merchant.region_code, codes))
    unpaid = _sum_by_region(
        select(SettlementStatement.region_code, func.count(SettlementStatement.id),
               func.coalesce(func.sum(SettlementStatement.points), 0),
               func.coalesce(func.sum(SettlementStatement.amount_fen), 0))
        .where(SettlementStatement.status == "issued"), SettlementStatement.region_code, codes)
    add("unpaid_statements", unpaid, 0)
    add("unpaid_points", unpaid, 1)
    add("unpaid_fen", unpaid, 2)

    now = utcnow()
    index = governance.index_for(rules.KIND, rules.SUBJECT)
    totals: dict[str, Any] = {**dict.fromkeys(_FIGURES, 0), "outstanding_value_fen": 0, "exposure_fen": 0,
                              "regions_without_rate": []}
    regions = []
    for code in sorted(figures):
        row = figures[code]
        row["outstanding_points"] = (row["resident_wallet_points"] + row["household_wallet_points"]
                                     + row["enterprise_wallet_points"])
        if not any(row.values()):
            continue
        version = index.resolve(ancestors(code), now)
        rate = _rate_of(version) if version is not None else None
        value = amount_fen(row["outstanding_points"], rate) if rate is not None else None
        exposure = (row["unpaid_fen"] + amount_fen(row["outstanding_points"] + row["held_points"]
                                                   + row["unstated_points"], rate)) if rate is not None else None
        regions.append({"region": code, "yuan_per_point": rate, "rules_version": version.ref if version else None,
                        **row, "outstanding_value_fen": value, "exposure_fen": exposure})
        for figure in _FIGURES:
            totals[figure] += row[figure]
        if rate is None:
            totals["regions_without_rate"].append(code)
        else:
            totals["outstanding_value_fen"] += value
            totals["exposure_fen"] += exposure
    totals["outstanding_value_yuan"] = yuan(totals["outstanding_value_fen"])
    totals["exposure_yuan"] = yuan(totals["exposure_fen"])
    totals["unpaid_yuan"] = yuan(totals["unpaid_fen"])
    return {"as_of": now, "region": region, "regions": regions, "totals": totals}
