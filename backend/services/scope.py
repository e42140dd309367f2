"""Regional scope of staff: an operator of Yueyang administers Yueyang and its districts only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from backend.db import db
from backend.errors import Forbidden
from backend.models import Region, User
from backend.services.regions import is_within


def descendants(code: str) -> set[str]:
    """``code`` and every region below it."""
    rows = db.session.execute(select(Region.code, Region.parent_code)).all()
    children: dict[str | None, list[str]] = {}
    for child, parent in rows:
        children.setdefault(parent, []).append(child)
    found, stack = set(), [code]
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(children.get(current, []))
    return found


def require_in_scope(actor: User, region_code: str) -> None:
    if not is_within(region_code, actor.scope_region_code):
        raise Forbidden(
            f"Region {region_code} is outside your scope ({actor.scope_region_code}).", error="out_of_scope"
        )


def scope_filter(query: Select[Any], column: Any, actor: User) -> Select[Any]:
    if actor.scope_region_code is None:
        return query
    return query.where(column.in_(sorted(descendants(actor.scope_region_code))))
