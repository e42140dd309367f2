"""Admin: staff users and their roles."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from backend.api.common import REGION_CODE, Blueprint, CursorArgs, ReasonSchema, decode_cursor, page, page_schema
from backend.api.security import current_user, requires
from backend.models import Role
from backend.models.user import STAFF_ROLES
from backend.services import users

blp = Blueprint("admin_users", __name__, url_prefix="/api/v1/admin/users", description="Admin: staff users")

ADMIN = Role.ADMIN.value
ROLE_CHOICES = validate.OneOf([r.value for r in STAFF_ROLES])


class UserCreateSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=3, max=64))
    password = fields.String(required=True, validate=validate.Length(min=8, max=128), load_only=True)
    roles = fields.List(fields.String(validate=ROLE_CHOICES), required=True, validate=validate.Length(min=1, max=4))
    scope_region = fields.String(load_default=None, allow_none=True, validate=REGION_CODE)


class RolesSchema(Schema):
    roles = fields.List(fields.String(validate=ROLE_CHOICES), required=True, validate=validate.Length(min=1, max=4))


class UserListArgs(CursorArgs):
    role = fields.String(validate=ROLE_CHOICES)


class UserSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    roles = fields.Method("_roles")
    scope_region = fields.String(attribute="scope_region_code", allow_none=True)
    is_active = fields.Boolean()
    created_at = fields.DateTime()
    last_login_at = fields.DateTime(allow_none=True)

    def _roles(self, user) -> list[str]:  # type: ignore[no-untyped-def]
        return sorted(user.roles)


UserPage = page_schema(UserSchema, "UserPage")


@blp.route("")
class Users(MethodView):
    @requires(ADMIN)
    @blp.arguments(UserListArgs, location="query")
    @blp.response(200, UserPage)
    def get(self, args: dict[str, object]):
        """Staff users"""
        rows, next_key = users.list_users(before=decode_cursor(args.get("cursor")), limit=args["limit"],
                                          role=args.get("role"), actor=current_user())
        return page(rows, next_key)

    @requires(ADMIN)
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    def post(self, body: dict[str, object]):
        """Create a staff user (operator, auditor, admin)"""
        return users.create_staff_user(body["username"], body["password"], body["roles"],
                                       scope_region=body["scope_region"], actor=current_user())


@blp.route("/<int:user_id>")
class UserDetail(MethodView):
    @requires(ADMIN)
    @blp.response(200, UserSchema)
    def get(self, user_id: int):
        """One user"""
        return users.get_user(user_id, current_user())


@blp.route("/<int:user_id>/roles")
class Roles(MethodView):
    @requires(ADMIN)
    @blp.arguments(RolesSchema)
    @blp.response(200, UserSchema)
    def put(self, body: dict[str, list[str]], user_id: int):
        """Replace a staff user's roles; their tokens stop working"""
        return users.set_roles(users.get_user(user_id, current_user()), body["roles"], actor=current_user())


@blp.route("/<int:user_id>/disable")
class Disable(MethodView):
    @requires(ADMIN)
    @blp.arguments(ReasonSchema)
    @blp.response(200, UserSchema)
    def post(self, body: dict[str, str | None], user_id: int):
        """Disable a login"""
        return users.set_active(users.get_user(user_id, current_user()), False, actor=current_user(),
                                reason=body["reason"])


@blp.route("/<int:user_id>/enable")
class Enable(MethodView):
    @requires(ADMIN)
    @blp.arguments(ReasonSchema)
    @blp.response(200, UserSchema)
    def post(self, body: dict[str, str | None], user_id: int):
        """Enable a login again"""
        return users.set_active(users.get_user(user_id, current_user()), True, actor=current_user(),
                                reason=body["reason"])
