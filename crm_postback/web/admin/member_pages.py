"""The pages of people and workspaces: the workspace's members (owners add, change, remove),
the admin's own API tokens (any member), and for instance administrators the workspaces
and the admin users. Changes go through `commands.manage_admin_accounts`, which checks the
role; what only an instance administrator may read is a 404 for anyone else."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from crm_postback.commands.lookups import MAX_ID, NotFound, row_id
from crm_postback.commands.manage_admin_accounts import (
    NO_SUCH_TOKEN,
    AddAdminUser,
    AddMember,
    ChangeAdminPassword,
    ChangeMemberRole,
    CreateAdminToken,
    RemoveMember,
    RevokeAdminToken,
    SetAdminUserActive,
    add_admin_user,
    add_workspace_member,
    change_admin_password,
    change_member_role,
    create_admin_token,
    remove_workspace_member,
    revoke_admin_token,
    set_admin_user_active,
)
from crm_postback.commands.manage_workspaces import AddWorkspace, add_workspace
from crm_postback.commands.unit_of_work import NotPermitted
from crm_postback.configuration.admin_accounts import (
    Admin,
    list_members,
    list_users,
    tokens_of,
)
from crm_postback.configuration.workspaces import list_workspaces
from crm_postback.core.errors import FieldError, InputRejected
from crm_postback.web.admin.page_rendering import flash, render, see_other
from crm_postback.web.admin.security import (
    AdminDep,
    actor_of,
    checked_form,
    instance_admin_only,
    workspace_of,
)
from models import Role
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES

router = APIRouter(include_in_schema=False)
ROLES = [role.value for role in Role]


def _refused(error: InputRejected) -> str:
    return "; ".join(e.message for e in error.errors)


@router.get("/members")
def members_page(request: Request, admin: AdminDep) -> HTMLResponse:
    with session_scope(workspace=workspace_of(admin)) as session:
        members = list_members(session)
    return render(request, "members.html", admin, members=members, roles=ROLES)


@router.post("/members/{action}")
async def member_action(request: Request, action: str, admin: AdminDep) -> Response:
    if action not in ("add", "role", "remove"):
        return see_other(request, "/members")
    form = await checked_form(request, admin.csrf_token)
    username = str(form.get("username", "")).strip()
    role = str(form.get("role", ""))
    actor = actor_of(admin)
    try:
        if action == "add":
            done = await run_in_threadpool(add_workspace_member, AddMember(username, role), actor)
            message = f"{done.username} is now {role} of this workspace."
        elif action == "role":
            wanted = ChangeMemberRole(username, role)
            done = await run_in_threadpool(change_member_role, wanted, actor)
            message = f"{done.username} is now {role}."
        else:
            done = await run_in_threadpool(remove_workspace_member, RemoveMember(username), actor)
            message = f"{done.username} is no longer a member of this workspace."
    except NotPermitted:
        raise
    except InputRejected as rejected:
        flash(request, _refused(rejected), "error")
    else:
        flash(request, message)
    return see_other(request, "/members")


def _tokens_page(request: Request, admin: Admin, new_token: str | None = None) -> HTMLResponse:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        tokens = tokens_of(session, admin.user_id)
        # Their own tokens' prefixes, whatever their role: they were shown each whole once.
        return render(
            request, "tokens.html", admin, tokens=tokens, new_token=new_token, sees_tokens=True
        )


@router.get("/tokens")
def tokens_page(request: Request, admin: AdminDep) -> HTMLResponse:
    return _tokens_page(request, admin)


@router.post("/tokens/new")
async def token_create(request: Request, admin: AdminDep) -> Response:
    form = await checked_form(request, admin.csrf_token)
    wanted = CreateAdminToken(
        admin.username, str(form.get("label", "")), caller_user_id=admin.user_id
    )
    try:
        new = await run_in_threadpool(create_admin_token, wanted, actor_of(admin))
    except NotPermitted:
        raise
    except InputRejected as rejected:
        flash(request, _refused(rejected), "error")
        return see_other(request, "/tokens")
    # Shown once, on this answer only (a flash would keep it in the cookie).
    return await run_in_threadpool(_tokens_page, request, admin, new.token)


@router.post("/tokens/{token_id}/revoke")
async def token_revoke(request: Request, token_id: str, admin: AdminDep) -> Response:
    await checked_form(request, admin.csrf_token)
    chosen = row_id(token_id, MAX_ID)
    try:
        if chosen is None:
            raise NotFound([FieldError("id", NO_SUCH_TOKEN)])
        await run_in_threadpool(
            revoke_admin_token, RevokeAdminToken(chosen, admin.user_id), actor_of(admin)
        )
    except (NotPermitted, NotFound):
        raise
    except InputRejected as rejected:
        flash(request, _refused(rejected), "error")
    else:
        flash(request, "Token revoked.")
    return see_other(request, "/tokens")


@router.get("/workspaces")
def workspaces_page(request: Request, admin: AdminDep) -> HTMLResponse:
    instance_admin_only(admin)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        workspaces = [(w.id, w.name) for w in list_workspaces(session)]
    return render(request, "workspaces.html", admin, all_workspaces=workspaces)


@router.post("/workspaces/new")
async def workspace_create(request: Request, admin: AdminDep) -> Response:
    form = await checked_form(request, admin.csrf_token)
    wanted = AddWorkspace(str(form.get("name", "")))
    try:
        made = await run_in_threadpool(add_workspace, wanted, actor_of(admin))
    except NotPermitted:
        raise
    except InputRejected as rejected:
        flash(request, _refused(rejected), "error")
        return see_other(request, "/workspaces")
    flash(request, f"Workspace {made.name} created; add its members on its Members page.")
    return see_other(request, "/workspaces")


@router.get("/users")
def users_page(request: Request, admin: AdminDep) -> HTMLResponse:
    instance_admin_only(admin)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        users = list_users(session)
        return render(request, "users.html", admin, users=users, roles=ROLES)


@router.post("/users/{action}")
async def user_action(request: Request, action: str, admin: AdminDep) -> Response:
    if action not in ("new", "password", "disable", "enable"):
        return see_other(request, "/users")
    form = await checked_form(request, admin.csrf_token)
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    actor = actor_of(admin)
    try:
        if action == "new":
            role = str(form.get("role", ""))
            wanted = AddAdminUser(
                username,
                password,
                workspace=admin.current.name if role else None,
                role=role or Role.VIEWER,
                instance_admin=form.get("instance_admin") == "on",
            )
            await run_in_threadpool(add_admin_user, wanted, actor)
            message = f"User {username} created."
        elif action == "password":
            wanted_password = ChangeAdminPassword(username, password)
            await run_in_threadpool(change_admin_password, wanted_password, actor)
            message = f"{username}: password set; their sessions ended."
        else:
            active = action == "enable"
            wanted_active = SetAdminUserActive(username, active)
            await run_in_threadpool(set_admin_user_active, wanted_active, actor)
            message = f"{username}: {'enabled' if active else 'disabled'}."
    except NotPermitted:
        raise
    except InputRejected as rejected:
        flash(request, _refused(rejected), "error")
    else:
        flash(request, message)
    return see_other(request, "/users")
