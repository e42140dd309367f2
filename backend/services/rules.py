"""Exchange rules as governed policies: the rule files, validation, what is in force, publication.

Rules are one subject (``exchange``) governed per region with the same machinery as methodology
versions. The files in ``rules/`` are installed as approved versions (authored by the system)
where a region has none yet; a region without its own inherits its parent's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import marshmallow as ma
from sqlalchemy import select

from backend.config import ConfigError, current_settings
from backend.db import db, utcnow
from backend.errors import Unprocessable
from backend.methodology import parameters as params
from backend.methodology.registry import registry
from backend.models import PolicyVersion, Region
from backend.rules.schema import RuleFile, explain, flatten_errors, parse_rule_file, validate_rules
from backend.services import audit, governance
from backend.services.regions import ancestors, get_region

KIND = "rules"
SUBJECT = "exchange"
DEFAULTS_EFFECTIVE_FROM = datetime(2020, 1, 1, tzinfo=UTC)


def scenarios() -> frozenset[str]:
    return registry().types()


@dataclass(frozen=True)
class RulesKind:
    name: str = KIND

    def subject_exists(self, subject: str) -> bool:
        return subject == SUBJECT

    def validate_payload(self, subject: str, payload: Any) -> dict[str, Any]:
        try:
            return validate_rules(payload, scenarios())
        except ma.ValidationError as exc:
            lines = [f"{path}: {explain(path, message)}" for path, message in flatten_errors(exc.messages, [])]
            raise Unprocessable("The rules are not valid: " + "; ".join(lines), error="invalid_rules",
                                errors={"json": {"rules": exc.messages}}) from None

    def formula_version(self, subject: str) -> int | None:
        return None

    def payload_digest(self, payload: dict[str, Any]) -> str:
        return params.digest(payload)



def read_rule_files(directory: Path) -> list[RuleFile]:
    """Every rule file in ``directory``, validated; a bad one stops with its file, line and field."""
    files = []
    for path in sorted(directory.glob("*.toml")):
        rule_file, problems = parse_rule_file(path.read_text(encoding="utf-8"), scenarios())
        if problems:
            raise ConfigError(f"rule file {path}: " + "; ".join(str(p) for p in problems))
        files.append(rule_file)
    return files


def install_defaults() -> list[str]:
    """The rule files as approved versions, for regions that have no rules version yet."""
    directory = current_settings().rules_dir
    if not directory.is_dir():
        return []
    installed = []
    for rule_file in read_rule_files(directory):
        region = get_region(rule_file.region, field="rules.region").code
        exists = db.session.scalar(select(PolicyVersion.id).where(
            PolicyVersion.kind == KIND, PolicyVersion.subject == SUBJECT, PolicyVersion.region_code == region))
        if exists is not None:
            continue
        latest = db.session.scalar(select(PolicyVersion.version).where(
            PolicyVersion.kind == KIND, PolicyVersion.subject == SUBJECT).order_by(PolicyVersion.version.desc()))
        now = utcnow()
        version = PolicyVersion(
            kind=KIND, subject=SUBJECT, version=(latest or 0) + 1, region_code=region, payload=rule_file.rules,
            payload_sha256=params.digest(rule_file.rules), formula_version=None,
            effective_from=DEFAULTS_EFFECTIVE_FROM, status="approved", note=f"Installed from {directory}/",
            author_user_id=None, submitted_at=now, decided_at=now, decided_by_user_id=None,
        )
        db.session.add(version)
        db.session.flush()
        audit.record("rules.install_default", "rules_version", version.ref, actor=None, region_code=region,
                     after={"version": version.ref, "payload_sha256": version.payload_sha256})
        installed.append(f"{version.ref} ({region})")
    return installed


def public_view(region: str | None) -> list[dict[str, Any]]:
    """The rules in force now in each region (or one), with where they are inherited from."""
    codes = [get_region(region, location="query").code] if region is not None else list(
        db.session.scalars(select(Region.code).order_by(Region.code)))
    index = governance.index_for(KIND, SUBJECT)
    now = utcnow()
    out = []
    for code in codes:
        version = index.resolve(ancestors(code), now)
        out.append({"region": code, "rules": None if version is None else {
            "ref": version.ref, "version": version.version, "published_by_region": version.region_code,
            "inherited": version.region_code != code, "effective_from": version.effective_from,
            "approved_at": version.decided_at, "sha256": version.payload_sha256, **version.payload,
        }})
    return out
