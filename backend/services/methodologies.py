"""Methodologies as governed policies: defaults, validation, the public view, simulation."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import marshmallow as ma
from sqlalchemy import func, select

from backend.db import db, utcnow
from backend.errors import Unprocessable
from backend.methodology import parameters as params
from backend.methodology.registry import Registered, registry
from backend.models import Activity, PolicyVersion, Reduction, Region, User
from backend.rules.schema import flatten_errors
from backend.services import audit, governance
from backend.services.regions import ancestors, get_region

KIND = "methodology"
# Built-in defaults are in force from this instant, so every activity inside any claim window
# can be quantified on a fresh install.
DEFAULTS_EFFECTIVE_FROM = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class MethodologyKind:
    name: str = KIND

    def subject_exists(self, subject: str) -> bool:
        return subject in registry()

    def validate_payload(self, subject: str, payload: Any) -> dict[str, Any]:
        try:
            return params.validate_parameters(registry().get(subject).methodology, payload)
        except ma.ValidationError as exc:
            problems = ", ".join(f"{path}: {message}" for path, message in flatten_errors(exc.messages, []))
            raise Unprocessable(f"The parameters are not valid: {problems}",
                                error="invalid_parameters", errors={"json": {"parameters": exc.messages}}) from None

    def formula_version(self, subject: str) -> int | None:
        return registry().get(subject).methodology.version

    def payload_digest(self, payload: dict[str, Any]) -> str:
        return params.digest(payload)




def install_defaults() -> list[str]:
    """Approved version 1 from each registered methodology's factors file, where none exists yet."""
    installed = []
    for entry in registry():
        exists = db.session.scalar(select(func.count()).select_from(PolicyVersion).where(
            PolicyVersion.kind == KIND, PolicyVersion.subject == entry.id))
        if exists:
            continue
        now = utcnow()
        version = PolicyVersion(
            kind=KIND, subject=entry.id, version=1, region_code=None, payload=entry.defaults,
            payload_sha256=params.digest(entry.defaults), formula_version=entry.methodology.version,
            effective_from=DEFAULTS_EFFECTIVE_FROM, status="approved",
            note=f"Built-in defaults from {entry.package} ({entry.methodology.factors_file})",
            author_user_id=None, submitted_at=now, decided_at=now, decided_by_user_id=None,
        )
        db.session.add(version)
        db.session.flush()
        audit.record("methodology.install_default", "methodology_version", version.ref, actor=None,
                     after={"version": version.ref, "payload_sha256": version.payload_sha256,
                            "package": entry.package})
        installed.append(version.ref)
    return installed


def catalogue() -> list[dict[str, Any]]:
    """Registered methodologies, as `carbon-points methodologies list` and the admin API show them."""
    return [{
        "id": e.id, "version": e.methodology.version, "title": e.methodology.title,
        "title_zh": e.methodology.title_zh, "types": sorted(e.methodology.types), "package": e.package,
        "entry_point": e.entry_point, "engagement_only": e.methodology.engagement_only,
        "self_reportable": sorted(e.methodology.self_reportable),
    } for e in registry()]


def public_view(region: str | None) -> list[dict[str, Any]]:
    """What is in force now, region by region: formula, every parameter with unit and source, dates."""
    now = utcnow()
    codes: list[str | None]
    if region is None:
        codes = [None, *db.session.scalars(select(Region.code).order_by(Region.code))]
    else:
        codes = [get_region(region, location="query").code]
    indexes = {e.id: governance.index_for(KIND, e.id) for e in registry()}
    out = []
    for code in codes:
        chain = ancestors(code) if code is not None else []
        entries = []
        for entry in registry():
            version = indexes[entry.id].resolve(chain, now)
            if version is not None:
                entries.append(_public_entry(entry, version, inherited_from=version.region_code
                                             if version.region_code != code else None))
        out.append({"region": code, "methodologies": entries})
    return out


