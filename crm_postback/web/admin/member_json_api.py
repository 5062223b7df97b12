"""/admin/api: the workspace's members (owners change them), the caller's own tokens, and
for instance administrators the workspaces and admin users."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from crm_postback.commands.lookups import MAX_ID, is_row_id
from crm_postback.commands.manage_admin_accounts import (
    AddAdminUser,
    AddMember,
    ChangeMemberRole,
    CreateAdminToken,
    RemoveMember,
    RevokeAdminToken,
    UpdateAdminUser,
    add_admin_user,
    add_workspace_member,
    change_member_role,
    create_admin_token,
    remove_workspace_member,
    revoke_admin_token,
    update_admin_user,
)
from crm_postback.commands.manage_workspaces import AddWorkspace, add_workspace
from crm_postback.configuration.admin_accounts import (
    list_members,
    list_users,
    tokens_of,
)
from crm_postback.web.admin.json_api_support import (
    API_ERRORS,
    ApiAdmin,
    ApiFailure,
    fail,
    in_thread,
    read_object,
    reject_unknown,
    text_field,
)
from crm_postback.web.admin.security import actor_of, instance_admin_only, workspace_of
from models import AdminToken
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

router = APIRouter(prefix="/api", tags=["admin"], responses=API_ERRORS)


def _required(body: dict[str, Any], name: str) -> str:
    value = text_field(body, name)
    if not value:
        raise fail(422, name, "is required")
    return value


@router.get(
    "/workspaces",
    summary="The caller's workspaces and roles (every one for an instance administrator)",
)
async def workspaces_api(admin: ApiAdmin) -> Any:
    return {
        "workspaces": [
            {"id": m.workspace_id, "name": m.name, "role": m.role.value} for m in admin.memberships
        ],
        "current": admin.current.name,
        "instance_admin": admin.instance_admin,
    }


@router.post("/workspaces", status_code=201, summary="Create a workspace (instance administrators)")
async def create_workspace_api(request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, {"name"})
    made = await in_thread(add_workspace, AddWorkspace(_required(body, "name")), actor_of(admin))
    return JSONResponse({"id": made.id, "name": made.name}, status_code=201)


@router.get("/members", summary="The members of the workspace and their roles")
async def members_api(admin: ApiAdmin) -> Any:
    def read() -> list[dict[str, Any]]:
        with session_scope(workspace=workspace_of(admin)) as session:
            return [
                {"username": m.username, "role": m.role.value, "active": m.active}
                for m in list_members(session)
            ]

    return {"workspace": admin.current.name, "members": await in_thread(read)}


@router.post("/members", status_code=201, summary="Add an existing user: {username, role} (owners)")
async def add_member_api(request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, {"username", "role"})
    wanted = AddMember(_required(body, "username"), _required(body, "role"))
    done = await in_thread(add_workspace_member, wanted, actor_of(admin))
    role = done.role.value if done.role else None
    return JSONResponse({"username": done.username, "role": role}, status_code=201)


@router.patch("/members/{username}", summary="Change a member's role: {role} (owners)")
async def change_member_api(username: str, request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, {"role"})
    wanted = ChangeMemberRole(username, _required(body, "role"))
    done = await in_thread(change_member_role, wanted, actor_of(admin))
    return {"username": done.username, "role": done.role.value if done.role else None}


@router.delete("/members/{username}", status_code=204, summary="Remove a member (owners)")
async def remove_member_api(username: str, admin: ApiAdmin) -> Response:
    await in_thread(remove_workspace_member, RemoveMember(username), actor_of(admin))
    return Response(status_code=204)


def _own_token_json(token: AdminToken) -> dict[str, Any]:
    """One of the caller's own tokens, its prefix included whatever their role: they were
    shown the whole token once, when it was made."""
    return {
        "id": token.id,
        "label": token.label,
        "prefix": token.token_prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


@router.get("/tokens", summary="The caller's own admin tokens")
async def tokens_api(admin: ApiAdmin) -> Any:
    def read() -> list[dict[str, Any]]:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            return [_own_token_json(t) for t in tokens_of(session, admin.user_id)]

    return {"tokens": await in_thread(read)}


@router.post("/tokens", status_code=201, summary="Create an own token: {label}; shown once")
async def create_token_api(request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, {"label"})
    wanted = CreateAdminToken(
        admin.username, _required(body, "label"), caller_user_id=admin.user_id
    )
    new = await in_thread(create_admin_token, wanted, actor_of(admin))
    return JSONResponse({"id": new.id, "label": new.label, "token": new.token}, status_code=201)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke an own token")
async def revoke_token_api(token_id: int, admin: ApiAdmin) -> Response:
    if not is_row_id(token_id, MAX_ID):
        raise ApiFailure(404, [])
    await in_thread(revoke_admin_token, RevokeAdminToken(token_id, admin.user_id), actor_of(admin))
    return Response(status_code=204)


@router.get("/users", summary="Admin users (instance administrators)")
async def users_api(admin: ApiAdmin) -> Any:
    def read() -> list[dict[str, Any]]:
        instance_admin_only(admin)
        with session_scope(workspace=ALL_WORKSPACES) as session:
            return [
                {
                    "username": u.username,
                    "active": u.active,
                    "instance_admin": u.instance_admin,
                    "source": u.source,
                }
                for u in list_users(session)
            ]

    return {"users": await in_thread(read)}


@router.post(
    "/users",
    status_code=201,
    summary="Create a user: {username, password, instance_admin?, workspace?, role?} "
    "(instance administrators)",
)
async def create_user_api(request: Request, admin: ApiAdmin) -> Any:
    body = await read_object(request)
    reject_unknown(body, {"username", "password", "instance_admin", "workspace", "role"})
    instance_admin = body.get("instance_admin", False)
    if not isinstance(instance_admin, bool):
        raise fail(422, "instance_admin", "must be true or false")
    wanted = AddAdminUser(
        _required(body, "username"),
        _required(body, "password"),
        workspace=text_field(body, "workspace"),
        role=text_field(body, "role") or "viewer",
        instance_admin=instance_admin,
    )
    done = await in_thread(add_admin_user, wanted, actor_of(admin))
    return JSONResponse({"id": done.id, "username": done.username}, status_code=201)


@router.patch(
    "/users/{username}",
    summary="Set a user's password {password} or disable/enable them {active} "
    "(instance administrators)",
)
async def change_user_api(username: str, request: Request, admin: ApiAdmin) -> Any:
    # Whatever the body, the command runs: its instance-level unit of work refuses anyone
    # but an instance administrator (403) before it looks at the body.
    body = await read_object(request)
    reject_unknown(body, {"password", "active"})
    active = body.get("active")
    if active is not None and not isinstance(active, bool):
        raise fail(422, "active", "must be true or false")
    wanted = UpdateAdminUser(username, text_field(body, "password"), active)
    await in_thread(update_admin_user, wanted, actor_of(admin))
    return {"username": username}
