"""Regions (GB/T 2260) and the parent chain that rule and methodology inheritance walks."""

from __future__ import annotations

from sqlalchemy import literal, select
from sqlalchemy.orm import aliased

from backend.db import database_key, db
from backend.errors import field_error
from backend.models import Region, User


def get_region(code: str, *, field: str = "region", location: str = "json") -> Region:
    region = db.session.get(Region, code) if isinstance(code, str) else None
    if region is None:
        raise field_error(field, f"unknown region code {code!r}", error="unknown_region", location=location)
    return region


MAX_DEPTH = 8  # GB/T 2260 has three levels; a longer chain can only be a loop in the data


# Regions are only ever added, never moved or removed, so a chain once read stays true: keep it
# per process (keyed by database too). Every spend, redemption and rule lookup walks a chain.
_CHAINS: dict[tuple[str, str], tuple[str, ...]] = {}


def ancestors(code: str) -> list[str]:
    """The region itself, then its parent, up to the province: the inheritance order."""
    key = (database_key(), code)
    if key not in _CHAINS:
        chain = _read_chain(code)
        if chain is None:
            return [code]
        _CHAINS[key] = tuple(chain)
    return list(_CHAINS[key])


def _read_chain(code: str) -> list[str] | None:
    """One recursive query; None when there is no such region."""
    chain = (select(Region.code, Region.parent_code, literal(0).label("depth"))
             .where(Region.code == code).cte("chain", recursive=True))
    parent = aliased(Region)
    chain = chain.union_all(select(parent.code, parent.parent_code, chain.c.depth + 1)
                            .join(chain, parent.code == chain.c.parent_code).where(chain.c.depth < MAX_DEPTH))
    found: list[str] = []
    for region in db.session.scalars(select(chain.c.code).order_by(chain.c.depth)):
        if region in found:
            break
        found.append(region)
    return found or None


def is_within(code: str, scope: str | None) -> bool:
    """True when ``code`` is ``scope`` or lies below it; a ``None`` scope covers everything."""
    return scope is None or scope in ancestors(code)


def list_regions() -> list[Region]:
    return list(db.session.scalars(select(Region).order_by(Region.code)))


def create_region(code: str, name: str, name_en: str, parent_code: str | None, *, actor: User) -> Region:
    if not (len(code) == 6 and code.isdigit()):
        raise field_error("code", "must be a six-digit GB/T 2260 code")
    if db.session.get(Region, code) is not None:
        raise field_error("code", f"region {code} already exists", error="duplicate")
    if parent_code is None:
        level = "province"
        if not code.endswith("0000"):
            raise field_error("parent", "a region below province level needs its parent")
    else:
        parent = get_region(parent_code, field="parent")
        level = {"province": "city", "city": "district"}.get(parent.level)
        if level is None:
            raise field_error("parent", "a district cannot have child regions")
        prefix = parent.code[:2] if parent.level == "province" else parent.code[:4]
        if not code.startswith(prefix) or code == parent.code:
            raise field_error("code", f"a child of {parent.code} must start with {prefix}")
    region = Region(code=code, name=name, name_en=name_en, level=level, parent_code=parent_code)
    db.session.add(region)
    db.session.flush()
    from backend.services import audit

    audit.record("region.create", "region", region.code, actor=actor, region_code=region.code,
                 after={"name": name, "name_en": name_en, "parent": parent_code})
    return region