def _public_entry(entry: Registered, version: PolicyVersion, *, inherited_from: str | None) -> dict[str, Any]:
    m = entry.methodology
    return {
        "id": m.id, "title": m.title, "title_zh": m.title_zh, "types": sorted(m.types),
        "formula": m.formula, "references": list(m.references), "engagement_only": m.engagement_only,
        "version": version.version, "ref": version.ref, "version_region": version.region_code,
        "inherited": version.region_code is None or inherited_from is not None,
        "effective_from": version.effective_from, "approved_at": version.decided_at,
        "factors_sha256": version.payload_sha256,
        "parameters": [
            {"name": name, **version.payload[name], "description": m.parameters[name].description}
            for name in sorted(version.payload) if name in m.parameters
        ],
    }


# --- simulation ----------------------------------------------------------------------------------


def simulate(subject: str, number: int, *, days: int, actor: User, top: int = 10) -> dict[str, Any]:
    """Run a draft or submitted version over the stored activities of the last ``days`` days.

    Nothing is written. For each region and activity type: current certified grams against the
    grams the proposed parameters give; the largest individual changes; what the proposed
    plausibility limits would reject or send to review.
    """
    from backend.services import quantification

    version, scope = governance.simulatable(KIND, subject, number, actor=actor)
    entry = registry().get(subject)
    proposed = params.values(version.payload)
    now = utcnow()
    since = now - timedelta(days=days)
    index = governance.index_for(KIND, subject)

    groups: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"activities": 0, "current_g": 0,
                                                                          "proposed_g": 0})
    changes: list[dict[str, Any]] = []
    counts = {"activities": 0, "would_be_rejected": 0, "would_go_to_review": 0}
    chains: dict[str, list[str]] = {}
    query = (
        select(Reduction, Activity)
        .join(Activity, Activity.id == Reduction.activity_id)
        .where(Reduction.methodology_id == subject, Reduction.status == "certified",
               Reduction.occurred_at >= since, Reduction.occurred_at <= now,
               *([Reduction.region_code.in_(sorted(scope))] if scope is not None else []))
        .order_by(Reduction.id)
        .execution_options(yield_per=2000)
    )
    for reduction, activity in db.session.execute(query):
        chain = chains.get(reduction.region_code) or chains.setdefault(reduction.region_code,
                                                                          ancestors(reduction.region_code))
        if index.shadowed(chain, version.region_code, reduction.occurred_at):
            continue  # a region nearer the activity has its own version then: this one would not apply
        outcome = quantification.requantify(entry, activity, reduction.facts, proposed)
        counts["activities"] += 1
        if outcome.rejected:
            counts["would_be_rejected"] += 1
        elif outcome.review:
            counts["would_go_to_review"] += 1
        group = groups[(reduction.region_code, reduction.activity_type)]
        group["activities"] += 1
        group["current_g"] += reduction.grams
        group["proposed_g"] += outcome.grams
        if outcome.grams != reduction.grams:
            changes.append({
                "activity_id": activity.id, "reduction_id": reduction.id, "region": reduction.region_code,
                "activity_type": reduction.activity_type, "occurred_at": reduction.occurred_at,
                "current_g": reduction.grams, "proposed_g": outcome.grams,
                "change_g": outcome.grams - reduction.grams,
            })
    changes.sort(key=lambda c: (-abs(c["change_g"]), c["activity_id"]))
    rows = [{"region": region, "activity_type": activity_type, **totals,
             "change_g": totals["proposed_g"] - totals["current_g"]}
            for (region, activity_type), totals in sorted(groups.items())]
    current = sum(r["current_g"] for r in rows)
    proposed_total = sum(r["proposed_g"] for r in rows)
    result = {
        "version": version.ref, "status": version.status, "region": version.region_code, "days": days,
        "window": {"from": since, "to": now}, **counts,
        "totals": {"current_g": current, "proposed_g": proposed_total, "change_g": proposed_total - current},
        "groups": rows, "largest_changes": changes[:top],
    }
    audit.record("methodology.simulate", "methodology_version", version.ref, actor=actor,
                 region_code=version.region_code,
                 after={"days": days, "activities": counts["activities"], "totals": result["totals"]})
    return result

