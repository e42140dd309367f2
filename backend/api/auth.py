"""Tokens: log in, refresh, log out."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from marshmallow import Schema, fields, validate
from werkzeug.exceptions import HTTPException

from backend.api.common import Blueprint, unstorable_text
from backend.config import current_settings
from backend.extensions import limiter
from backend.services import auth

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Access and refresh tokens")

# Shared with the console's login form: one budget per address and one per username, whichever
# door the attempts come through.
ATTEMPTS_SCOPE = "login-attempts"
FAILURES_SCOPE = "login-failures"


class LoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=128), load_only=True)


class RefreshSchema(Schema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=10, max=128))


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True)
    expires_in = fields.Integer(required=True)
    refresh_token = fields.String(required=True)
    refresh_expires_in = fields.Integer(required=True)


def _login_username() -> str:
    try:
        body = request.get_json(silent=True)
    except (RecursionError, HTTPException):  # too deep, too large (413): not silenced, and answered by the view
        body = None
    return username_key(body.get("username") if isinstance(body, dict) else None)


def username_key(name: object) -> str:
    """The per-username limit's key for what was typed as the username (one shared key for what
    is not a storable string, so a NUL or a lone surrogate cannot make the limiter's store fail)."""
    if not isinstance(name, str) or unstorable_text(name) is not None:
        return "user:-"
    return "user:" + name.strip().lower()[:64]


def ip_limit() -> str:
    return current_settings().login_rate_limit


def user_failure_limit() -> str:
    return current_settings().login_failures_per_user


@blp.route("/token")
class Token(MethodView):
    # Per address, every attempt counts; per username, only failures count, so a person who
    # knows their password is never locked out by someone else guessing it slowly.
    decorators = [
        limiter.shared_limit(ip_limit, ATTEMPTS_SCOPE, error_message="Too many login attempts from this address."),
        limiter.shared_limit(user_failure_limit, FAILURES_SCOPE, key_func=_login_username,
                             deduct_when=lambda response: response.status_code == 401,
                             error_message="Too many failed logins for this user; wait and try again."),
    ]

    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema)
    def post(self, body: dict[str, str]):
        """Log in with username and password"""
        return auth.login(body["username"], body["password"]).as_dict()


@blp.route("/refresh")
class Refresh(MethodView):
    decorators = [limiter.limit(ip_limit)]

    @blp.arguments(RefreshSchema)
    @blp.response(200, TokenSchema)
    def post(self, body: dict[str, str]):
        """Trade a refresh token for a new pair (the old one stops working)"""
        return auth.refresh(body["refresh_token"]).as_dict()


@blp.route("/logout")
class Logout(MethodView):
    @blp.arguments(RefreshSchema)
    @blp.response(204)
    def post(self, body: dict[str, str]):
        """Revoke a refresh token"""
        auth.logout(body["refresh_token"])
