"""Who is signed in to the console; logging in and out; the language toggle.

The cookie (signed, ``HttpOnly``, ``SameSite=Lax``, ``Secure`` when configured, path ``/console``)
holds the handle of a server-side session (see ``services.auth``), the user id and token version,
and when the person was last seen. A session ends at logout, after ``CONSOLE_SESSION_TTL``, after
``CONSOLE_IDLE_TIMEOUT`` without a request, or when the account is disabled, its password changed
or its roles changed. Only operators, auditors and admins may log in; logins share the API's
limits (attempts per address, failures per username), whichever door the attempts come through.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import flash, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from backend.api.auth import ATTEMPTS_SCOPE, FAILURES_SCOPE, ip_limit, user_failure_limit, username_key
from backend.config import current_settings
from backend.console import i18n
from backend.console.blueprint import bp
from backend.errors import Forbidden, Unauthorized, field_error
from backend.extensions import limiter
from backend.models import Role, User
from backend.services import auth

# Residents and merchant staff have their apps; the console is the staff's.
CONSOLE_ROLES = frozenset({Role.OPERATOR.value, Role.AUDITOR.value, Role.ADMIN.value})
SESSION_KEYS = ("sid", "uid", "tv", "seen", "csrf_token")
SEEN_EVERY = 60  # seconds: how stale "last seen" may get before the cookie is rewritten


def _forget() -> None:
    """Drop the login from the cookie (the language stays); the next form gets a fresh CSRF token."""
    for key in SESSION_KEYS:
        session.pop(key, None)


def load_user() -> User | None:
    """The signed-in user, checked against the server-side session on every request."""
    g.console_user = None
    handle = session.get("sid")
    if handle is None:
        return None
    uid, seen, now = session.get("uid"), session.get("seen"), int(time.time())
    user = None
    fresh = isinstance(seen, int) and now - seen <= current_settings().console_idle_timeout
    if isinstance(handle, str) and isinstance(uid, int) and fresh:
        user = auth.browser_session_user(handle, uid)
    if user is None or user.token_version != session.get("tv"):
        if isinstance(handle, str):
            auth.close_browser_session(handle)  # committed with the page that asks to log in again
        _forget()
        flash(i18n.translate("login.ended"), "info")
        return None
    if now - seen >= SEEN_EVERY:  # type: ignore[operator]
        session["seen"] = now
    g.console_user = g.user = user  # g.user: the access log names who asked
    return user


def current_user() -> User:
    return g.console_user


def current_user_or_none() -> User | None:
    return g.get("console_user")


def has_role(*roles: str) -> bool:
    user = current_user_or_none()
    return user is not None and bool(user.roles & frozenset(roles))


def staff_page(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Signed in (else to the login page) with one of ``roles`` (else a 403 page): the same role
    sets as the admin API's endpoints, imported from them, so the console allows nothing more."""
    allowed = frozenset(roles)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user_or_none()
            if user is None:
                if request.method == "GET":
                    if "_flashes" not in session:
                        flash(i18n.translate("login.required"), "info")
                    return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
                return redirect(url_for("console.login"), code=303)
            if not (user.roles & allowed):
                raise Forbidden(f"This needs one of the roles: {', '.join(sorted(allowed))}.", error="role_required")
            return view(*args, **kwargs)

        wrapper._roles = allowed  # type: ignore[attr-defined]
        return wrapper

    return decorator


def safe_next(target: Any, default: str | None = None) -> str:
    """A console path to go to after a form, never another site (open redirects)."""
    if (isinstance(target, str) and len(target) <= 2000 and target.startswith("/console")
            and "\\" not in target and not target.startswith("//")):
        return target
    return default or url_for("console.dashboard")


def nav_items() -> list[tuple[str, str, str]]:
    """(endpoint, label, url) of the pages the signed-in person may open."""
    if current_user_or_none() is None:
        return []
    pages = [("console.dashboard", "nav.dashboard"), ("console.versions", "nav.versions"),
             ("console.review", "nav.review"), ("console.audit", "nav.audit"), ("console.partners", "nav.partners"),
             ("console.merchants", "nav.merchants"), ("console.projects", "nav.projects"),
             ("console.ledger", "nav.ledger")]
    return [(endpoint, i18n.translate(key), url_for(endpoint)) for endpoint, key in pages]


# --- logging in and out ------------------------------------------------------------------------------


def _form_username() -> str:
    return username_key(request.form.get("username"))


def _login_page(status: int = 200, *, error: str | None = None, username: str = "") -> tuple[str, int]:
    return render_template("console/login.html", error=error, username=username,
                           next=safe_next(request.values.get("next"))), status


@bp.route("/login", methods=["GET", "POST"])
# The API's token endpoint's limits, shared with it: every attempt counts per address, failures per username.
@limiter.shared_limit(ip_limit, ATTEMPTS_SCOPE, methods=["POST"],
                      error_message="Too many login attempts from this address.")
@limiter.shared_limit(user_failure_limit, FAILURES_SCOPE, key_func=_form_username, methods=["POST"],
                      deduct_when=lambda response: response.status_code == 401,
                      error_message="Too many failed logins for this user; wait and try again.")
def login() -> Any:
    if current_user_or_none() is not None:
        return redirect(safe_next(request.values.get("next")))
    if request.method == "GET":
        return _login_page()
    username = request.form.get("username", "")[:64]
    password = request.form.get("password", "")[:128]
    try:
        opened = auth.open_browser_session(username, password, roles=CONSOLE_ROLES,
                                           ttl=current_settings().console_session_ttl)
    except Unauthorized:
        return _login_page(401, error=i18n.translate("login.failed"), username=username)
    except Forbidden:
        return _login_page(403, error=i18n.translate("login.not_staff"), username=username)
    language = session.get("lang")
    session.clear()  # nothing from before the login survives into it (session fixation)
    session.update(sid=opened.handle, uid=opened.user.id, tv=opened.user.token_version, seen=int(time.time()))
    if language in i18n.LANGUAGES:
        session["lang"] = language
    session.permanent = True
    return redirect(safe_next(request.form.get("next")), code=303)


@bp.post("/logout")
def logout() -> Response:
    handle = session.get("sid")
    if isinstance(handle, str):
        auth.close_browser_session(handle)
    _forget()
    flash(i18n.translate("logout.done"), "info")
    return redirect(url_for("console.login"), code=303)


@bp.post("/lang")
def language() -> Response:
    chosen = request.form.get("lang")
    if chosen not in i18n.LANGUAGES:
        raise field_error("lang", f"must be one of {', '.join(i18n.LANGUAGES)}", location="form")
    session["lang"] = chosen
    fallback = url_for("console.dashboard") if current_user_or_none() else url_for("console.login")
    return redirect(safe_next(request.form.get("next"), fallback), code=303)
