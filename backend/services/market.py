"""Carbon-market batches (issue #8.3, DESIGN invariant 10): certified reductions pooled into whole
tonnes, issued as serials under four eyes, then sold or retired by serial range, each serial once.

Pooling. A batch is one methodology, one region and one vintage (the China-time year the reductions
occurred in). ``include_subregions`` (default true) pools the region's districts with it; false
pools reductions recorded in the region itself only. Candidates are certified reductions with grams
> 0 that are in no batch (ever: ``market_batch_members`` is keyed by the reduction) and carry no live
exclusion, nor evidence saying the output already holds green certificates. Whole reductions are
taken oldest first (occurred_at, id) until their total reaches the tonnes asked for (default: every
whole tonne available); the batch's tonnes are ``floor(pooled grams / 10^6)``, so the requested
number, or more only when the last reduction taken alone weighs more than the gap. The sub-tonne
rest (``unserialised_grams``, always < 1 t) stays in the batch unserialised: never sold, never
pooled again, and the first cover when a member must be replaced. What was not taken stays unpooled
(with the default, less than a tonne) for a later batch.

Serials. Issuing (by someone other than the drafter: four eyes) takes the next ``tonnes`` numbers of
the per-``REGION-METHOD-YEAR`` counter under a row lock and writes one row per serial; ranges read
``REGION-METHOD-YEAR-START-END``. A sale (buyer, price) or retirement (beneficiary, purpose) takes
one contiguous sub-range; the serials' ``transaction_id`` goes from NULL to it once (the database
refuses any other change), so a serial is never sold or retired twice under any concurrency.

Reversal. A reduction that backs serials of an issued batch cannot be reversed (a trigger refuses
it): an auditor first replaces it in the batch (``replace_member``) from the batch's unserialised
rest or with further unpooled reductions of the same scope, so the serials stay fully backed by
certified grams; then the ledger's reversal takes the points back as usual. A draft tolerates a
reversal; issuing refuses until the reversed member is replaced.

Services flush, never commit: the request boundary commits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Select, delete, exists, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from backend.db import db, utcnow
from backend.errors import Conflict, Forbidden, NotFound, field_error
from backend.methodology import CHINA_STANDARD_TIME
from backend.methodology.registry import registry
from backend.models import (
    Activity,
    MarketBatch,
    MarketBatchMember,
    MarketExclusion,
    MarketSerial,
    MarketSerialCounter,
    MarketTransaction,
    Reduction,
    Region,
    User,
)
from backend.models.market import EXCLUSION_CATEGORIES, GRAMS_PER_TONNE, ISSUED_STATUSES, serial_range
from backend.security.statements import b64url, signer, unb64url

# ``ledger`` as a module: the ledger's reversal may call check_reversible, so neither imports a name
# from the other at import time.
from backend.services import audit, ledger
from backend.services.pagination import keyset_page
from backend.services.regions import get_region
from backend.services.scope import descendants, require_in_scope, scope_filter

# Evidence a methodology may carry saying its output is already claimed as green certificates.
GREEN_CERTIFICATE_FLAG = "green_certificates_issued"
TEXT_MAX = 200
PURPOSE_MAX = 500
REFERENCE_MAX = 120
MAX_EXCLUSIONS = 1000
TOKEN_PATTERN = re.compile(r"^([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{86})$")


# --- helpers ---------------------------------------------------------------------------------------


def serial_key(region_code: str, methodology_id: str, vintage: int) -> str:
    return f"{region_code}-{methodology_id}-{vintage}"


def vintage_bounds(vintage: int) -> tuple[datetime, datetime]:
    """The UTC instants the China-time year starts and ends (end exclusive)."""
    return (datetime(vintage, 1, 1, tzinfo=CHINA_STANDARD_TIME),
            datetime(vintage + 1, 1, 1, tzinfo=CHINA_STANDARD_TIME))


def _clean(value: Any, field: str, maximum: int, *, required: bool = True) -> str | None:
    clean = " ".join(value.split()) if isinstance(value, str) else ""
    if not clean:
        if required:
            raise field_error(field, "must not be blank")
        return None
    if len(clean) > maximum:
        raise field_error(field, f"must be at most {maximum} characters")
    return clean


def _methodology(methodology_id: Any) -> Any:
    if not isinstance(methodology_id, str) or methodology_id not in registry():
        raise field_error("methodology", f"unknown methodology {methodology_id!r}", error="unknown_methodology")
    entry = registry().get(methodology_id)
    if entry.methodology.engagement_only:
        raise field_error("methodology", f"{methodology_id} is engagement only: its reductions are 0 g",
                          error="engagement_only")
    return entry


def _check_vintage(vintage: Any) -> int:
    this_year = utcnow().astimezone(CHINA_STANDARD_TIME).year
    if not isinstance(vintage, int) or isinstance(vintage, bool) or not 2000 <= vintage <= this_year:
        raise field_error("vintage", f"must be a year from 2000 to {this_year} (China time)")
    return vintage


def _lock_pool(methodology_id: str, vintage: int) -> None:
    """Pooling, replacing and excluding reductions of one methodology and vintage take turns, so each
    sees what the one before committed (SQLite: BEGIN IMMEDIATE already serialises writers)."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                           {"key": f"market-pool:{methodology_id}:{vintage}"})


@dataclass(frozen=True)
class Scope:
    region_code: str
    include_subregions: bool
    methodology_id: str
    vintage: int

    def codes(self) -> list[str]:
        return sorted(descendants(self.region_code)) if self.include_subregions else [self.region_code]


