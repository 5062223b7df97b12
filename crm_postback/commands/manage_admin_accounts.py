"""Use cases of admin users, workspaces, members and API tokens: add a user (optionally a
member of a workspace, or an instance administrator), change a password, disable or enable a
user; add a member to a workspace, change their role, remove them; create
and revoke a token.

Who may: admin users are the instance administrators' (`requires=None`);
members of a workspace are its owners' (`requires=Role.OWNER`, in that workspace). Personal
tokens are the instance's, whatever face or workspace the request comes from: their own, any
admin (the face names the caller: `caller_user_id`); anyone else's, an instance administrator.

Audit entries name users by username and tokens by id, label and display prefix (`pba_` and
8 characters); a password, its hash or a token never enters one. Member changes are entries
of their workspace; users, workspaces and tokens are the instance's (no workspace).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from crm_postback.commands.lookups import NotFound
from crm_postback.commands.unit_of_work import Actor, UnitOfWork, unit_of_work
from crm_postback.configuration.admin_accounts import (
    add_member,
    add_member_in,
    checked_role,
    create_token,
    create_user,
    find_member,
    find_user,
    get_token,
    get_user,
    remove_member,
    revoke_token,
    set_active,
    set_password,
)
from crm_postback.configuration.workspaces import get_workspace
from crm_postback.core.errors import FieldError, InputRejected
from models import AdminToken, AdminUser, Role, WorkspaceMember
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES


@dataclass(frozen=True)
class AddAdminUser:
    username: str
    password: str  # at least 10 characters; only its argon2 hash is stored
    workspace: str | None = None  # a workspace they become a member of, with `role`
    role: Role | str = Role.VIEWER
    instance_admin: bool = False  # manages workspaces and users; owner in every workspace


@dataclass(frozen=True)
class ChangeAdminPassword:
    username: str
    password: str


@dataclass(frozen=True)
class SetAdminUserActive:
    username: str
    active: bool  # False disables: their sessions end and their tokens are refused


@dataclass(frozen=True)
class CreateAdminToken:
    username: str
    label: str  # what uses it, e.g. ci-mappings
    # The admin asking (the web faces' logged-in admin): their own token needs no more.
    # None (the CLI): an instance administrator's change.
    caller_user_id: int | None = None


@dataclass(frozen=True)
class RevokeAdminToken:
    token_id: int
    caller_user_id: int | None = None  # as in CreateAdminToken


@dataclass(frozen=True)
class AdminUserResult:
    id: int
    username: str
    active: bool
    changed: bool  # False: the user was already in the state asked for


@dataclass(frozen=True)
class NewAdminToken:
    id: int
    username: str
    label: str
    prefix: str
    token: str  # its only copy: the database keeps its SHA-256


@dataclass(frozen=True)
class RevokedAdminToken:
    id: int
    username: str | None
    label: str
    revoked_at: datetime
    newly_revoked: bool


def _user_snapshot(user: AdminUser) -> dict[str, Any]:
    return {"username": user.username, "source": user.source, "active": user.active}


def _token_snapshot(token: AdminToken, username: str | None) -> dict[str, Any]:
    return {
        "user": username,
        "label": token.label,
        "token_prefix": token.token_prefix,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def _member_snapshot(user: AdminUser, member: WorkspaceMember) -> dict[str, Any]:
    return {"username": user.username, "role": member.role.value}


def add_admin_user(request: AddAdminUser, actor: Actor) -> AdminUserResult:
    with unit_of_work(actor, requires=None) as uow:
        role = checked_role(request.role)
        workspace = get_workspace(uow.session, request.workspace) if request.workspace else None
        user = create_user(
            uow.session, request.username, request.password, instance_admin=request.instance_admin
        )
        uow.audit(
            "admin_user.add",
            entity_type="admin_user",
            entity_id=user.id,
            after=_user_snapshot(user) | {"instance_admin": user.instance_admin},
        )
        if workspace is not None:
            add_member_in(uow.session, workspace.id, user, role)
            uow.audit(
                "member.add",
                entity_type="workspace_member",
                entity_id=user.id,
                after={"username": user.username, "role": role.value},
                workspace_id=workspace.id,
            )
        return AdminUserResult(user.id, user.username, user.active, changed=True)


@dataclass(frozen=True)
class AddMember:
    username: str  # an existing admin user
    role: Role | str


@dataclass(frozen=True)
class ChangeMemberRole:
    username: str
    role: Role | str


@dataclass(frozen=True)
class RemoveMember:
    username: str


@dataclass(frozen=True)
class MemberResult:
    user_id: int
    username: str
    role: Role | None  # None: removed
    changed: bool


def _keeps_an_owner(uow: UnitOfWork, member: WorkspaceMember, new_role: Role | None) -> None:
    """A workspace keeps at least one owner (an instance administrator can always add one).
    The owners' rows are locked before they are counted: two owners demoting each other at
    once would otherwise both count two on PostgreSQL (SQLite has no FOR UPDATE; a writer
    there takes the whole database). The
    second waits, then finds the first's change (the row no longer an owner's) and counts one.
    """
    if member.role is not Role.OWNER or new_role is Role.OWNER:
        return
    owners = uow.session.scalars(
        select(WorkspaceMember.user_id)
        .where(WorkspaceMember.role == Role.OWNER)
        .order_by(WorkspaceMember.user_id)  # one lock order: no deadlock
        .with_for_update()
    ).all()
    if len(owners) <= 1:
        raise InputRejected.one("role", "a workspace keeps at least one owner")


def add_workspace_member(request: AddMember, actor: Actor) -> MemberResult:
    """Makes an existing admin user a member of the actor's workspace (owners)."""
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        role = checked_role(request.role)
        user = get_user(uow.session, request.username)
        member = add_member(uow.session, user, role)
        uow.audit(
            "member.add",
            entity_type="workspace_member",
            entity_id=user.id,
            after=_member_snapshot(user, member),
        )
        return MemberResult(user.id, user.username, member.role, changed=True)


