"""Online communities (网络虚拟社区): create, browse, join, leave."""

from __future__ import annotations

from sqlalchemy import func, select

from backend.config import current_settings
from backend.db import db
from backend.errors import Conflict, NotFound, field_error
from backend.models import Community, CommunityMember, Resident
from backend.services.pagination import keyset_page
from backend.services.regions import get_region


def create(resident: Resident, name: str, region: str, description: str) -> Community:
    name = " ".join(name.split())
    if not name:
        raise field_error("name", "must not be blank")
    region_row = get_region(region)
    exists = db.session.scalar(
        select(Community.id).where(Community.region_code == region_row.code, Community.name == name)
    )
    if exists is not None:
        raise Conflict(f"A community named {name!r} already exists in this region.", error="duplicate_name",
                       errors={"json": {"name": ["is taken in this region"]}})
    community = Community(
        name=name, region_code=region_row.code, description=description.strip(),
        created_by_resident_id=resident.id,
    )
    db.session.add(community)
    db.session.flush()
    _add_member(resident, community)
    return community


def get(community_id: int) -> Community:
    community = db.session.get(Community, community_id)
    if community is None:
        raise NotFound(f"No community {community_id}.")
    return community


def member_count(community_id: int) -> int:
    return member_counts([community_id]).get(community_id, 0)


def is_member(resident_id: int, community_id: int) -> bool:
    return db.session.get(CommunityMember, (community_id, resident_id)) is not None


def join(resident: Resident, community_id: int) -> Community:
    community = get(community_id)
    if is_member(resident.id, community.id):
        raise Conflict("You are already a member of this community.", error="already_member")
    _add_member(resident, community)
    return community


def _add_member(resident: Resident, community: Community) -> None:
    limit = current_settings().max_communities_per_resident
    count = db.session.scalar(
        select(func.count()).select_from(CommunityMember).where(CommunityMember.resident_id == resident.id)
    )
    if count >= limit:
        raise Conflict(f"A resident can be in at most {limit} communities.", error="too_many_communities")
    db.session.add(CommunityMember(community_id=community.id, resident_id=resident.id))
    db.session.flush()


def leave(resident: Resident, community_id: int) -> None:
    member = db.session.get(CommunityMember, (get(community_id).id, resident.id))
    if member is None:
        raise Conflict("You are not a member of this community.", error="not_a_member")
    db.session.delete(member)
    db.session.flush()


def browse(*, region: str | None, q: str | None, before: int | None, limit: int) -> tuple[list[Community], int | None]:
    query = select(Community)
    if region is not None:
        query = query.where(Community.region_code == get_region(region, field="region").code)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Community.name.ilike(f"%{escaped}%", escape="\\"))
    return keyset_page(query, Community.id, before=before, limit=limit)


def member_counts(community_ids: list[int]) -> dict[int, int]:
    if not community_ids:
        return {}
    rows = db.session.execute(
        select(CommunityMember.community_id, func.count())
        .where(CommunityMember.community_id.in_(community_ids))
        .group_by(CommunityMember.community_id)
    ).all()
    return {cid: n for cid, n in rows}