def _candidates(scope: Scope, columns: Iterable[Any]) -> Select[Any]:
    """Certified, unpooled, unexcluded reductions with grams of the scope, oldest first."""
    start, end = vintage_bounds(scope.vintage)
    query = (select(*columns)
             .where(Reduction.methodology_id == scope.methodology_id, Reduction.occurred_at >= start,
                    Reduction.occurred_at < end, Reduction.status == "certified", Reduction.grams > 0,
                    ledger.among(Reduction.region_code, scope.codes()),
                    ~exists().where(MarketBatchMember.reduction_id == Reduction.id),
                    ~exists().where(MarketExclusion.reduction_id == Reduction.id, MarketExclusion.lifted_at.is_(None))))
    methodology = registry().get(scope.methodology_id).methodology
    if any(GREEN_CERTIFICATE_FLAG in methodology.evidence_schema(t).fields for t in methodology.types):
        flag = Activity.data[GREEN_CERTIFICATE_FLAG].as_boolean()
        query = query.join(Activity, Activity.id == Reduction.activity_id).where(
            func.coalesce(flag, False).is_(False))
    return query


def _scope(methodology: Any, region: Any, include_subregions: bool, vintage: Any, actor: User) -> Scope:
    entry = _methodology(methodology)
    code = get_region(region, field="region").code
    require_in_scope(actor, code)
    return Scope(code, bool(include_subregions), entry.id, _check_vintage(vintage))