NO_SUCH_MEMBER = "there is no member of this name in this workspace"
NO_SUCH_TOKEN = "there is no admin token with this id"


def _member_named(uow: UnitOfWork, username: str) -> tuple[AdminUser, WorkspaceMember]:
    """A user of another workspace and a name nobody has are answered alike: an owner
    learns nothing about the users of other workspaces."""
    user = find_user(uow.session, username)
    member = find_member(uow.session, user) if user is not None else None
    if user is None or member is None:
        raise NotFound([FieldError("username", NO_SUCH_MEMBER)])
    return user, member


def change_member_role(request: ChangeMemberRole, actor: Actor) -> MemberResult:
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        role = checked_role(request.role)
        user, member = _member_named(uow, request.username)
        before = _member_snapshot(user, member)
        _keeps_an_owner(uow, member, role)
        member.role = role
        changed = before["role"] != role.value
        if changed:
            uow.audit(
                "member.role",
                entity_type="workspace_member",
                entity_id=user.id,
                before=before,
                after=_member_snapshot(user, member),
            )
        return MemberResult(user.id, user.username, role, changed)


def remove_workspace_member(request: RemoveMember, actor: Actor) -> MemberResult:
    """The user no longer sees the workspace; their account and tokens stay."""
    with unit_of_work(actor, requires=Role.OWNER) as uow:
        user, member = _member_named(uow, request.username)
        before = _member_snapshot(user, member)
        _keeps_an_owner(uow, member, None)
        remove_member(uow.session, member)
        uow.audit("member.remove", entity_type="workspace_member", entity_id=user.id, before=before)
        return MemberResult(user.id, user.username, None, changed=True)


def change_admin_password(request: ChangeAdminPassword, actor: Actor) -> AdminUserResult:
    """Sets a new password and ends the user's sessions."""
    with unit_of_work(actor, requires=None) as uow:
        user = get_user(uow.session, request.username)
        set_password(uow.session, user, request.password)
        uow.audit(
            "admin_user.change_password",
            entity_type="admin_user",
            entity_id=user.id,
            after={"username": user.username, "sessions": "ended"},
        )
        return AdminUserResult(user.id, user.username, user.active, changed=True)


