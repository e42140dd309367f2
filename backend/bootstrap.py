"""Reference data every installation needs after its schema is migrated."""

from __future__ import annotations

from flask import Flask

from backend.db import db


def install_reference_data(app: Flask) -> list[str]:
    """Idempotent: the built-in methodology defaults as approved version 1 where none exist."""
    from backend.services import methodologies

    with app.app_context():
        installed = methodologies.install_defaults()
        db.session.commit()
    return [f"installed built-in defaults: {', '.join(installed)}"] if installed else []