def available(*, methodology: Any, region: Any, include_subregions: bool, vintage: Any, actor: User) -> dict[str, Any]:
    """What a pool of this scope would find now: reductions, grams, whole tonnes, the rest."""
    scope = _scope(methodology, region, include_subregions, vintage, actor)
    count, grams = db.session.execute(
        _candidates(scope, (func.count(Reduction.id), func.coalesce(func.sum(Reduction.grams), 0)))).one()
    grams = int(grams or 0)
    return {"methodology": scope.methodology_id, "region": scope.region_code,
            "include_subregions": scope.include_subregions, "vintage": scope.vintage, "reductions": int(count),
            "grams": grams, "whole_tonnes": grams // GRAMS_PER_TONNE, "remainder_grams": grams % GRAMS_PER_TONNE}


def _take(scope: Scope, grams_needed: int) -> list[tuple[int, int]]:
    """Whole candidate reductions, oldest first, until their grams reach ``grams_needed``."""
    taken: list[tuple[int, int]] = []
    total = 0
    rows = db.session.execute(_candidates(scope, (Reduction.id, Reduction.grams))
                              .order_by(Reduction.occurred_at, Reduction.id)
                              .execution_options(yield_per=5000))
    for reduction_id, grams in rows:
        taken.append((reduction_id, grams))
        total += grams
        if total >= grams_needed:
            break
    rows.close()
    return taken if total >= grams_needed else []


def _add_members(batch_id: int, members: list[tuple[int, int]]) -> None:
    now = utcnow()
    table = MarketBatchMember.__table__
    for start in range(0, len(members), 5000):
        db.session.execute(insert(table), [{"reduction_id": rid, "batch_id": batch_id, "grams": grams,
                                            "status": "active", "added_at": now}
                                           for rid, grams in members[start:start + 5000]])


def _summarise(batch: MarketBatch) -> None:
    """Recompute the batch's pooled grams, member count, versions and members hash from its rows."""
    digest = hashlib.sha256()
    count = pooled = 0
    rows = db.session.execute(select(MarketBatchMember.reduction_id, MarketBatchMember.grams)
                              .where(MarketBatchMember.batch_id == batch.id, MarketBatchMember.status == "active")
                              .order_by(MarketBatchMember.reduction_id).execution_options(yield_per=10000))
    for reduction_id, grams in rows:
        digest.update(f"{reduction_id}:{grams}\n".encode())
        count += 1
        pooled += grams
    batch.member_count = count
    batch.pooled_grams = pooled
    batch.members_sha256 = digest.hexdigest()
    batch.methodology_versions = sorted(db.session.scalars(
        select(Reduction.methodology_version).distinct()
        .join(MarketBatchMember, MarketBatchMember.reduction_id == Reduction.id)
        .where(MarketBatchMember.batch_id == batch.id, MarketBatchMember.status == "active")))


def _summary(batch: MarketBatch) -> dict[str, Any]:
    """What the audit log keeps of a batch."""
    return {"status": batch.status, "methodology": batch.methodology_id, "region": batch.region_code,
            "include_subregions": batch.include_subregions, "vintage": batch.vintage, "tonnes": batch.tonnes,
            "pooled_grams": batch.pooled_grams, "member_count": batch.member_count,
            "members_sha256": batch.members_sha256, "serials": batch.serial_range}


def _audit(action: str, batch: MarketBatch, actor: User | None, *, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None, reason: str | None = None) -> None:
    audit.record(f"market_batch.{action}", "market_batch", batch.id, actor=actor, region_code=batch.region_code,
                 before=before, after=after if after is not None else _summary(batch), reason=reason)


# --- drafting, issuing, discarding -------------------------------------------------------------------


def draft(*, methodology: Any, region: Any, include_subregions: bool, vintage: Any, tonnes: int | None,
          note: str | None, actor: User) -> MarketBatch:
    """Pool a draft batch (see the module docstring for what is taken)."""
    scope = _scope(methodology, region, include_subregions, vintage, actor)
    if tonnes is not None and (not isinstance(tonnes, int) or isinstance(tonnes, bool) or tonnes < 1):
        raise field_error("tonnes", "must be a whole number of tonnes, at least 1")
    clean_note = _clean(note, "note", PURPOSE_MAX, required=False) or ""
    _lock_pool(scope.methodology_id, scope.vintage)
    found = available(methodology=scope.methodology_id, region=scope.region_code,
                      include_subregions=scope.include_subregions, vintage=scope.vintage, actor=actor)
    wanted = found["whole_tonnes"] if tonnes is None else tonnes
    if wanted < 1 or wanted > found["whole_tonnes"]:
        raise Conflict(f"The scope holds {found['grams']} g in {found['reductions']} unpooled reductions, "
                       f"{found['whole_tonnes']} whole tonne(s); {wanted or 1} asked for.",
                       error="not_enough_reductions")
    members = _take(scope, wanted * GRAMS_PER_TONNE)
    if not members:  # cannot happen under the pool lock: the sum above said there was enough
        raise RuntimeError("candidate reductions changed under the pool lock")
    pooled = sum(grams for _, grams in members)
    batch = MarketBatch(
        region_code=scope.region_code, include_subregions=scope.include_subregions,
        methodology_id=scope.methodology_id, vintage=scope.vintage, status="draft",
        tonnes=pooled // GRAMS_PER_TONNE, pooled_grams=pooled, member_count=len(members), members_sha256="",
        methodology_versions=[], serial_key=serial_key(scope.region_code, scope.methodology_id, scope.vintage),
        note=clean_note, drafted_by_user_id=actor.id, drafted_at=utcnow())
    db.session.add(batch)
    db.session.flush()
    _add_members(batch.id, members)
    _summarise(batch)
    db.session.flush()
    _audit("draft", batch, actor)
    return batch


def get(batch_id: int, *, lock: bool = False) -> MarketBatch:
    query = select(MarketBatch).where(MarketBatch.id == batch_id)
    batch = db.session.scalar(query.with_for_update() if lock else query)
    if batch is None:
        raise NotFound(f"No market batch {batch_id}.")
    return batch


def get_scoped(batch_id: int, actor: User, *, lock: bool = False) -> MarketBatch:
    batch = get(batch_id, lock=lock)
    require_in_scope(actor, batch.region_code)
    return batch


def _unbacked_members(batch: MarketBatch) -> list[int]:
    """Active members that are no longer certified (reversed since pooling)."""
    return list(db.session.scalars(
        select(MarketBatchMember.reduction_id)
        .join(Reduction, Reduction.id == MarketBatchMember.reduction_id)
        .where(MarketBatchMember.batch_id == batch.id, MarketBatchMember.status == "active",
               Reduction.status != "certified")
        .order_by(MarketBatchMember.reduction_id).limit(20)))


def issue(batch_id: int, *, actor: User) -> MarketBatch:
    """Give a draft its serials. Someone other than its drafter issues it (four eyes); a refused
    attempt stays in the audit log. Every member must still be certified."""
    batch = get_scoped(batch_id, actor, lock=True)
    if batch.status != "draft":
        raise Conflict(f"Batch {batch_id} is {batch.status}; only a draft is issued.", error="not_a_draft")
    if batch.drafted_by_user_id == actor.id:
        _audit("issue_refused", batch, actor, reason="four-eyes rule: the drafter cannot issue their own batch")
        error = Forbidden("Someone other than the drafter must issue this batch (four-eyes rule).",
                          error="own_batch")
        error.keep_changes = True  # the refusal itself stays in the audit log
        raise error
    reversed_ids = _unbacked_members(batch)
    if reversed_ids:
        raise Conflict(f"Reductions {', '.join(map(str, reversed_ids))} of batch {batch_id} were reversed after "
                       "pooling; an auditor replaces them (or the draft is discarded) before it is issued.",
                       error="members_reversed")
    db.session.execute(_insert_ignore(MarketSerialCounter.__table__), {"serial_key": batch.serial_key,
                                                                       "last_serial": 0})
    counter = db.session.scalar(select(MarketSerialCounter).where(MarketSerialCounter.serial_key == batch.serial_key)
                                .with_for_update())
    assert counter is not None
    first = counter.last_serial + 1
    last = counter.last_serial + batch.tonnes
    counter.last_serial = last
    table = MarketSerial.__table__
    for start in range(first, last + 1, 5000):
        db.session.execute(insert(table), [{"serial_key": batch.serial_key, "serial": n, "batch_id": batch.id,
                                            "transaction_id": None} for n in range(start, min(start + 5000, last + 1))])
    batch.serial_start, batch.serial_end = first, last
    batch.status = "issued"
    batch.issued_by_user_id = actor.id
    batch.issued_at = utcnow()
    db.session.flush()
    _audit("issue", batch, actor, before={"status": "draft"})
    return batch


def _insert_ignore(table: Any) -> Any:
    dialect = db.session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).on_conflict_do_nothing()


