"""Ids of rows whose identity never changes once committed, remembered per process.

A ledger account is found by its kind and owner on every spend (a resident's wallet, a merchant's
hold and settlement accounts); the pair never changes and the row is never deleted (database
triggers refuse both). So an id, once *committed*, can be remembered. Ids are staged on the session
and kept only when its transaction commits: an account created by a transaction that rolls back is
never remembered. Keyed by database, since one process may serve several (the test suite does).
"""

from __future__ import annotations

from collections.abc import Hashable

from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from backend.db import database_key, db

MAX_ENTRIES = 200_000  # about 40 MB at worst; then start again
_STAGED = "id_cache_staged"
_ids: dict[tuple[str, Hashable], int] = {}


def _database() -> str:
    return database_key()


def get_many(keys: list[Hashable]) -> dict[Hashable, int]:
    database = _database()
    return {key: _ids[(database, key)] for key in keys if (database, key) in _ids}


def stage(found: dict[Hashable, int]) -> None:
    """Remember ``found`` once the current transaction commits, unless the savepoint it was found
    in rolls back first (the rows may have been created inside it)."""
    if found:
        database = _database()
        db.session.info.setdefault(_STAGED, []).append(
            (db.session.get_nested_transaction(), [((database, key), value) for key, value in found.items()]))


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a released savepoint: the transaction may still roll back
        return
    staged = session.info.pop(_STAGED, None)
    if staged:
        entries = [entry for _, found in staged for entry in found]
        if len(_ids) + len(entries) > MAX_ENTRIES:
            _ids.clear()
        _ids.update(entries)


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    staged = session.info.get(_STAGED)
    if not staged:
        return
    if not previous.nested:
        session.info.pop(_STAGED, None)
        return
    session.info[_STAGED] = [(where, found) for where, found in staged if not _inside(where, previous)]


def _inside(where: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    while where is not None:
        if where is savepoint:
            return True
        where = where.parent
    return False


def init_app(app: Flask) -> None:
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_soft_rollback", _after_soft_rollback)
