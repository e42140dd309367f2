"""Partners (data sources): registration, secret rotation, and request authentication."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Response, after_this_request, current_app, has_request_context
from redis.exceptions import RedisError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from backend.db import db, utcnow
from backend.errors import Conflict, Forbidden, NotFound, Unauthorized, field_error
from backend.extensions import store
from backend.methodology.registry import registry
from backend.models import Partner, PartnerNonce, User
from backend.models.partner import PARTNER_KINDS
from backend.security.crypto import SecretBox
from backend.security.signatures import signature_matches
from backend.services import audit
from backend.services.pagination import keyset_page
from backend.services.regions import get_region
from backend.services.scope import require_in_scope, scope_filter


def _box() -> SecretBox:
    return current_app.extensions["secret_box"]


@dataclass(frozen=True)
class IssuedSecret:
    partner: Partner
    secret: str


def _validate_types(types: list[str]) -> list[str]:
    unique = sorted(set(types))
    if not unique:
        raise field_error("activity_types", "give at least one activity type")
    unknown = [t for t in unique if t not in registry().types()]
    if unknown:
        raise field_error("activity_types", f"unknown activity type(s): {', '.join(unknown)}",
                          error="unknown_activity_type")
    return unique


def create(name: str, kind: str, activity_types: list[str], region: str, *, actor: User) -> IssuedSecret:
    name = " ".join(name.split())
    if not name:
        raise field_error("name", "must not be blank")
    if kind not in PARTNER_KINDS:
        raise field_error("kind", f"one of {', '.join(PARTNER_KINDS)}")
    types = _validate_types(activity_types)
    region_row = get_region(region)
    require_in_scope(actor, region_row.code)
    if db.session.scalar(select(Partner.id).where(Partner.name == name)) is not None:
        raise Conflict(f"A partner named {name!r} exists.", error="duplicate_name",
                       errors={"json": {"name": ["is taken"]}})
    secret = secrets.token_urlsafe(32)
    partner = Partner(
        name=name, kind=kind, activity_types=types, region_code=region_row.code,
        key_id="pk_" + secrets.token_hex(8), secret_ciphertext=_box().encrypt(secret),
    )
    db.session.add(partner)
    db.session.flush()
    audit.record("partner.create", "partner", partner.id, actor=actor, region_code=partner.region_code,
                 after=describe(partner))
    return IssuedSecret(partner, secret)


def describe(partner: Partner) -> dict[str, object]:
    """What the audit log keeps of a partner: never the secret."""
    return {"name": partner.name, "kind": partner.kind, "activity_types": partner.activity_types,
            "region": partner.region_code, "key_id": partner.key_id, "status": partner.status,
            "trust_level": partner.trust_level}


def get(partner_id: int) -> Partner:
    partner = db.session.get(Partner, partner_id)
    if partner is None:
        raise NotFound(f"No partner {partner_id}.")
    return partner


def get_scoped(partner_id: int, actor: User) -> Partner:
    partner = get(partner_id)
    require_in_scope(actor, partner.region_code)
    return partner


def update(partner_id: int, *, actor: User, name: str | None, activity_types: list[str] | None) -> Partner:
    partner = get_scoped(partner_id, actor)
    before = describe(partner)
    if name is not None:
        name = " ".join(name.split())
        if not name:
            raise field_error("name", "must not be blank")
        partner.name = name
    if activity_types is not None:
        partner.activity_types = _validate_types(activity_types)
    db.session.flush()
    audit.record("partner.update", "partner", partner.id, actor=actor, region_code=partner.region_code,
                 before=before, after=describe(partner))
    return partner


def set_trust(partner_id: int, level: str, *, actor: User, reason: str | None) -> Partner:
    partner = get_scoped(partner_id, actor)
    before = describe(partner)
    partner.trust_level = level
    db.session.flush()
    audit.record("partner.trust", "partner", partner.id, actor=actor, region_code=partner.region_code,
                 before=before, after=describe(partner), reason=reason)
    return partner


def rotate(partner_id: int, *, actor: User, grace_hours: int) -> IssuedSecret:
    partner = get_scoped(partner_id, actor)
    now = utcnow()
    secret = secrets.token_urlsafe(32)
    if grace_hours > 0:
        partner.previous_secret_ciphertext = partner.secret_ciphertext
        partner.previous_secret_expires_at = now + timedelta(hours=grace_hours)
    else:
        partner.previous_secret_ciphertext = None
        partner.previous_secret_expires_at = None
    partner.secret_ciphertext = _box().encrypt(secret)
    partner.rotated_at = now
    db.session.flush()
    audit.record("partner.rotate", "partner", partner.id, actor=actor, region_code=partner.region_code,
                 after={"key_id": partner.key_id, "old_secret_valid_until": partner.previous_secret_expires_at})
    return IssuedSecret(partner, secret)


def set_status(partner_id: int, status: str, *, actor: User, reason: str | None) -> Partner:
    partner = get_scoped(partner_id, actor)
    if partner.status != status:
        before = partner.status
        partner.status = status
        db.session.flush()
        audit.record("partner.enable" if status == "active" else "partner.disable", "partner", partner.id,
                     actor=actor, region_code=partner.region_code, before={"status": before},
                     after={"status": status}, reason=reason)
    return partner


def browse(actor: User, *, before: int | None, limit: int) -> tuple[list[Partner], int | None]:
    return keyset_page(scope_filter(select(Partner), Partner.region_code, actor), Partner.id,
                       before=before, limit=limit)


def authenticate_request(
    *, key_id: str, timestamp: str, signature: str, method: str, path: str, body: bytes,
    now: datetime, window: int,
) -> Partner:
    """Check a signed partner request (DESIGN §9) and remember its signature against replay."""
    if not key_id or not timestamp or not signature:
        raise Unauthorized("Partner requests need X-Key-Id, X-Timestamp and X-Signature headers.",
                           error="signature_missing")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Unauthorized("X-Timestamp must be unix seconds.", error="timestamp_invalid")
    if abs(now.timestamp() - int(timestamp)) > window:
        raise Unauthorized(f"X-Timestamp is more than {window} s from the server's clock.", error="timestamp_stale")
    if len(signature) != 64:
        raise Unauthorized("X-Signature must be 64 hex characters.", error="signature_invalid")
    partner = db.session.scalar(select(Partner).where(Partner.key_id == key_id))
    if partner is None:
        raise Unauthorized("Unknown X-Key-Id.", error="unknown_key")
    secrets_to_try = [partner.secret_ciphertext]
    if partner.previous_secret_ciphertext and partner.previous_secret_expires_at and \
            partner.previous_secret_expires_at > now:
        secrets_to_try.append(partner.previous_secret_ciphertext)
    if not any(signature_matches(_box().decrypt(c), signature, timestamp, method, path, body)
               for c in secrets_to_try):
        raise Unauthorized("The signature does not match.", error="signature_invalid")
    if partner.status != "active":
        raise Forbidden("This partner is disabled.", error="partner_disabled")
    # Until then the timestamp is fresh enough to be accepted; after it, stale anyway.
    _remember_signature(partner, signature.lower(), fresh_for=int(timestamp) + window - int(now.timestamp()) + 1)
    return partner


REPLAY_KEY = "carbon:replay:"


def _remember_signature(partner: Partner, signature: str, *, fresh_for: int) -> None:
    """Refuse a signature seen before.

    Redis answers first (SET NX for as long as the timestamp stays fresh): a replay is refused
    without a database round trip, and a concurrent duplicate without waiting on the first one's
    row lock. The database row stays the truth: with Redis flushed or unreachable, its primary key
    still refuses the second use.
    """
    if _claim_in_cache(signature, partner.id, max(fresh_for, 1)) is False:
        raise Unauthorized("This signed request was already received.", error="replayed")
    # The primary key refuses a second use; concurrent replays wait on it and then fail.
    if db.session.get(PartnerNonce, signature) is not None:
        raise Unauthorized("This signed request was already received.", error="replayed")
    db.session.add(PartnerNonce(signature=signature, partner_id=partner.id))
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        raise Unauthorized("This signed request was already received.", error="replayed") from None


def _claim_in_cache(signature: str, partner_id: int, ttl: int) -> bool | None:
    """True: first sight, claimed; False: seen; None: the cache cannot say (Redis down)."""
    key = REPLAY_KEY + signature
    try:
        claimed = store.set(key, str(partner_id), nx=True, ex=ttl)
    except RedisError:
        return None
    if claimed and has_request_context():
        # A request that fails rolls its nonce row back, so the same signed request may be sent
        # again (the database would take it): the cache must not refuse what the truth accepts.
        @after_this_request
        def _release_if_failed(response: Response) -> Response:
            if response.status_code >= 400:
                with contextlib.suppress(RedisError):  # then it expires with the timestamp
                    store.delete(key)
            return response

    return bool(claimed)


def prune_nonces(older_than: datetime) -> int:
    """Signatures older than the window can never be replayed (their timestamp is stale)."""
    result = db.session.execute(delete(PartnerNonce).where(PartnerNonce.seen_at < older_than))
    return result.rowcount or 0
