"""Ids of rows whose identity never changes once committed, remembered per process.

A ledger account is found by its kind and owner on every spend (a resident's wallet, a merchant's
hold and settlement accounts); the pair never changes and the row is never deleted (database
triggers refuse both). So an id, once *committed*, can be remembered. Ids are staged on the session
and kept only when its transaction commits: an account created by a transaction that rolls back is
never remembered. Keyed by database, since one process may serve several (the test suite does).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session

from backend.db import db

MAX_ENTRIES = 200_000  # about 40 MB at worst; then start again
_STAGED = "id_cache_staged"
_ids: dict[tuple[str, Hashable], int] = {}


def _database() -> str:
    return str(db.session.get_bind().url)


def get_many(keys: list[Hashable]) -> dict[Hashable, int]:
    database = _database()
    return {key: _ids[(database, key)] for key in keys if (database, key) in _ids}


def stage(found: dict[Hashable, int]) -> None:
    """Remember ``found`` once the current transaction commits."""
    if found:
        database = _database()
        db.session.info.setdefault(_STAGED, []).extend(((database, key), value) for key, value in found.items())


def _after_commit(session: Session) -> None:
    staged = session.info.pop(_STAGED, None)
    if staged:
        if len(_ids) + len(staged) > MAX_ENTRIES:
            _ids.clear()
        _ids.update(staged)


def _after_rollback(session: Session, *_args: Any) -> None:
    session.info.pop(_STAGED, None)


def init_app(app: Flask) -> None:
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
