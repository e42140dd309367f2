"""The web console at /console: server-rendered pages for operators, auditors and admins.

Views parse the form or query, call the same service functions as the admin API with the API's role
sets, and render a template; the services flush and the request boundary commits (the app's unit of
work wraps these views as it wraps the API's). Four eyes, regional scope and every status rule stay
in the services, so the console can do nothing the API forbids. Charts are SVG drawn on the server;
the little script there is (``static/console/console.js``) only folds the menu on small screens.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from backend.config import Settings


def init_app(app: Flask, settings: Settings) -> None:
    """Cookie and CSRF settings, then the blueprint with every page (register before the unit of work)."""
    # Importing the page modules attaches their routes (and session's: login, logout, language) to bp.
    from backend.console import formatting, session  # noqa: F401
    from backend.console.blueprint import bp
    from backend.console.pages import audit, dashboard, directory, ledger, review, versions  # noqa: F401
    from backend.extensions import csrf

    app.config.update(
        # The console is the only user of Flask's session: its cookie never goes to the API's paths.
        SESSION_COOKIE_NAME="carbon_console",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.console_secure_cookie,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.console_session_ttl),
        # Checked by the console's own before_request (the API authenticates with tokens, not cookies).
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=settings.console_session_ttl,
    )
    csrf.init_app(app)
    for name, function in formatting.FILTERS.items():
        app.jinja_env.filters[name] = function
    app.register_blueprint(bp)