def discard(batch_id: int, *, actor: User, reason: Any) -> MarketBatch:
    """Drop a draft: its reductions are free to be pooled again (it never had serials)."""
    clean = _clean(reason, "reason", PURPOSE_MAX)
    batch = get_scoped(batch_id, actor, lock=True)
    if batch.status != "draft":
        raise Conflict(f"Batch {batch_id} is {batch.status}; only a draft is discarded.", error="not_a_draft")
    before = _summary(batch)
    db.session.execute(delete(MarketBatchMember).where(MarketBatchMember.batch_id == batch.id)
                       .execution_options(synchronize_session=False))
    batch.status = "discarded"
    batch.discarded_by_user_id = actor.id
    batch.discarded_at = utcnow()
    batch.discard_reason = clean
    db.session.flush()
    _audit("discard", batch, actor, before=before, after={"status": "discarded"}, reason=clean)
    return batch


# --- replacing a member --------------------------------------------------------------------------------


def replace_member(batch_id: int, reduction_id: int, *, actor: User, reason: Any) -> dict[str, Any]:
    """Take a reduction out of a batch (it was found fraudulent, double claimed, ...) while keeping
    the batch's tonnes fully backed: first from its unserialised rest, then with further unpooled
    reductions of its scope, oldest first. In an issued batch the member is kept, withdrawn (never
    pooled again); in a draft it is released. Afterwards the reduction can be reversed."""
    clean = _clean(reason, "reason", PURPOSE_MAX)
    batch = get_scoped(batch_id, actor, lock=True)
    if batch.status == "discarded":
        raise Conflict(f"Batch {batch_id} was discarded.", error="discarded")
    member = db.session.scalar(select(MarketBatchMember).where(MarketBatchMember.reduction_id == reduction_id,
                                                               MarketBatchMember.batch_id == batch.id))
    if member is None:
        raise NotFound(f"Reduction {reduction_id} is not in batch {batch_id}.", error="not_a_member")
    if member.status != "active":
        raise Conflict(f"Reduction {reduction_id} was already withdrawn from batch {batch_id}.",
                       error="already_withdrawn")
    _lock_pool(batch.methodology_id, batch.vintage)
    before = _summary(batch)
    need = batch.tonnes * GRAMS_PER_TONNE - (batch.pooled_grams - member.grams)
    added: list[tuple[int, int]] = []
    if need > 0:
        scope = Scope(batch.region_code, batch.include_subregions, batch.methodology_id, batch.vintage)
        added = _take(scope, need)
        if not added:
            raise Conflict(f"Batch {batch_id} needs {need} g more to stay backed without reduction {reduction_id}, "
                           "and its scope has not that much unpooled; nothing was changed.", error="no_replacement")
    if batch.status == "draft":
        db.session.delete(member)
    else:
        member.status = "withdrawn"
        member.withdrawn_at = utcnow()
        member.withdrawn_by_user_id = actor.id
        member.withdraw_reason = clean
    db.session.flush()
    _add_members(batch.id, added)
    _summarise(batch)
    db.session.flush()
    outcome = {"batch_id": batch.id, "reduction_id": reduction_id, "withdrawn_grams": member.grams,
               "added_reductions": [rid for rid, _ in added], "added_grams": sum(g for _, g in added),
               "pooled_grams": batch.pooled_grams, "unserialised_grams": batch.unserialised_grams}
    _audit("replace", batch, actor, before=before, after={**_summary(batch), **outcome}, reason=clean)
    return outcome


def check_reversible(reduction_id: int) -> None:
    """Refuse (409 ``pooled_in_batch``) to reverse a reduction that backs serials of an issued batch;
    the database refuses it as well, this says why and what to do."""
    row = db.session.execute(
        select(MarketBatch.id, MarketBatch.status, MarketBatch.serial_key, MarketBatch.serial_start,
               MarketBatch.serial_end)
        .join(MarketBatchMember, MarketBatchMember.batch_id == MarketBatch.id)
        .where(MarketBatchMember.reduction_id == reduction_id, MarketBatchMember.status == "active",
               MarketBatch.status.in_(ISSUED_STATUSES))).first()
    if row is not None:
        serials = serial_range(row.serial_key, row.serial_start, row.serial_end)
        raise Conflict(f"Reduction {reduction_id} backs market batch {row.id} ({serials}, {row.status}); an "
                       f"auditor replaces it in the batch (POST /api/v1/admin/market/batches/{row.id}/replace) "
                       "before it can be reversed.", error="pooled_in_batch")


# --- sales and retirements ---------------------------------------------------------------------------


def _used_ranges(batch_id: int, first: int, last: int) -> list[MarketTransaction]:
    return list(db.session.scalars(
        select(MarketTransaction).where(MarketTransaction.batch_id == batch_id,
                                        MarketTransaction.first_serial <= last, MarketTransaction.last_serial >= first)
        .order_by(MarketTransaction.first_serial)))


def _available_runs(batch: MarketBatch) -> Iterator[tuple[int, int]]:
    """The batch's available serials as contiguous (first, last) runs, lowest first."""
    run: list[int] = []
    for (number,) in db.session.execute(
            select(MarketSerial.serial).where(MarketSerial.batch_id == batch.id, MarketSerial.transaction_id.is_(None))
            .order_by(MarketSerial.serial).execution_options(yield_per=10000)):
        if run and number == run[1] + 1:
            run[1] = number
        else:
            if run:
                yield run[0], run[1]
            run = [number, number]
    if run:
        yield run[0], run[1]


