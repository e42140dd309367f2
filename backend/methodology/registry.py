"""Find methodologies through their entry points, allowlisted, and check each against the contract.

Built-ins are declared in our own pyproject.toml and load exactly like a third-party package. A
methodology that is unknown, fails to import or breaks the contract stops start-up, named.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata

import marshmallow as ma

from backend.config import ConfigError
from backend.methodology.contract import Methodology, Param
from backend.methodology.parameters import load_factors_file

ENTRY_POINT_GROUP = "carbon_points.methodologies"
BUILT_INS = ("travel", "carpool", "recycling", "household_electricity", "rooftop_pv", "quiz")
_ID = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


class RegistryError(ConfigError):
    """A methodology cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class Registered:
    methodology: Methodology
    package: str
    entry_point: str
    defaults: dict[str, dict[str, str]]

    @property
    def id(self) -> str:
        return self.methodology.id


class Registry:
    def __init__(self, entries: dict[str, Registered]) -> None:
        self._entries = entries
        self._by_type = {t: entry for entry in entries.values() for t in entry.methodology.types}
        self._schemas: dict[str, ma.Schema] = {}

    def __iter__(self) -> Iterator[Registered]:
        return iter(self._entries.values())

    def __contains__(self, methodology_id: object) -> bool:
        return methodology_id in self._entries

    def get(self, methodology_id: str) -> Registered:
        return self._entries[methodology_id]

    def for_type(self, activity_type: str) -> Registered | None:
        return self._by_type.get(activity_type)

    def evidence_schema(self, activity_type: str) -> ma.Schema:
        """The evidence schema of a registered type, made once: schemas are stateless, and building
        one per activity was a tenth of the ingestion path."""
        schema = self._schemas.get(activity_type)
        if schema is None:
            schema = self._schemas[activity_type] = self._by_type[activity_type].methodology.evidence_schema(
                activity_type)
        return schema

    def types(self) -> frozenset[str]:
        return frozenset(self._by_type)


def contract_problems(cls: object, name: str) -> list[str]:
    """Everything about ``cls`` that breaks the methodology contract (DESIGN §5)."""
    if not isinstance(cls, type) or not issubclass(cls, Methodology):
        return ["is not a subclass of backend.methodology.Methodology"]
    problems: list[str] = []
    if getattr(cls, "__abstractmethods__", None):
        problems.append(f"does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    if getattr(cls, "id", None) != name:
        problems.append(f"declares id {getattr(cls, 'id', None)!r} but its entry point is named {name!r}")
    if not _ID.match(str(getattr(cls, "id", ""))):
        problems.append("id must be lower case letters, digits and underscores")
    version = getattr(cls, "version", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems.append("version must be a whole number ≥ 1")
    types = getattr(cls, "types", None)
    if not isinstance(types, frozenset) or not types or not all(isinstance(t, str) and _ID.match(t) for t in types):
        problems.append("types must be a non-empty frozenset of activity type names")
    for attribute in ("title", "formula"):
        if not isinstance(getattr(cls, attribute, None), str) or not getattr(cls, attribute):
            problems.append(f"{attribute} must be a non-empty string")
    parameters = getattr(cls, "parameters", None)
    if not isinstance(parameters, dict) or not all(isinstance(p, Param) for p in parameters.values()):
        problems.append("parameters must map names to Param")
    elif not parameters and not cls.engagement_only:
        problems.append("only an engagement-only methodology may have no parameters")
    if problems:
        return problems
    instance = cls()
    for activity_type in sorted(types):  # type: ignore[arg-type]
        if not isinstance(instance.evidence_schema(activity_type), ma.Schema):
            problems.append(f"evidence_schema({activity_type!r}) is not a marshmallow Schema")
    if not cls.self_reportable <= types:  # type: ignore[operator]
        problems.append("self_reportable names types the methodology does not handle")
    return problems


def load_registry(allowlist: tuple[str, ...]) -> Registry:
    available = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    entries: dict[str, Registered] = {}
    claimed: dict[str, str] = {}
    for name in allowlist:
        ep = available.get(name)
        if ep is None:
            raise RegistryError(
                f"methodology {name!r} is allowed in METHODOLOGIES but no installed package provides it "
                f"(entry point group {ENTRY_POINT_GROUP!r}; available: {', '.join(sorted(available)) or 'none'})"
            )
        try:
            cls = ep.load()
        except Exception as exc:  # any import failure is the methodology's, named
            raise RegistryError(f"methodology {name!r} failed to import from {ep.value}: "
                                f"{type(exc).__name__}: {exc}") from exc
        problems = contract_problems(cls, name)
        if problems:
            raise RegistryError(f"methodology {name!r} ({ep.value}) breaks the contract: " + "; ".join(problems))
        try:
            defaults = load_factors_file(cls)
        except ValueError as exc:
            raise RegistryError(f"methodology {name!r}: {exc}") from None
        for activity_type in cls.types:
            if activity_type in claimed:
                raise RegistryError(f"activity type {activity_type!r} is claimed by both "
                                    f"{claimed[activity_type]!r} and {name!r}")
            claimed[activity_type] = name
        dist = ep.dist
        package = f"{dist.name} {dist.version}" if dist is not None else ep.module
        entries[name] = Registered(cls(), package, ep.value, defaults)
    return Registry(entries)


def registry() -> Registry:
    from flask import current_app

    return current_app.extensions["methodologies"]
