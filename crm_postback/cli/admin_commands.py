"""`postback admin …`: admin users of /admin, their API tokens, the audit trail."""

from __future__ import annotations

from typing import Annotated

import typer

from crm_postback.cli.output import refused_input_exits
from models import DEFAULT_WORKSPACE_ID

admin_app = typer.Typer(
    no_args_is_help=True, help="Admin users of /admin, their API tokens, audit."
)


@admin_app.command("user-add")
def user_add(
    username: str,
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="POSTBACK_NEW_PASSWORD",
            help="At least 10 characters; stored as an argon2 hash",
        ),
    ],
) -> None:
    """Create an admin user who can log in to /admin."""
    from crm_postback.commands.manage_admin_accounts import AddAdminUser, add_admin_user
    from crm_postback.commands.unit_of_work import Actor

    with refused_input_exits():
        user = add_admin_user(AddAdminUser(username, password), Actor.cli())
    typer.echo(f"admin user {user.id} {user.username!r} created")


@admin_app.command("user-password")
def user_password(
    username: str,
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, envvar="POSTBACK_NEW_PASSWORD"
        ),
    ],
) -> None:
    """Set a user's password (ends their sessions)."""
    from crm_postback.commands.manage_admin_accounts import (
        ChangeAdminPassword,
        change_admin_password,
    )
    from crm_postback.commands.unit_of_work import Actor

    with refused_input_exits():
        change_admin_password(ChangeAdminPassword(username, password), Actor.cli())
    typer.echo(f"{username}: password set; their sessions ended")


@admin_app.command("user-disable")
def user_disable(username: str, enable: bool = False) -> None:
    """Disable a user (ends their sessions, refuses their tokens); --enable undoes it."""
    from crm_postback.commands.manage_admin_accounts import (
        SetAdminUserActive,
        set_admin_user_active,
    )
    from crm_postback.commands.unit_of_work import Actor

    with refused_input_exits():
        set_admin_user_active(SetAdminUserActive(username, active=enable), Actor.cli())
    typer.echo(f"{username}: {'enabled' if enable else 'disabled'}")


@admin_app.command("user-list")
def user_list() -> None:
    """List admin users."""
    from sqlalchemy import select

    from models import AdminUser
    from models.db import session_scope

    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        for user in session.scalars(select(AdminUser).order_by(AdminUser.id)):
            last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
            state = "active" if user.active else "disabled"
            typer.echo(
                f"{user.id:>4}  {user.username:<24} {user.source:<4} {state:<9} login {last}"
            )


@admin_app.command("token-create")
def token_create(
    username: str,
    label: Annotated[str, typer.Option(help="What uses it, e.g. ci-mappings")] = "automation",
) -> None:
    """Create a personal token for the admin JSON API (printed once)."""
    from crm_postback.commands.manage_admin_accounts import CreateAdminToken, create_admin_token
    from crm_postback.commands.unit_of_work import Actor

    with refused_input_exits():
        new = create_admin_token(CreateAdminToken(username, label), Actor.cli())
    typer.echo(f"admin token {new.id} for {username} ({new.prefix}…); shown only now:")
    typer.echo(new.token)


@admin_app.command("token-revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Revoke an admin token."""
    from crm_postback.commands.manage_admin_accounts import RevokeAdminToken, revoke_admin_token
    from crm_postback.commands.unit_of_work import Actor

    with refused_input_exits():
        revoke_admin_token(RevokeAdminToken(token_id), Actor.cli())
    typer.echo(f"admin token {token_id} revoked")


@admin_app.command("audit")
def audit_list(
    event_set: Annotated[str | None, typer.Option(help="Event set name or ID")] = None,
    limit: int = 20,
) -> None:
    """The newest audit entries: who changed what, before and after."""
    from crm_postback.configuration import audit
    from crm_postback.configuration.event_set_service import get_event_set
    from models.db import session_scope

    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        with refused_input_exits():
            selected = get_event_set(session, event_set).id if event_set else None
        for entry in audit.entries(session, event_set_id=selected, limit=limit):
            target = f"{entry.entity_type} {entry.entity_id}" if entry.entity_id else ""
            typer.echo(
                f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor:<16} {entry.action:<18} {target}"
            )
            for change in audit.changes(entry):
                typer.echo(f"    {change.field}: {change.before!r} -> {change.after!r}")
