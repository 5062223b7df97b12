"""Use cases of admin users and their API tokens: add a user, change a password, disable or
enable a user, create and revoke a token.

Audit entries name users by username and tokens by id, label and display prefix (`pba_` and
8 characters); a password, its hash or a token never enters one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_postback.commands.unit_of_work import Actor, unit_of_work
from crm_postback.configuration.admin_accounts import (
    create_token,
    create_user,
    get_token,
    get_user,
    revoke_token,
    set_active,
    set_password,
)
from models import AdminToken, AdminUser


@dataclass(frozen=True)
class AddAdminUser:
    username: str
    password: str  # at least 10 characters; only its argon2 hash is stored


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


@dataclass(frozen=True)
class RevokeAdminToken:
    token_id: int


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


def add_admin_user(request: AddAdminUser, actor: Actor) -> AdminUserResult:
    with unit_of_work(actor, requires=None) as uow:
        user = create_user(uow.session, request.username, request.password)
        uow.audit(
            "admin_user.add",
            entity_type="admin_user",
            entity_id=user.id,
            after=_user_snapshot(user),
        )
        return AdminUserResult(user.id, user.username, user.active, changed=True)


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


def create_admin_token(request: CreateAdminToken, actor: Actor) -> NewAdminToken:
    """A personal token of the user for the admin JSON API."""
    with unit_of_work(actor, requires=None) as uow:
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
    """The token is refused from now on; revoking a revoked token changes nothing."""
    with unit_of_work(actor, requires=None) as uow:
        row = get_token(uow.session, request.token_id)
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