def _range(batch: MarketBatch, first: int | None, last: int | None, tonnes: int | None) -> tuple[int, int]:
    """The serial range a sale or retirement takes: the one given, or the lowest contiguous run of
    ``tonnes`` available serials."""
    assert batch.serial_start is not None and batch.serial_end is not None
    if (first is None) != (last is None) or (first is None) == (tonnes is None):
        raise field_error("tonnes", "give either tonnes, or first_serial and last_serial")
    if first is not None and last is not None:
        for field, value in (("first_serial", first), ("last_serial", last)):
            if not batch.serial_start <= value <= batch.serial_end:
                raise field_error(field, f"must be within the batch's serials {batch.serial_start}..{batch.serial_end}",
                                  error="outside_batch")
        if last < first:
            raise field_error("last_serial", "must not be below first_serial")
        used = _used_ranges(batch.id, first, last)
        if used:
            taken = "; ".join(f"{t.kind} {t.id}: {serial_range(batch.serial_key, t.first_serial, t.last_serial)}"
                              for t in used)
            raise Conflict(f"Serials in {serial_range(batch.serial_key, first, last)} are already used ({taken}).",
                           error="serials_used")
        return first, last
    assert tonnes is not None
    if tonnes < 1:
        raise field_error("tonnes", "must be at least 1")
    runs = list(_available_runs(batch))
    left = sum(b - a + 1 for a, b in runs)
    if tonnes > left:
        raise Conflict(f"Batch {batch.id} has {left} of its {batch.tonnes} tonne(s) available; {tonnes} asked for.",
                       error="not_enough_serials")
    for a, b in runs:
        if b - a + 1 >= tonnes:
            return a, a + tonnes - 1
    longest = max(b - a + 1 for a, b in runs)
    raise Conflict(f"No {tonnes} contiguous serials are available in batch {batch.id} (longest run: {longest}); "
                   "give first_serial and last_serial, or fewer tonnes.", error="no_contiguous_range")


def _transact(batch_id: int, *, actor: User, kind: str, first_serial: int | None, last_serial: int | None,
              tonnes: int | None, details: dict[str, Any]) -> MarketTransaction:
    batch = get_scoped(batch_id, actor, lock=True)
    if batch.status in ("draft", "discarded"):
        raise Conflict(f"Batch {batch_id} is {batch.status}: it has no serials.", error="not_issued")
    if batch.status != "issued":
        raise Conflict(f"Every serial of batch {batch_id} is already {batch.status}.", error="batch_exhausted")
    first, last = _range(batch, first_serial, last_serial, tonnes)
    count = last - first + 1
    transaction = MarketTransaction(batch_id=batch.id, kind=kind, first_serial=first, last_serial=last,
                                    tonnes=count, created_by_user_id=actor.id, created_at=utcnow(), **details)
    if kind == "sale":
        transaction.amount_fen = details["unit_price_fen"] * count
    db.session.add(transaction)
    db.session.flush()
    # The serials' own rows decide: only still-available ones are taken, so a range another request
    # used meanwhile comes out short and nothing is written.
    taken = db.session.execute(
        update(MarketSerial).where(MarketSerial.batch_id == batch.id, MarketSerial.serial >= first,
                                   MarketSerial.serial <= last, MarketSerial.transaction_id.is_(None))
        .values(transaction_id=transaction.id).execution_options(synchronize_session=False)).rowcount
    if taken != count:
        raise Conflict(f"Serials in {serial_range(batch.serial_key, first, last)} were used at the same time by "
                       "another request; nothing was changed.", error="serials_used")
    before = batch.status
    batch.status = _status_when_used(batch)
    db.session.flush()
    _audit(kind, batch, actor, before={"status": before},
           after={"status": batch.status, "transaction_id": transaction.id,
                  "serials": serial_range(batch.serial_key, first, last), "tonnes": count, **details})
    return transaction


def _status_when_used(batch: MarketBatch) -> str:
    """issued while any serial is available; then sold, retired, or closed when both happened."""
    left = db.session.scalar(select(func.count()).select_from(MarketSerial).where(
        MarketSerial.batch_id == batch.id, MarketSerial.transaction_id.is_(None)))
    if left:
        return "issued"
    kinds = set(db.session.scalars(select(MarketTransaction.kind).distinct()
                                   .where(MarketTransaction.batch_id == batch.id)))
    return "closed" if len(kinds) > 1 else ("sold" if kinds == {"sale"} else "retired")


def price_fen(value: Any, field: str = "price_yuan_per_tonne") -> int:
    """A price in yuan as a decimal string (at most two decimals, above zero) to whole fen."""
    try:
        amount = Decimal(value) if isinstance(value, str) and value.strip() else None
        exact = amount is not None and amount.is_finite() and amount > 0 and amount == amount.quantize(Decimal("0.01"))
    except InvalidOperation:  # not a number, or too large to quantize (1E+400)
        exact = False
    if not exact:
        raise field_error(field, "must be an amount in yuan above zero with at most two decimals, as a string")
    assert amount is not None
    fen = int((amount * 100).to_integral_value(ROUND_DOWN))
    if fen > 10**15:
        raise field_error(field, "is too large")
    return fen


def sell(batch_id: int, *, actor: User, buyer: Any, price_yuan_per_tonne: Any, reference: Any = None,
         first_serial: int | None = None, last_serial: int | None = None,
         tonnes: int | None = None) -> MarketTransaction:
    details = {"buyer": _clean(buyer, "buyer", TEXT_MAX), "unit_price_fen": price_fen(price_yuan_per_tonne),
               "reference": _clean(reference, "reference", REFERENCE_MAX, required=False)}
    return _transact(batch_id, actor=actor, kind="sale", first_serial=first_serial, last_serial=last_serial,
                     tonnes=tonnes, details=details)


