"""Governed versions, one machinery for methodology parameters and exchange rules.

draft → submitted → approved | rejected; an approved version may later be retired. Only an auditor
who is not the author approves or rejects (four eyes, DESIGN invariant 7); every action, and every
refused approval, lands in the hash-chained audit log. What a version contains is fixed by the
database once it leaves draft. Each kind (methodology, rules) plugs in through a ``PolicyKind``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from flask import Flask, current_app
from sqlalchemy import func, select

from backend.db import db, utcnow
from backend.errors import Conflict, Forbidden, NotFound, field_error
from backend.models import PolicyVersion, Role, User
from backend.services import audit
from backend.services.regions import ancestors, get_region
from backend.services.scope import descendants, require_in_scope


class PolicyKind(Protocol):
    """What a kind of governed policy supplies to the shared machinery."""

    name: str

    def subject_exists(self, subject: str) -> bool: ...

    def validate_payload(self, subject: str, payload: Any) -> dict[str, Any]: ...

    def formula_version(self, subject: str) -> int | None: ...

    def payload_digest(self, payload: dict[str, Any]) -> str: ...


def init_app(app: Flask) -> None:
    """The kinds of governed policy this app knows (nothing registers itself at import)."""
    from backend.services.methodologies import MethodologyKind
    from backend.services.rules import RulesKind

    app.extensions["policy_kinds"] = {kind.name: kind for kind in (MethodologyKind(), RulesKind())}


def policy_kind(name: str) -> PolicyKind:
    return current_app.extensions["policy_kinds"][name]


def _subject_or_404(kind: PolicyKind, subject: str) -> None:
    if not kind.subject_exists(subject):
        raise NotFound(f"No {kind.name} {subject!r}.", error=f"unknown_{kind.name}")


def _region_or_none(region: str | None, actor: User | None) -> str | None:
    if region is None:
        if actor is not None and actor.scope_region_code is not None:
            raise Forbidden("Only staff without a regional scope may change the national default.",
                            error="out_of_scope")
        return None
    code = get_region(region).code
    if actor is not None:
        require_in_scope(actor, code)
    return code


def _check_effective_from(effective_from: datetime | None, now: datetime) -> None:
    if effective_from is not None and effective_from <= now:
        raise field_error("effective_from", "must be in the future (versions never apply retroactively)",
                          error="effective_from_passed")


def create_draft(
    kind_name: str, subject: str, *, region: str | None, payload: Any, effective_from: datetime | None,
    note: str, actor: User,
) -> PolicyVersion:
    kind = policy_kind(kind_name)
    _subject_or_404(kind, subject)
    region_code = _region_or_none(region, actor)
    clean = kind.validate_payload(subject, payload)
    _check_effective_from(effective_from, utcnow())
    latest = db.session.scalar(
        select(func.max(PolicyVersion.version)).where(PolicyVersion.kind == kind.name, PolicyVersion.subject == subject)
    )
    version = PolicyVersion(
        kind=kind.name, subject=subject, version=(latest or 0) + 1, region_code=region_code, payload=clean,
        payload_sha256=kind.payload_digest(clean), formula_version=kind.formula_version(subject),
        effective_from=effective_from, status="draft", note=note.strip(), author_user_id=actor.id,
    )
    db.session.add(version)
    db.session.flush()
    _audit("draft", version, actor, after=_summary(version))
    return version


def get(kind_name: str, subject: str, number: int, *, lock: bool = False) -> PolicyVersion:
    kind = policy_kind(kind_name)
    _subject_or_404(kind, subject)
    if not 1 <= number <= 2**31 - 1:  # version numbers are 32-bit in the database
        raise NotFound(f"{subject} has no version {number}.", error="unknown_version")
    query = select(PolicyVersion).where(
        PolicyVersion.kind == kind.name, PolicyVersion.subject == subject, PolicyVersion.version == number
    )
    version = db.session.scalar(query.with_for_update() if lock else query)
    if version is None:
        raise NotFound(f"{subject} has no version {number}.", error="unknown_version")
    return version


def update_draft(
    kind_name: str, subject: str, number: int, *, actor: User, payload: Any | None = None,
    effective_from: datetime | None = None, clear_effective_from: bool = False, note: str | None = None,
) -> PolicyVersion:
    version = get(kind_name, subject, number, lock=True)
    if version.status != "draft":
        raise Conflict(f"{version.ref} is {version.status}; only a draft can be edited.", error="not_a_draft")
    if version.author_user_id != actor.id:
        raise Forbidden("Only the author edits a draft.", error="not_author")
    before = _summary(version)
    kind = policy_kind(kind_name)
    if payload is not None:
        version.payload = kind.validate_payload(subject, payload)
        version.payload_sha256 = kind.payload_digest(version.payload)
    if clear_effective_from:
        version.effective_from = None
    elif effective_from is not None:
        _check_effective_from(effective_from, utcnow())
        version.effective_from = effective_from
    if note is not None:
        version.note = note.strip()
    db.session.flush()
    _audit("edit", version, actor, before=before, after=_summary(version))
    return version


def submit(kind_name: str, subject: str, number: int, *, actor: User) -> PolicyVersion:
    version = get(kind_name, subject, number, lock=True)
    if version.status != "draft":
        raise Conflict(f"{version.ref} is {version.status}; only a draft can be submitted.", error="not_a_draft")
    if version.author_user_id != actor.id:
        raise Forbidden("Only the author submits a draft.", error="not_author")
    _check_effective_from(version.effective_from, utcnow())
    version.status = "submitted"
    version.submitted_at = utcnow()
    db.session.flush()
    _audit("submit", version, actor, after=_summary(version))
    return version


def _require_second_auditor(version: PolicyVersion, actor: User, action: str) -> None:
    if Role.AUDITOR not in actor.roles:
        raise Forbidden(f"Only an auditor may {action} a version.", error="role_required")
    if version.author_user_id == actor.id:
        _audit(f"{action}_refused", version, actor,
               reason="four-eyes rule: the author cannot decide on their own version")
        error = Forbidden("An auditor other than the author must decide on this version (four-eyes rule).",
                          error="own_version")
        error.keep_changes = True  # the refusal itself stays in the audit log
        raise error


def approve(kind_name: str, subject: str, number: int, *, actor: User) -> PolicyVersion:
    version = get(kind_name, subject, number, lock=True)
    _require_second_auditor(version, actor, "approve")
    if version.region_code is not None:
        require_in_scope(actor, version.region_code)
    if version.status != "submitted":
        raise Conflict(f"{version.ref} is {version.status}; only a submitted version can be approved.",
                       error="not_submitted")
    now = utcnow()
    kind = policy_kind(kind_name)
    current_formula = kind.formula_version(subject)
    if version.formula_version != current_formula:
        raise Conflict(f"{version.ref} was drafted for formula version {version.formula_version}; the installed "
                       f"code is version {current_formula}. Draft it again.", error="formula_changed")
    if version.effective_from is None:
        version.effective_from = now
    elif version.effective_from <= now:
        raise Conflict("Its effective_from has passed; versions never apply retroactively. Reject it and draft "
                       "again with a future date.", error="effective_from_passed")
    clash = db.session.scalar(select(PolicyVersion.version).where(
        PolicyVersion.kind == version.kind, PolicyVersion.subject == subject,
        PolicyVersion.region_code.is_(None) if version.region_code is None
        else PolicyVersion.region_code == version.region_code,
        PolicyVersion.status.in_(("approved", "retired")), PolicyVersion.effective_from == version.effective_from,
    ))
    if clash is not None:
        raise Conflict(f"Version {clash} already takes effect at that instant in this region.",
                       error="effective_from_taken")
    version.status = "approved"
    version.decided_at = now
    version.decided_by_user_id = actor.id
    db.session.flush()
    _audit("approve", version, actor, after=_summary(version))
    return version


def reject(kind_name: str, subject: str, number: int, *, actor: User, reason: str) -> PolicyVersion:
    version = get(kind_name, subject, number, lock=True)
    _require_second_auditor(version, actor, "reject")
    if version.region_code is not None:
        require_in_scope(actor, version.region_code)
    if version.status != "submitted":
        raise Conflict(f"{version.ref} is {version.status}; only a submitted version can be rejected.",
                       error="not_submitted")
    if not reason.strip():
        raise field_error("reason", "give the reason for the author", error="reason_required")
    version.status = "rejected"
    version.decided_at = utcnow()
    version.decided_by_user_id = actor.id
    version.decision_reason = reason.strip()
    db.session.flush()
    _audit("reject", version, actor, reason=version.decision_reason)
    return version


def retire(kind_name: str, subject: str, number: int, *, actor: User, reason: str) -> PolicyVersion:
    version = get(kind_name, subject, number, lock=True)
    if Role.AUDITOR not in actor.roles:
        raise Forbidden("Only an auditor may retire a version.", error="role_required")
    if version.region_code is not None:
        require_in_scope(actor, version.region_code)
    if version.status != "approved":
        raise Conflict(f"{version.ref} is {version.status}; only an approved version can be retired.",
                       error="not_approved")
    if not reason.strip():
        raise field_error("reason", "say why the version is retired", error="reason_required")
    now = utcnow()
    if version.region_code is None:
        others = index_for(kind_name, subject).resolve([], now, excluding=version.id)
        if others is None:
            raise Conflict(f"Retiring {version.ref} would leave {subject} with no national version in force.",
                           error="last_national_version")
    version.status = "retired"
    version.retired_at = now
    version.retired_by_user_id = actor.id
    version.decision_reason = reason.strip()
    db.session.flush()
    _audit("retire", version, actor, reason=version.decision_reason)
    return version


def simulatable(kind_name: str, subject: str, number: int, *,
                actor: User) -> tuple[PolicyVersion, set[str] | None]:
    """A version ``actor`` may simulate, and the regions whose records the simulation reads.

    Only a draft or submitted version: an approved one is already the record of what applies.
    The regions are the version's own and those below it, narrowed to the actor's scope for a
    national version (None: every region), so a simulation never shows another region's people.
    """
    version = get(kind_name, subject, number)
    if version.status not in ("draft", "submitted"):
        raise Conflict(f"{version.ref} is {version.status}; simulate a draft or submitted version.",
                       error="not_simulatable")
    if version.region_code is not None:
        require_in_scope(actor, version.region_code)
    reach = version.region_code or actor.scope_region_code
    return version, descendants(reach) if reach is not None else None


def browse(kind_name: str, subject: str, *, region: str | None = None, status: str | None = None,
           before: int | None, limit: int) -> tuple[list[PolicyVersion], int | None]:
    from backend.services.pagination import keyset_page

    _subject_or_404(policy_kind(kind_name), subject)
    query = select(PolicyVersion).where(PolicyVersion.kind == kind_name, PolicyVersion.subject == subject)
    if region is not None:
        query = query.where(PolicyVersion.region_code == get_region(region, location="query").code)
    if status is not None:
        query = query.where(PolicyVersion.status == status)
    return keyset_page(query, PolicyVersion.id, before=before, limit=limit)


def diff(kind_name: str, subject: str, left: int, right: int) -> dict[str, Any]:
    """What changed between two versions, entry by entry (parameters or rule keys)."""
    a, b = get(kind_name, subject, left), get(kind_name, subject, right)
    changes = []
    for key in sorted(set(a.payload) | set(b.payload)):
        old, new = a.payload.get(key), b.payload.get(key)
        if old != new:
            fields = sorted(set(old or {}) | set(new or {})) if isinstance(old or new, dict) else []
            changes.append({
                "key": key, "before": old, "after": new,
                "changed": [f for f in fields if (old or {}).get(f) != (new or {}).get(f)] if fields else None,
            })
    meta = {f: {"before": getattr(a, attr), "after": getattr(b, attr)}
            for f, attr in (("region", "region_code"), ("effective_from", "effective_from"),
                            ("formula_version", "formula_version"), ("status", "status"))
            if getattr(a, attr) != getattr(b, attr)}
    return {"subject": subject, "left": a.ref, "right": b.ref, "changes": changes, "meta": meta,
            "left_sha256": a.payload_sha256, "right_sha256": b.payload_sha256}


def awaiting_decision(limit: int = 100) -> list[PolicyVersion]:
    """Submitted versions of every kind and subject, the longest waiting first."""
    return list(db.session.scalars(select(PolicyVersion).where(PolicyVersion.status == "submitted")
                                   .order_by(PolicyVersion.submitted_at, PolicyVersion.id).limit(limit)))


def baseline(version: PolicyVersion) -> PolicyVersion | None:
    """What a reviewer compares ``version`` with: for one not in force yet, the version in force now
    where it would apply; for an approved or retired one, the version it replaced; failing those, the
    version numbered before it. None when there is nothing to compare with."""
    chain = ancestors(version.region_code) if version.region_code is not None else []
    index = index_for(version.kind, version.subject)
    decided = version.status in ("approved", "retired") and version.effective_from is not None
    at = version.effective_from if decided else utcnow()
    found = index.resolve(chain, at, excluding=version.id)  # type: ignore[arg-type]
    if found is None and version.version > 1:
        found = db.session.scalar(select(PolicyVersion).where(
            PolicyVersion.kind == version.kind, PolicyVersion.subject == version.subject,
            PolicyVersion.version == version.version - 1))
    return found


def _summary(version: PolicyVersion) -> dict[str, Any]:
    return {"version": version.ref, "region": version.region_code, "status": version.status,
            "effective_from": version.effective_from, "payload_sha256": version.payload_sha256,
            "formula_version": version.formula_version}


def _audit(action: str, version: PolicyVersion, actor: User | None, *, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None, reason: str | None = None) -> None:
    audit.record(f"{version.kind}.{action}", f"{version.kind}_version", version.ref, actor=actor,
                 region_code=version.region_code, before=before, after=after or _summary(version), reason=reason)


# --- which version is in force -------------------------------------------------------------------


@dataclass
class _Span:
    effective_from: datetime
    retired_at: datetime | None
    version: PolicyVersion


@dataclass
class VersionIndex:
    """Approved (and retired) versions of one subject, for fast in-force lookups in bulk paths."""

    by_region: dict[str | None, list[_Span]] = field(default_factory=dict)
    # (chain, excluding) → (change points, answer per interval between them); see ``resolve``
    _memo: dict[tuple[tuple[str, ...], int | None], tuple[list[datetime], dict[int, PolicyVersion | None]]] = field(
        default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, versions: Iterable[PolicyVersion]) -> VersionIndex:
        index = cls()
        for version in versions:
            if version.effective_from is None:
                continue
            index.by_region.setdefault(version.region_code, []).append(
                _Span(version.effective_from, version.retired_at, version))
        for spans in index.by_region.values():
            spans.sort(key=lambda s: s.effective_from)
        return index

    def resolve(self, region_chain: list[str], at: datetime, *, excluding: int | None = None) -> PolicyVersion | None:
        """The version in force at ``at``: the nearest region up the chain that has one, then national.

        Bulk paths ask this for thousands of moments, so answers are remembered per interval between
        the chain's change points (every effective_from and retired_at): within one, nothing a
        lookup compares changes, so one answer holds for all of it."""
        key = (tuple(region_chain), excluding)
        memo = self._memo.get(key)
        if memo is None:
            memo = self._memo[key] = (self._change_points(region_chain), {})
        points, answers = memo
        segment = bisect.bisect_right(points, at)
        if segment not in answers:
            answers[segment] = self._lookup(region_chain, at, excluding)
        return answers[segment]

    def shadowed(self, region_chain: list[str], region: str | None, at: datetime) -> bool:
        """Whether a region nearer the activity than ``region`` (on its chain) has its own version in
        force at ``at``, so that a version of ``region`` would not apply to it then."""
        nearer = region_chain[:region_chain.index(region)] if region in region_chain else region_chain
        in_force = self.resolve(region_chain, at)
        return in_force is not None and in_force.region_code in nearer

    def _change_points(self, region_chain: list[str]) -> list[datetime]:
        moments = {moment for region in [*region_chain, None] for span in self.by_region.get(region, ())
                   for moment in (span.effective_from, span.retired_at) if moment is not None}
        return sorted(moments)

    def _lookup(self, region_chain: list[str], at: datetime, excluding: int | None) -> PolicyVersion | None:
        for region in [*region_chain, None]:
            spans = self.by_region.get(region)
            if not spans:
                continue
            position = bisect.bisect_right(spans, at, key=lambda s: s.effective_from)
            for span in reversed(spans[:position]):
                if span.version.id == excluding:
                    continue
                if span.retired_at is None or span.retired_at > at:
                    return span.version
        return None


def index_for(kind_name: str, subject: str) -> VersionIndex:
    return VersionIndex.build(db.session.scalars(select(PolicyVersion).where(
        PolicyVersion.kind == kind_name, PolicyVersion.subject == subject,
        PolicyVersion.status.in_(("approved", "retired")),
    )))


def in_force(kind_name: str, subject: str, region: str | None, at: datetime) -> PolicyVersion | None:
    chain = ancestors(region) if region is not None else []
    return index_for(kind_name, subject).resolve(chain, at)


def view(version: PolicyVersion, names: dict[int | None, str] | None = None) -> dict[str, Any]:
    """A version as the admin API and console show it, with people's usernames."""
    if names is None:
        names = _usernames({version.author_user_id, version.decided_by_user_id, version.retired_by_user_id})
    return {
        "kind": version.kind, "subject": version.subject, "version": version.version, "ref": version.ref,
        "region": version.region_code, "status": version.status, "effective_from": version.effective_from,
        "payload": version.payload, "payload_sha256": version.payload_sha256,
        "formula_version": version.formula_version, "note": version.note,
        "author": names.get(version.author_user_id, "system"), "created_at": version.created_at,
        "submitted_at": version.submitted_at, "decided_at": version.decided_at,
        "decided_by": names.get(version.decided_by_user_id) if version.decided_by_user_id else None,
        "decision_reason": version.decision_reason, "retired_at": version.retired_at,
        "retired_by": names.get(version.retired_by_user_id) if version.retired_by_user_id else None,
    }


def views(versions: list[PolicyVersion]) -> list[dict[str, Any]]:
    """Several versions as ``view`` shows them, with one query for everyone's usernames."""
    names = _usernames({uid for v in versions
                        for uid in (v.author_user_id, v.decided_by_user_id, v.retired_by_user_id)})
    return [view(v, names) for v in versions]


def _usernames(ids: set[int | None]) -> dict[int | None, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {uid: name for uid, name in db.session.execute(select(User.id, User.username).where(User.id.in_(wanted)))}
