"""Configuration is parsed strictly: a bad value stops start-up naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import ConfigError, load_settings

PG = "postgresql://u@db/carbon"
KEY = "k" * 40


def _load(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return load_settings({"CARBON_INSTANCE_PATH": str(tmp_path), **env})


def test_embedded_defaults(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    assert settings.env == "development" and settings.embedded and settings.is_sqlite
    assert settings.database_url == f"sqlite:///{tmp_path}/carbon.db"
    assert settings.run_scheduler is True
    # The generated development key is kept, so tokens survive restarts.
    assert _load(tmp_path).secret_key == settings.secret_key and len(settings.secret_key) >= 32


def test_production_needs_postgres_redis_and_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        _load(tmp_path, CARBON_ENV="production", REDIS_URL="redis://r", SECRET_KEY=KEY)
    with pytest.raises(ConfigError, match="DATABASE_URL must point at PostgreSQL"):
        _load(tmp_path, CARBON_ENV="production", DATABASE_URL="sqlite:///x.db", REDIS_URL="redis://r", SECRET_KEY=KEY)
    with pytest.raises(ConfigError, match="REDIS_URL"):
        _load(tmp_path, CARBON_ENV="production", DATABASE_URL=PG, SECRET_KEY=KEY)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        _load(tmp_path, CARBON_ENV="production", DATABASE_URL=PG, REDIS_URL="redis://r")
    settings = _load(tmp_path, CARBON_ENV="production", DATABASE_URL=PG, REDIS_URL="redis://r", SECRET_KEY=KEY)
    assert settings.database_url == "postgresql+psycopg://u@db/carbon"
    assert settings.run_scheduler is False and settings.log_json is True


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"CARBON_ENV": "staging"}, "CARBON_ENV"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"ACCESS_TOKEN_TTL": "ten"}, "ACCESS_TOKEN_TTL"),
        ({"ACCESS_TOKEN_TTL": "5"}, "ACCESS_TOKEN_TTL"),
        ({"RUN_SCHEDULER": "maybe"}, "RUN_SCHEDULER"),
        ({"TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        _load(tmp_path, **env)


def test_bad_encryption_key_stops_the_app(tmp_path: Path) -> None:
    from backend.app import create_app

    settings = _load(tmp_path, ENCRYPTION_KEYS="not-a-fernet-key")
    with pytest.raises(ConfigError, match="ENCRYPTION_KEYS entry 1"):
        create_app(settings)


def test_cli_reports_a_config_error_without_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from backend.cli import main

    monkeypatch.setenv("CARBON_ENV", "nonsense")
    result = CliRunner().invoke(main, ["db", "current"])
    assert result.exit_code == 2
    assert "configuration error: CARBON_ENV" in result.output