def retire(batch_id: int, *, actor: User, beneficiary: Any, purpose: Any, reference: Any = None,
           first_serial: int | None = None, last_serial: int | None = None,
           tonnes: int | None = None) -> MarketTransaction:
    details = {"beneficiary": _clean(beneficiary, "beneficiary", TEXT_MAX),
               "purpose": _clean(purpose, "purpose", PURPOSE_MAX),
               "reference": _clean(reference, "reference", REFERENCE_MAX, required=False)}
    return _transact(batch_id, actor=actor, kind="retirement", first_serial=first_serial, last_serial=last_serial,
                     tonnes=tonnes, details=details)


# --- exclusions ----------------------------------------------------------------------------------------


def exclude(reduction_ids: list[int], *, category: str, reason: Any, actor: User) -> list[dict[str, Any]]:
    """Keep reductions out of every batch (their tonnes are claimed elsewhere). Answers per item:
    ``excluded``, ``already_excluded``, ``pooled`` (in batch ``batch_id``: replace it there instead),
    ``not_found`` (or outside your region), ``reversed``."""
    clean = _clean(reason, "reason", PURPOSE_MAX)
    if category not in EXCLUSION_CATEGORIES:
        raise field_error("category", f"one of {', '.join(EXCLUSION_CATEGORIES)}")
    wanted = list(dict.fromkeys(reduction_ids))
    if not 1 <= len(wanted) <= MAX_EXCLUSIONS:
        raise field_error("reduction_ids", f"give 1 to {MAX_EXCLUSIONS} reduction ids")
    rows = {r.id: r for r in db.session.execute(
        select(Reduction.id, Reduction.region_code, Reduction.status, Reduction.methodology_id,
               Reduction.occurred_at).where(ledger.among(Reduction.id, wanted)))}
    scope = descendants(actor.scope_region_code) if actor.scope_region_code is not None else None
    visible = {rid for rid, r in rows.items() if scope is None or r.region_code in scope}
    for methodology_id, vintage in sorted({(rows[rid].methodology_id,
                                            rows[rid].occurred_at.astimezone(CHINA_STANDARD_TIME).year)
                                           for rid in visible}):
        _lock_pool(methodology_id, vintage)
    pooled: dict[int, int] = {}
    live: dict[int, int] = {}
    if visible:
        pooled = dict(db.session.execute(select(MarketBatchMember.reduction_id, MarketBatchMember.batch_id)
                                         .where(ledger.among(MarketBatchMember.reduction_id, visible))).all())
        live = dict(db.session.execute(select(MarketExclusion.reduction_id, MarketExclusion.id).where(
            ledger.among(MarketExclusion.reduction_id, visible), MarketExclusion.lifted_at.is_(None))).all())
    results: list[dict[str, Any]] = []
    now = utcnow()
    for rid in wanted:
        if rid not in visible:
            results.append({"reduction_id": rid, "status": "not_found"})
        elif rid in live:
            results.append({"reduction_id": rid, "status": "already_excluded", "exclusion_id": live[rid]})
        elif rid in pooled:
            results.append({"reduction_id": rid, "status": "pooled", "batch_id": pooled[rid]})
        elif rows[rid].status != "certified":
            results.append({"reduction_id": rid, "status": "reversed"})
        else:
            exclusion = MarketExclusion(reduction_id=rid, category=category, reason=clean,
                                        created_by_user_id=actor.id, created_at=now)
            db.session.add(exclusion)
            db.session.flush()
            audit.record("market_exclusion.create", "market_exclusion", exclusion.id, actor=actor,
                         region_code=rows[rid].region_code,
                         after={"reduction_id": rid, "category": category}, reason=clean)
            results.append({"reduction_id": rid, "status": "excluded", "exclusion_id": exclusion.id})
    return results


def lift_exclusion(exclusion_id: int, *, actor: User, reason: Any) -> MarketExclusion:
    clean = _clean(reason, "reason", PURPOSE_MAX)
    exclusion = db.session.scalar(select(MarketExclusion).where(MarketExclusion.id == exclusion_id).with_for_update())
    if exclusion is None:
        raise NotFound(f"No exclusion {exclusion_id}.")
    reduction = db.session.get(Reduction, exclusion.reduction_id)
    assert reduction is not None
    require_in_scope(actor, reduction.region_code)
    if exclusion.lifted_at is not None:
        raise Conflict(f"Exclusion {exclusion_id} was already lifted.", error="already_lifted")
    exclusion.lifted_at = utcnow()
    exclusion.lifted_by_user_id = actor.id
    exclusion.lift_reason = clean
    db.session.flush()
    audit.record("market_exclusion.lift", "market_exclusion", exclusion.id, actor=actor,
                 region_code=reduction.region_code,
                 before={"reduction_id": reduction.id, "category": exclusion.category}, after={"lifted": True},
                 reason=clean)
    return exclusion


def browse_exclusions(actor: User, *, live: bool | None, reduction_id: int | None, before: int | None,
                      limit: int) -> tuple[list[MarketExclusion], int | None]:
    query = scope_filter(select(MarketExclusion).join(Reduction, Reduction.id == MarketExclusion.reduction_id),
                         Reduction.region_code, actor)
    if live is not None:
        query = query.where(MarketExclusion.lifted_at.is_(None) if live else MarketExclusion.lifted_at.is_not(None))
    if reduction_id is not None:
        query = query.where(MarketExclusion.reduction_id == reduction_id)
    return keyset_page(query, MarketExclusion.id, before=before, limit=limit)


