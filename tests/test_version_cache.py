"""The per-process cache of approved versions (backend/services/version_cache.py): an approval is
seen at once by this process, a generation changed by another process rebuilds the index, and a
malformed generation token is discarded, never trusted."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from backend.db import utcnow
from backend.methodology.registry import registry
from backend.services import ledger, methodologies, rules, version_cache
from backend.services.quantification import Quantifier
from tests.conftest import Api
from tests.test_governance import approved as approved_methodology

REGION = "430611"  # Junshan: inherits what Yueyang (430600) approves
RULES = "/api/v1/admin/rules/versions"


def approved_rules(staff: dict[str, Api], app: Flask) -> dict[str, Any]:
    """Yueyang's rules with a new bike rate, drafted, submitted and approved by a second person."""
    current = staff["operator1"].get(f"/api/v1/public/rules?region={REGION}").get_json()["regions"][0]["rules"]
    payload = {k: current[k] for k in ("name", "points", "caps", "engagement", "campaigns", "expiry", "budget",
                                       "settlement")}
    payload["points"]["per_kg"]["bike_ride"] = "150"
    draft = staff["operator1"].post(RULES, {"region": "430600", "rules": payload})
    assert draft.status_code == 201, draft.get_json()
    number = draft.get_json()["version"]
    assert staff["operator1"].post(f"{RULES}/{number}/submit").status_code == 200
    response = staff["auditor1"].post(f"{RULES}/{number}/approve")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def travel_in_force(at: datetime) -> str:
    """As ingestion asks: through a Quantifier."""
    return Quantifier().version_in_force(registry().get("travel"), REGION, at).ref


def rules_in_force(at: datetime) -> str:
    """As the ledger asks when it credits or redeems."""
    return ledger.rules_in_force(REGION, at).ref


# (kind, subject, approve through the API, the version in force as its consumers look it up, ref prefix)
KINDS = {
    "methodology": (methodologies.KIND, "travel", approved_methodology, travel_in_force, "travel"),
    "rules": (rules.KIND, rules.SUBJECT, approved_rules, rules_in_force, "exchange"),
}
Approve = Callable[[dict[str, Api], Flask], dict[str, Any]]


def _in_force(app: Flask, lookup: Callable[[datetime], str]) -> str:
    with app.app_context():
        return lookup(utcnow() + timedelta(seconds=1))


def _index(app: Flask, kind: str, subject: str) -> Any:
    with app.app_context():
        return version_cache.index(kind, subject)


def _token(app: Flask) -> Any:
    return app.extensions["redis_store"].get(version_cache.GENERATION_KEY)


@pytest.fixture
def unheard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Approvals from now on happen as if in another process: this one is not told (its commit hook
    publishes nothing and keeps its indexes)."""
    monkeypatch.setattr(version_cache, "invalidate", lambda: None)


@pytest.mark.parametrize("which", KINDS)
def test_an_approval_is_seen_by_the_next_lookup_in_this_process(app: Flask, staff: dict[str, Api],
                                                                which: str) -> None:
    kind, subject, approve, lookup, prefix = KINDS[which]
    before = _in_force(app, lookup)
    cached = _index(app, kind, subject)
    assert _index(app, kind, subject) is cached                   # built once, then kept
    token = _token(app)
    version = approve(staff, app)
    assert _in_force(app, lookup) == f"{prefix}@{version['version']}" != before
    assert _index(app, kind, subject) is not cached
    assert _token(app) != token                                   # published for the other processes


def test_a_generation_changed_by_another_process_rebuilds_the_index(app: Flask, staff: dict[str, Api],
                                                                    unheard: None) -> None:
    kind, subject, approve, lookup, _ = KINDS["methodology"]
    cached = _index(app, kind, subject)
    approve(staff, app)
    # The generation has not moved: this process still answers from the index it built.
    assert _index(app, kind, subject) is cached and _in_force(app, lookup) == "travel@1"
    app.extensions["redis_store"].set(version_cache.GENERATION_KEY, secrets.token_hex(8))  # another process
    assert _in_force(app, lookup) == "travel@2"
    rebuilt = _index(app, kind, subject)
    assert rebuilt is not cached and _index(app, kind, subject) is rebuilt
    app.extensions["redis_store"].delete(version_cache.GENERATION_KEY)  # expired, or Redis flushed
    assert _index(app, kind, subject) is not rebuilt
    assert re.fullmatch(r"[0-9a-f]{16}", _token(app))


MALFORMED = {
    "empty": lambda store: store.set(version_cache.GENERATION_KEY, ""),
    "not text": lambda store: store.set(version_cache.GENERATION_KEY, b"\xff\xfe\x80"),
    "not a string": lambda store: (store.delete(version_cache.GENERATION_KEY),
                                   store.hset(version_cache.GENERATION_KEY, "x", "1")),
}


@pytest.mark.parametrize("corrupt", MALFORMED.values(), ids=list(MALFORMED))
def test_a_malformed_generation_is_discarded_and_the_database_read(app: Flask, staff: dict[str, Api],
                                                                   resident: Api, unheard: None,
                                                                   corrupt: Callable[[Any], Any]) -> None:
    kind, subject, approve, lookup, _ = KINDS["methodology"]
    cached = _index(app, kind, subject)
    approve(staff, app)
    corrupt(app.extensions["redis_store"])
    assert _in_force(app, lookup) == "travel@2"                   # read from the database, not the stale index
    assert _index(app, kind, subject) is not cached
    token = _token(app)                                           # replaced by a fresh token: cached again
    assert re.fullmatch(r"[0-9a-f]{16}", token)
    assert _index(app, kind, subject) is _index(app, kind, subject)
    corrupt(app.extensions["redis_store"])
    level = resident.get("/api/v1/me/level")                      # the exchange rules, through the API
    assert level.status_code == 200, level.get_json()