def set_admin_user_active(request: SetAdminUserActive, actor: Actor) -> AdminUserResult:
    """Disables (ending their sessions, refusing their tokens) or enables a user."""
    with unit_of_work(actor, requires=None) as uow:
        user = get_user(uow.session, request.username)
        before = _user_snapshot(user)
        set_active(uow.session, user, request.active)
        changed = before["active"] != user.active
        if changed:
            uow.audit(
                "admin_user.enable" if request.active else "admin_user.disable",
                entity_type="admin_user",
                entity_id=user.id,
                before=before,
                after=_user_snapshot(user),
            )
        return AdminUserResult(user.id, user.username, user.active, changed)


@dataclass(frozen=True)
class UpdateAdminUser:
    """What the JSON API's PATCH /users/{username} changes, at least one of them."""

    username: str
    password: str | None = None
    active: bool | None = None


def update_admin_user(request: UpdateAdminUser, actor: Actor) -> AdminUserResult:
    """A new password (ending the user's sessions) and/or disabling or enabling them, in one
    transaction. Who may is checked before the request is looked at."""
    with unit_of_work(actor, requires=None) as uow:
        if request.password is None and request.active is None:
            raise InputRejected(
                [
                    FieldError("password", "give a password or active (or both)"),
                    FieldError("active", "give a password or active (or both)"),
                ]
            )
        user = get_user(uow.session, request.username)
        changed = False
        if request.password is not None:
            set_password(uow.session, user, request.password)
            uow.audit(
                "admin_user.change_password",
                entity_type="admin_user",
                entity_id=user.id,
                after={"username": user.username, "sessions": "ended"},
            )
            changed = True
        if request.active is not None:
            before = _user_snapshot(user)
            set_active(uow.session, user, request.active)
            if before["active"] != user.active:
                uow.audit(
                    "admin_user.enable" if request.active else "admin_user.disable",
                    entity_type="admin_user",
                    entity_id=user.id,
                    before=before,
                    after=_user_snapshot(user),
                )
                changed = True
        return AdminUserResult(user.id, user.username, user.active, changed)


@contextmanager
def _token_unit_of_work(actor: Actor) -> Iterator[UnitOfWork]:
    """An instance-level unit of work for personal tokens: a session over every workspace,
    its entries the instance's. Unlike `unit_of_work(requires=None)` it lets in any admin:
    the command checks that the token is the caller's own, or that the actor is an
    instance administrator, before it changes anything."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        uow = UnitOfWork(session, actor)
        yield uow
        session.commit()


def create_admin_token(request: CreateAdminToken, actor: Actor) -> NewAdminToken:
    """A personal token of the user for the admin JSON API."""
    with _token_unit_of_work(actor) as uow:
        found = find_user(uow.session, request.username.strip())
        if found is None or found.id != request.caller_user_id:
            actor.require_instance_admin()  # before an unknown name is told apart
        user = get_user(uow.session, request.username)
        new = create_token(uow.session, user, request.label)
        row = get_token(uow.session, new.id)
        uow.audit(
            "admin_token.create",
            entity_type="admin_token",
            entity_id=row.id,
            after=_token_snapshot(row, user.username),
        )
        return NewAdminToken(row.id, user.username, row.label, new.prefix, new.token)


def revoke_admin_token(request: RevokeAdminToken, actor: Actor) -> RevokedAdminToken:
    """The token is refused from now on; revoking a revoked token changes nothing. An
    admin who is not an instance administrator may revoke only their own: anyone else's is
    answered like a token that does not exist."""
    with _token_unit_of_work(actor) as uow:
        row = uow.session.get(AdminToken, request.token_id)
        own = row is not None and row.user_id == request.caller_user_id
        if row is None or (not own and not actor.instance_admin):
            raise NotFound([FieldError("id", NO_SUCH_TOKEN)])
        owner = uow.session.get(AdminUser, row.user_id)
        username = owner.username if owner else None
        before = _token_snapshot(row, username)
        revoke_token(uow.session, row.id)
        newly_revoked = before["revoked_at"] is None
        if newly_revoked:
            uow.audit(
                "admin_token.revoke",
                entity_type="admin_token",
                entity_id=row.id,
                before=before,
                after=_token_snapshot(row, username),
            )
        assert row.revoked_at is not None
        return RevokedAdminToken(row.id, username, row.label, row.revoked_at, newly_revoked)