# --- reading -------------------------------------------------------------------------------------------


def browse(actor: User, *, status: str | None, methodology: str | None, vintage: int | None, before: int | None,
           limit: int) -> tuple[list[MarketBatch], int | None]:
    query = scope_filter(select(MarketBatch), MarketBatch.region_code, actor)
    if status is not None:
        query = query.where(MarketBatch.status == status)
    if methodology is not None:
        query = query.where(MarketBatch.methodology_id == methodology)
    if vintage is not None:
        query = query.where(MarketBatch.vintage == vintage)
    return keyset_page(query, MarketBatch.id, before=before, limit=limit)


def views(batches: list[MarketBatch]) -> list[dict[str, Any]]:
    """Batches as the admin API shows them, with their sold, retired and available tonnes (one
    query for all of them)."""
    used: dict[tuple[int, str], int] = {}
    if batches:
        used = {(batch_id, kind): int(tonnes) for batch_id, kind, tonnes in db.session.execute(
            select(MarketTransaction.batch_id, MarketTransaction.kind, func.sum(MarketTransaction.tonnes))
            .where(ledger.among(MarketTransaction.batch_id, [b.id for b in batches]))
            .group_by(MarketTransaction.batch_id, MarketTransaction.kind))}
    found = []
    for batch in batches:
        columns = {column.key: getattr(batch, column.key) for column in MarketBatch.__mapper__.column_attrs}
        sold, retired = used.get((batch.id, "sale"), 0), used.get((batch.id, "retirement"), 0)
        found.append({**columns, "serial_range": batch.serial_range, "unserialised_grams": batch.unserialised_grams,
                      "sold_tonnes": sold, "retired_tonnes": retired,
                      "available_tonnes": batch.tonnes - sold - retired if batch.serial_start is not None else 0})
    return found


def view(batch: MarketBatch) -> dict[str, Any]:
    return views([batch])[0]


def transactions_of(batch: MarketBatch) -> list[MarketTransaction]:
    return list(db.session.scalars(select(MarketTransaction).where(MarketTransaction.batch_id == batch.id)
                                   .order_by(MarketTransaction.first_serial)))


@dataclass(frozen=True)
class Block:
    """A contiguous run of a batch's serials in one state."""

    first: int
    last: int
    state: str  # available | sold | retired
    transaction: MarketTransaction | None

    @property
    def tonnes(self) -> int:
        return self.last - self.first + 1


def blocks(batch: MarketBatch) -> list[Block]:
    """The batch's serials as blocks: each sale and retirement, and the available runs between."""
    if batch.serial_start is None or batch.serial_end is None:
        return []
    found = [Block(t.first_serial, t.last_serial, "sold" if t.kind == "sale" else "retired", t)
             for t in transactions_of(batch)]
    found += [Block(a, b, "available", None) for a, b in _available_runs(batch)]
    return sorted(found, key=lambda b: b.first)


def detail(batch: MarketBatch) -> dict[str, Any]:
    return {**view(batch), "transactions": [transaction_view(t, batch) for t in transactions_of(batch)],
            "blocks": [block_view(b, batch) for b in blocks(batch)]}


def transaction_view(transaction: MarketTransaction, batch: MarketBatch) -> dict[str, Any]:
    columns = {column.key: getattr(transaction, column.key)
               for column in MarketTransaction.__mapper__.column_attrs}
    token = certificate_token(transaction.id) if transaction.kind == "retirement" else None
    return {**columns, "serials": serial_range(batch.serial_key, transaction.first_serial, transaction.last_serial),
            "certificate_token": token}


def block_view(block: Block, batch: MarketBatch) -> dict[str, Any]:
    return {"serials": serial_range(batch.serial_key, block.first, block.last), "first_serial": block.first,
            "last_serial": block.last, "tonnes": block.tonnes, "state": block.state,
            "transaction_id": block.transaction.id if block.transaction else None}


def members_page(batch: MarketBatch, *, before: int | None, limit: int) -> tuple[list[Any], int | None]:
    query = (select(MarketBatchMember, Reduction)
             .join(Reduction, Reduction.id == MarketBatchMember.reduction_id)
             .where(MarketBatchMember.batch_id == batch.id))
    rows, next_key = keyset_page(query, MarketBatchMember.reduction_id, before=before, limit=limit)
    return [{"reduction_id": m.reduction_id, "grams": m.grams, "status": m.status, "added_at": m.added_at,
             "withdrawn_at": m.withdrawn_at, "withdraw_reason": m.withdraw_reason, "region": r.region_code,
             "occurred_at": r.occurred_at, "activity_type": r.activity_type, "methodology": r.methodology_ref,
             "factors_sha256": r.factors_sha256, "reduction_status": r.status} for m, r in rows], next_key


# --- the exchange export -------------------------------------------------------------------------------

EXPORT_FORMAT = "carbon-points.market-batch/1"
CSV_HEADER = ("serials", "serial_key", "first_serial", "last_serial", "tonnes", "state", "transaction_id",
              "counterparty", "batch_id", "batch_status", "region", "methodology", "methodology_versions", "vintage",
              "issued_at", "reductions", "pooled_grams", "unserialised_grams", "reductions_sha256")


def _counterparty(block: Block) -> str:
    if block.transaction is None:
        return ""
    return block.transaction.buyer or block.transaction.beneficiary or ""


