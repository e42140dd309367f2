"""Append to and verify the hash-chained audit log."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db import db, utcnow
from backend.models import AuditHead, AuditLog, User
from backend.models.audit import GENESIS_HASH

SYSTEM_ACTOR = "system"


def jsonable(value: Any) -> Any:
    """Plain JSON values only, so a row hashes the same after a database round trip."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        raise TypeError("floats are not allowed in audit records; use Decimal strings")
    return value


def _canonical(row: AuditLog) -> bytes:
    content = {
        "id": row.id,
        "occurred_at": row.occurred_at.isoformat(),
        "actor_user_id": row.actor_user_id,
        "actor": row.actor,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "region_code": row.region_code,
        "before": row.before,
        "after": row.after,
        "reason": row.reason,
    }
    return json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def compute_hash(prev_hash: str, row: AuditLog) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(row)).hexdigest()


def record(
    action: str,
    target_type: str,
    target_id: Any = None,
    *,
    actor: User | None,
    region_code: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
    session: Session | None = None,
) -> AuditLog:
    """Append one entry. Locks the chain head so concurrent writers never fork the chain."""
    session = session or db.session
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    # Ids are gapless and taken under the head lock, so the hash can cover the id and a
    # missing row shows as a gap; the row is written once, complete (UPDATE is refused).
    row = AuditLog(
        id=(head.last_id or 0) + 1,
        occurred_at=utcnow(),
        actor_user_id=actor.id if actor is not None else None,
        actor=actor.username if actor is not None else SYSTEM_ACTOR,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        region_code=region_code,
        before=jsonable(before) if before is not None else None,
        after=jsonable(after) if after is not None else None,
        reason=reason,
        prev_hash=head.last_hash,
    )
    row.hash = compute_hash(head.last_hash, row)
    session.add(row)
    session.flush()
    head.last_id = row.id
    head.last_hash = row.hash
    session.flush()
    return row


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_at: int | None = None
    problem: str | None = None


def verify_chain(session: Session, batch: int = 5000) -> ChainReport:
    """Walk the chain in id order and recompute every hash; report the first break."""
    prev_hash = GENESIS_HASH
    checked = 0
    last_id: int | None = None
    for row in _rows(session, batch):
        expected_id = (last_id or 0) + 1
        if row.id != expected_id:
            return ChainReport(False, checked, expected_id, f"row {expected_id} is missing (ids must be gapless)")
        if row.prev_hash != prev_hash:
            return ChainReport(False, checked, row.id, "prev_hash does not match the previous row's hash "
                               "(a row was deleted or inserted out of order)")
        if compute_hash(prev_hash, row) != row.hash:
            return ChainReport(False, checked, row.id, "hash does not match the row's content (the row was edited)")
        prev_hash = row.hash
        last_id = row.id
        checked += 1
    head = session.get(AuditHead, 1)
    if head is None:
        return ChainReport(False, checked, None, "the audit head row is missing")
    if head.last_hash != prev_hash or head.last_id != last_id:
        return ChainReport(False, checked, head.last_id,
                           "the chain ends before the recorded head (rows were deleted at the end)")
    return ChainReport(True, checked)


def _rows(session: Session, batch: int) -> Iterator[AuditLog]:
    after = 0
    while True:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.id > after).order_by(AuditLog.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].id
        session.expunge_all()


def browse(
    *, action: str | None, target_type: str | None, target_id: str | None, before: int | None, limit: int
) -> tuple[list[AuditLog], int | None]:
    from backend.services.pagination import keyset_page

    query = select(AuditLog)
    if action:
        query = query.where(AuditLog.action == action)
    if target_type:
        query = query.where(AuditLog.target_type == target_type)
    if target_id:
        query = query.where(AuditLog.target_id == target_id)
    return keyset_page(query, AuditLog.id, before=before, limit=limit)
