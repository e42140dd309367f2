"""Reference data every installation needs after its schema is migrated."""

from __future__ import annotations

from flask import Flask

from backend.db import db


def install_reference_data(app: Flask) -> list[str]:
    """Idempotent: built-in methodology defaults and the rule files, as approved versions where none exist."""
    from backend.services import methodologies, rules

    with app.app_context():
        installed = methodologies.install_defaults()
        installed_rules = rules.install_defaults()
        db.session.commit()
    lines = [f"installed built-in methodology defaults: {', '.join(installed)}"] if installed else []
    if installed_rules:
        lines.append(f"installed exchange rules: {', '.join(installed_rules)}")
    return lines