def export_json(batch: MarketBatch) -> dict[str, Any]:
    """The batch for the exchange, as JSON (``format: carbon-points.market-batch/1``):

    ``batch`` (id, status, region with names, methodology id, title and versions, vintage, tonnes,
    serial range, issued_at), ``serials`` (one block per sale, retirement or available run:
    serials, first/last, tonnes, state, transaction id, counterparty), and ``reductions``, the
    members' summary: count, pooled and unserialised grams, the id range, and ``sha256`` over one
    ``"<reduction_id>:<grams>\\n"`` line per active member in id order (recompute it from
    ``GET .../reductions`` to check the list)."""
    region = db.session.get(Region, batch.region_code)
    entry = registry().get(batch.methodology_id) if batch.methodology_id in registry() else None
    first_id, last_id = db.session.execute(
        select(func.min(MarketBatchMember.reduction_id), func.max(MarketBatchMember.reduction_id))
        .where(MarketBatchMember.batch_id == batch.id, MarketBatchMember.status == "active")).one()
    return {
        "format": EXPORT_FORMAT, "generated_at": utcnow(),
        "batch": {"id": batch.id, "status": batch.status, "region": batch.region_code,
                  "region_name": region.name if region else None, "region_name_en": region.name_en if region else None,
                  "include_subregions": batch.include_subregions, "methodology": batch.methodology_id,
                  "methodology_title": entry.methodology.title if entry else None,
                  "methodology_title_zh": entry.methodology.title_zh if entry else None,
                  "methodology_versions": batch.methodology_versions, "vintage": batch.vintage,
                  "tonnes": batch.tonnes, "serials": batch.serial_range, "serial_key": batch.serial_key,
                  "serial_start": batch.serial_start, "serial_end": batch.serial_end, "issued_at": batch.issued_at},
        "serials": [{**block_view(b, batch), "counterparty": _counterparty(b)} for b in blocks(batch)],
        "reductions": {"count": batch.member_count, "pooled_grams": batch.pooled_grams,
                       "unserialised_grams": batch.unserialised_grams, "first_id": first_id, "last_id": last_id,
                       "sha256": batch.members_sha256,
                       "sha256_of": "one '<reduction_id>:<grams>\\n' line per active member, in id order"},
    }


def export_csv(batch: MarketBatch) -> str:
    """The batch for the exchange, as CSV (RFC 4180, UTF-8, CRLF): the header ``CSV_HEADER``, then one
    row per block of serials (each sale, each retirement, each available run), every row carrying the
    batch's region, methodology and versions (``;``-separated), vintage and the members' summary
    (count, pooled and unserialised grams, sha256 as in ``export_json``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    versions = ";".join(str(v) for v in batch.methodology_versions)
    issued_at = batch.issued_at.isoformat() if batch.issued_at else ""
    for block in blocks(batch):
        writer.writerow((serial_range(batch.serial_key, block.first, block.last), batch.serial_key, block.first,
                         block.last, block.tonnes, block.state,
                         block.transaction.id if block.transaction else "", _cell(_counterparty(block)), batch.id,
                         batch.status, batch.region_code, batch.methodology_id, versions, batch.vintage, issued_at,
                         batch.member_count, batch.pooled_grams, batch.unserialised_grams, batch.members_sha256))
    return buffer.getvalue()


def _cell(value: str) -> str:
    """Text a spreadsheet would run as a formula is written as text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# --- retirement certificates -----------------------------------------------------------------------------


def _certificate_message(transaction_id: int) -> bytes:
    return f"carbon-points retirement certificate {transaction_id}".encode()


def certificate_token(transaction_id: int) -> str:
    """``<id>.<Ed25519 signature>``: unguessable, and anyone with the published key can check that
    the platform issued the URL for that retirement."""
    return f"{transaction_id}.{b64url(signer().sign(_certificate_message(transaction_id)))}"


def certificate(token: str) -> dict[str, Any]:
    """A retirement's public certificate. Any token the platform did not sign, or that names no
    retirement, is simply not found (nothing says which)."""
    match = TOKEN_PATTERN.match(token) if isinstance(token, str) else None
    transaction = None
    if match is not None and signer().verify(_certificate_message(int(match.group(1))), unb64url(match.group(2))):
        transaction = db.session.get(MarketTransaction, int(match.group(1)))
    if transaction is None or transaction.kind != "retirement":
        raise NotFound("No such certificate.")
    batch = get(transaction.batch_id)
    region = db.session.get(Region, batch.region_code)
    entry = registry().get(batch.methodology_id) if batch.methodology_id in registry() else None
    content = {
        "certificate_no": f"RC-{transaction.id:08d}",
        "retirement_id": transaction.id,
        "serials": serial_range(batch.serial_key, transaction.first_serial, transaction.last_serial),
        "tonnes": transaction.tonnes,
        "beneficiary": transaction.beneficiary,
        "purpose": transaction.purpose,
        "retired_at": transaction.created_at.isoformat(),
        "batch_id": batch.id,
        "methodology": batch.methodology_id,
        "methodology_title": entry.methodology.title if entry else None,
        "methodology_title_zh": entry.methodology.title_zh if entry else None,
        "methodology_versions": batch.methodology_versions,
        "region": batch.region_code,
        "region_name": region.name if region else None,
        "region_name_en": region.name_en if region else None,
        "vintage": batch.vintage,
    }
    claims = {**content, "iat": int(transaction.created_at.timestamp())}
    return {**content, "key_id": signer().key_id,
            "signed": signer().sign_jws(claims, typ="retirement-certificate+jwt")}
