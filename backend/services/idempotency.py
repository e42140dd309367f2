"""Idempotency-Key for a resident's spending requests: a retry finds what the first try made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select

from backend.db import db
from backend.errors import Conflict

T = TypeVar("T")


def earlier(model: type[T], resident_id: int, key: str, *, same: Callable[[T], bool], what: str) -> T | None:
    """The row an earlier request with this key made (the model has ``resident_id`` and
    ``idempotency_key``, unique together), or None; 409 if the key was used for something else."""
    row: Any = db.session.scalar(select(model).where(model.resident_id == resident_id,  # type: ignore[attr-defined]
                                                     model.idempotency_key == key))  # type: ignore[attr-defined]
    if row is not None and not same(row):
        raise Conflict(f"This Idempotency-Key was already used for {what}.", error="idempotency_key_reused")
    return row
