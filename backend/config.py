"""Configuration from the environment, parsed strictly.

Every value is checked when the app starts, so a typo in a deployment stops the process with a
message naming the variable instead of failing on the first request that needs it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENVIRONMENTS = ("development", "production", "testing")
DEFAULT_INSTANCE = Path("instance")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = "sqlite:///instance/carbon.db"
    # PostgreSQL: the few statements every request runs (the token check, the balance) are
    # prepared once per connection. Off behind a pooler that cannot keep them (PgBouncer in
    # transaction mode before 1.21).
    database_prepared_statements: bool = True
    redis_url: str | None = None
    secret_key: str = ""
    instance_path: Path = DEFAULT_INSTANCE
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    partner_signature_window: int = 300
    login_rate_limit: str = "20 per minute;200 per hour"
    login_failures_per_user: str = "5 per 15 minutes"
    # Rate limits (Flask-Limiter strings, windows separated by ";"): per signed partner on the
    # batch endpoint, per address on partner signatures that fail, per resident on reserving offers.
    partner_rate_limit: str = "600 per minute"  # batches of up to 1,000: 10,000 activities a second
    partner_auth_failures_per_ip: str = "30 per minute"
    redemption_rate_limit: str = "10 per minute;100 per day"
    signup_rate_limit: str = "30 per hour"
    # After a Redis connection failure, Redis calls fail fast for this many seconds, then one probes.
    redis_cooldown: float = 5.0
    # /metrics: unset, anyone who reaches the service reads it (keep it on the internal network);
    # set, only ``Authorization: Bearer <token>``.
    metrics_token: str | None = None
    # ``carbon-points scheduler`` serves its metrics (job outcomes and durations) on this port, on
    # every interface (the web's /metrics never sees them: another process); 0: not served.
    scheduler_metrics_port: int = 9102
    # prometheus_client's multi-process directory (gunicorn); None: metrics of this process only.
    metrics_multiproc_dir: Path | None = None
    access_log: bool = False
    # /readyz fails while Redis is unreachable; false keeps the instance in rotation (the API
    # degrades to the database) and reports Redis as degraded.
    readyz_requires_redis: bool = True
    max_communities_per_resident: int = 50
    encryption_keys: tuple[str, ...] = ()
    run_scheduler: bool = True
    log_json: bool = False
    trusted_proxies: int = 0
    methodologies: tuple[str, ...] = ("travel", "carpool", "recycling", "household_electricity", "rooftop_pv", "quiz")
    rules_dir: Path = Path("rules")
    # The Ed25519 key that signs what third parties verify offline (bank statements, retirement
    # certificates): base64url of its 32-byte seed.
    statement_signing_key: str = ""
    # The web console (/console): a login lasts at most ``console_session_ttl`` seconds and ends after
    # ``console_idle_timeout`` seconds without a request; its cookie is ``Secure`` (HTTPS only) when set.
    console_session_ttl: int = 8 * 3600
    console_idle_timeout: int = 30 * 60
    console_secure_cookie: bool = False

    @property
    def embedded(self) -> bool:
        """Single-process mode: SQLite and the in-process Redis-compatible store."""
        return self.redis_url is None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **overrides)


def _int(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _names(env: dict[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    bad = [n for n in names if not n.replace("_", "").isalnum() or not n[0].isalpha()]
    if bad:
        raise ConfigError(f"{name} must be comma-separated methodology ids, got {bad[0]!r}")
    return names


def _rate_limit(env: dict[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    from limits import parse_many

    try:
        items = parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name} must be rate limits like '10 per minute;100 per day', got {raw!r}") from None
    if any(item.amount < 1 for item in items):
        raise ConfigError(f"{name} must allow at least 1 request per window, got {raw!r}")
    return raw.strip()


def _float(env: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:  # also refuses nan
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw}")
    return value


def _metrics_token(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if len(raw) < 32 or not raw.isprintable() or " " in raw:
        raise ConfigError("METRICS_TOKEN must be at least 32 printable characters without spaces")
    return raw


def _writable_directory(raw: str | None, name: str) -> Path | None:
    if raw is None or raw == "":
        return None
    path = Path(raw)
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{name} must be an existing writable directory, got {raw!r}")
    return path


def _database_url(raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if scheme in ("postgres", "postgresql"):
        # psycopg 3 is the driver we ship; accept the common spellings of the URL.
        return "postgresql+psycopg://" + raw.split("://", 1)[1]
    if scheme in ("postgresql+psycopg", "sqlite"):
        return raw
    raise ConfigError(
        f"DATABASE_URL must be a postgresql:// or sqlite:/// URL, got scheme {scheme or 'none'!r}"
    )


def _redis_url(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL must be a redis://, rediss:// or unix:// URL, got {raw!r}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"REDIS_URL has no host: {raw!r}")
    return raw


def _secret_key(env: dict[str, str], name: str, instance_path: Path, generate: bool) -> str:
    raw = env.get("SECRET_KEY", "")
    if raw:
        if len(raw) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters")
        return raw
    if not generate:
        raise ConfigError(f"SECRET_KEY is required when CARBON_ENV={name}")
    # Development: generated once and kept, so tokens and encrypted secrets survive restarts.
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


def _ed25519_seed(raw: str, name: str) -> str:
    try:
        seed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (ValueError, binascii.Error):
        seed = b""
    if len(seed) != 32:
        raise ConfigError(f"{name} must be base64url of 32 random bytes (an Ed25519 seed)")
    return raw


def _statement_signing_key(env: dict[str, str], name: str, instance_path: Path, secret_key: str) -> str:
    """``STATEMENT_SIGNING_KEY`` (base64url of a 32-byte Ed25519 seed). Unset: development and tests
    generate one into ``instance/`` like SECRET_KEY; production derives it from SECRET_KEY, so every
    worker on every machine signs with the same key (set it to keep the two independent)."""
    raw = env.get("STATEMENT_SIGNING_KEY", "").strip()
    if raw:
        return _ed25519_seed(raw, "STATEMENT_SIGNING_KEY")
    if name == "production":
        seed = hmac.new(secret_key.encode(), b"carbon-points statement signing key", hashlib.sha256).digest()
        return base64.urlsafe_b64encode(seed).decode().rstrip("=")
    key_file = instance_path / "statement_signing_key"
    if key_file.exists():
        return _ed25519_seed(key_file.read_text().strip(), f"STATEMENT_SIGNING_KEY (from {key_file})")
    instance_path.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad variable."""
    env = dict(os.environ if environ is None else environ)
    name = env.get("CARBON_ENV", "development") or "development"
    if name not in ENVIRONMENTS:
        raise ConfigError(f"CARBON_ENV must be one of {', '.join(ENVIRONMENTS)}, got {name!r}")
    instance_path = Path(env.get("CARBON_INSTANCE_PATH") or DEFAULT_INSTANCE)
    production = name == "production"

    if production and not env.get("DATABASE_URL"):
        raise ConfigError("DATABASE_URL is required when CARBON_ENV=production")
    database_url = _database_url(env.get("DATABASE_URL") or f"sqlite:///{instance_path}/carbon.db")
    if production and not database_url.startswith("postgresql"):
        raise ConfigError("DATABASE_URL must point at PostgreSQL when CARBON_ENV=production")
    redis_url = _redis_url(env.get("REDIS_URL"))
    if production and redis_url is None:
        raise ConfigError("REDIS_URL is required when CARBON_ENV=production")

    keys = tuple(k.strip() for k in env.get("ENCRYPTION_KEYS", "").split(",") if k.strip())
    secret_key = _secret_key(env, name, instance_path, generate=not production)
    return Settings(
        env=name,
        database_url=database_url,
        database_prepared_statements=_bool(env, "DATABASE_PREPARED_STATEMENTS", True),
        redis_url=redis_url,
        secret_key=secret_key,
        instance_path=instance_path,
        access_token_ttl=_int(env, "ACCESS_TOKEN_TTL", 900, 60, 24 * 3600),
        refresh_token_ttl=_int(env, "REFRESH_TOKEN_TTL", 30 * 24 * 3600, 3600, 365 * 24 * 3600),
        partner_signature_window=_int(env, "PARTNER_SIGNATURE_WINDOW", 300, 30, 3600),
        login_rate_limit=_rate_limit(env, "LOGIN_RATE_LIMIT", Settings.login_rate_limit),
        login_failures_per_user=_rate_limit(env, "LOGIN_FAILURES_PER_USER", Settings.login_failures_per_user),
        partner_rate_limit=_rate_limit(env, "PARTNER_RATE_LIMIT", Settings.partner_rate_limit),
        partner_auth_failures_per_ip=_rate_limit(env, "PARTNER_AUTH_FAILURES_PER_IP",
                                                 Settings.partner_auth_failures_per_ip),
        redemption_rate_limit=_rate_limit(env, "REDEMPTION_RATE_LIMIT", Settings.redemption_rate_limit),
        signup_rate_limit=_rate_limit(env, "SIGNUP_RATE_LIMIT", Settings.signup_rate_limit),
        redis_cooldown=_float(env, "REDIS_COOLDOWN", Settings.redis_cooldown, 0.1, 300),
        metrics_token=_metrics_token(env.get("METRICS_TOKEN")),
        scheduler_metrics_port=_int(env, "SCHEDULER_METRICS_PORT", Settings.scheduler_metrics_port, 0, 65535),
        metrics_multiproc_dir=_writable_directory(env.get("PROMETHEUS_MULTIPROC_DIR"), "PROMETHEUS_MULTIPROC_DIR"),
        access_log=_bool(env, "ACCESS_LOG", production),
        readyz_requires_redis=_bool(env, "READYZ_REQUIRES_REDIS", True),
        max_communities_per_resident=_int(env, "MAX_COMMUNITIES_PER_RESIDENT", 50, 1, 1000),
        encryption_keys=keys,
        # Production runs the scheduler as its own process; the embedded mode runs it in-process.
        run_scheduler=_bool(env, "RUN_SCHEDULER", redis_url is None and name == "development"),
        log_json=_bool(env, "LOG_JSON", production),
        trusted_proxies=_int(env, "TRUSTED_PROXIES", 0, 0, 5),
        methodologies=_names(env, "METHODOLOGIES", Settings.methodologies),
        rules_dir=Path(env.get("RULES_DIR") or "rules"),
        statement_signing_key=_statement_signing_key(env, name, instance_path, secret_key),
        console_session_ttl=_int(env, "CONSOLE_SESSION_TTL", Settings.console_session_ttl, 300, 24 * 3600),
        console_idle_timeout=_int(env, "CONSOLE_IDLE_TIMEOUT", Settings.console_idle_timeout, 60, 24 * 3600),
        # Production serves HTTPS (behind its proxy): the console's cookie never travels in clear text.
        console_secure_cookie=_bool(env, "CONSOLE_SECURE_COOKIE", production),
    )


def current_settings() -> Settings:
    """The settings of the running app."""
    from flask import current_app

    return current_app.extensions["settings"]
