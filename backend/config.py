"""Configuration from the environment, parsed strictly.

Every value is checked when the app starts, so a typo in a deployment stops the process with a
message naming the variable instead of failing on the first request that needs it.
"""

from __future__ import annotations

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
    redis_url: str | None = None
    secret_key: str = ""
    instance_path: Path = DEFAULT_INSTANCE
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    partner_signature_window: int = 300
    login_rate_limit: str = "20 per minute;200 per hour"
    login_failures_per_user: str = "5 per 15 minutes"
    max_communities_per_resident: int = 50
    encryption_keys: tuple[str, ...] = ()
    run_scheduler: bool = True
    log_json: bool = False
    trusted_proxies: int = 0
    methodologies: tuple[str, ...] = ("travel", "carpool", "recycling", "household_electricity", "rooftop_pv", "quiz")
    rules_dir: Path = Path("rules")

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
    return Settings(
        env=name,
        database_url=database_url,
        redis_url=redis_url,
        secret_key=_secret_key(env, name, instance_path, generate=not production),
        instance_path=instance_path,
        access_token_ttl=_int(env, "ACCESS_TOKEN_TTL", 900, 60, 24 * 3600),
        refresh_token_ttl=_int(env, "REFRESH_TOKEN_TTL", 30 * 24 * 3600, 3600, 365 * 24 * 3600),
        partner_signature_window=_int(env, "PARTNER_SIGNATURE_WINDOW", 300, 30, 3600),
        login_rate_limit=env.get("LOGIN_RATE_LIMIT") or Settings.login_rate_limit,
        login_failures_per_user=env.get("LOGIN_FAILURES_PER_USER") or Settings.login_failures_per_user,
        max_communities_per_resident=_int(env, "MAX_COMMUNITIES_PER_RESIDENT", 50, 1, 1000),
        encryption_keys=keys,
        # Production runs the scheduler as its own process; the embedded mode runs it in-process.
        run_scheduler=_bool(env, "RUN_SCHEDULER", redis_url is None and name == "development"),
        log_json=_bool(env, "LOG_JSON", production),
        trusted_proxies=_int(env, "TRUSTED_PROXIES", 0, 0, 5),
        methodologies=_names(env, "METHODOLOGIES", Settings.methodologies),
        rules_dir=Path(env.get("RULES_DIR") or "rules"),
    )


def current_settings() -> Settings:
    """The settings of the running app."""
    from flask import current_app

    return current_app.extensions["settings"]
