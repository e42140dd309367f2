"""Approved methodology and rule versions, cached per process, invalidated the moment one changes.

Hot paths (every redemption, every ingested batch) ask which version is in force; building that
index costs a query and a sort each time. Each process keeps the indexes it built, tagged with a
*generation* token kept in Redis. Any commit that adds or changes a ``PolicyVersion`` (approval,
retirement, installing defaults) writes a new token after the commit, so every process rebuilds on
its next lookup. Redis is never the only copy (DESIGN invariant 8): when it cannot be reached the
index is built from the database every time; the token expires after ``GENERATION_TTL`` seconds,
so even a change whose new token could not be written (Redis down at that moment) is seen within
that time. The cached versions are transient copies of committed rows: read them, never add them
to a session.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from flask import Flask
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from backend.db import database_key, db
from backend.extensions import store
from backend.models import PolicyVersion
from backend.services.governance import VersionIndex

log = logging.getLogger(__name__)
TOKEN = re.compile(r"[0-9a-f]{16}")  # what secrets.token_hex(8) writes

GENERATION_KEY = "carbon:policy:generation"
GENERATION_TTL = 300  # seconds
MAX_INDEXES = 256
_CHANGED = "policy_versions_changed"
_COLUMNS = tuple(PolicyVersion.__table__.c)
_indexes: dict[tuple[str, str, str], tuple[str, VersionIndex]] = {}


def index(kind: str, subject: str) -> VersionIndex:
    """The approved and retired versions of ``kind``/``subject`` (see ``governance.VersionIndex``)."""
    generation = _generation()
    key = (database_key(), kind, subject)
    hit = _indexes.get(key)
    if generation is not None and hit is not None and hit[0] == generation:
        return hit[1]
    built = _build(kind, subject)  # after reading the token: a change committed meanwhile bumps it again
    if generation is not None:
        if len(_indexes) >= MAX_INDEXES:  # many databases in one process: only the test suite
            _indexes.clear()
        _indexes[key] = (generation, built)
    return built


def _build(kind: str, subject: str) -> VersionIndex:
    rows = db.session.execute(select(*_COLUMNS).where(
        PolicyVersion.kind == kind, PolicyVersion.subject == subject,
        PolicyVersion.status.in_(("approved", "retired"))))
    return VersionIndex.build(PolicyVersion(**{c.key: value for c, value in zip(_COLUMNS, row, strict=True)})
                              for row in rows)


def _generation() -> str | None:
    """The current token, made if missing (Redis flushed or expired) and replaced if it is not one
    this module writes (16 hex digits): never trusted. None if Redis is unreachable."""
    try:
        try:
            token = store.get(GENERATION_KEY)
        except ResponseError:  # WRONGTYPE: a key of another type
            token = ""
        if token is None:
            fresh = secrets.token_hex(8)
            token = fresh if store.set(GENERATION_KEY, fresh, nx=True, ex=GENERATION_TTL) else store.get(GENERATION_KEY)
        if not (isinstance(token, str) and TOKEN.fullmatch(token)):
            token = secrets.token_hex(8)
            store.set(GENERATION_KEY, token, ex=GENERATION_TTL)  # overwrites a key of any type
        return token
    except RedisError:
        return None


def invalidate() -> None:
    """Every process rebuilds its indexes on the next lookup."""
    _indexes.clear()
    try:
        store.set(GENERATION_KEY, secrets.token_hex(8), ex=GENERATION_TTL)
    except RedisError:
        log.warning("could not publish a policy version change to Redis; other processes see it within %d s",
                    GENERATION_TTL)


def _note_changes(session: Session, *_args: Any) -> None:
    if any(isinstance(obj, PolicyVersion) for obj in (*session.new, *session.dirty)):
        session.info[_CHANGED] = True


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a released savepoint: the transaction may still roll back
        return
    if session.info.pop(_CHANGED, False):
        invalidate()


def _after_rollback(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint rolled back: earlier changes still count
        session.info.pop(_CHANGED, None)


def init_app(app: Flask) -> None:
    """Watch every session for policy version changes (once per process)."""
    if not event.contains(Session, "before_flush", _note_changes):
        event.listen(Session, "before_flush", _note_changes)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
