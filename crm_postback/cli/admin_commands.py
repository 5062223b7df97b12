"""`postback admin …`: admin users of /admin, their roles in workspaces (members), their API
tokens, the audit trail. The CLI acts as an instance administrator (whoever runs it has the
database and the token key already)."""

from __future__ import annotations

from typing import Annotated

import typer

from crm_postback.cli.output import refused_input_exits
from crm_postback.cli.workspace_option import WorkspaceOption, cli_actor, workspace_id
from models import DEFAULT_WORKSPACE_NAME

admin_app = typer.Typer(
    no_args_is_help=True,
    help="Admin users of /admin, their roles per workspace (member-add, member-role, "
    "member-remove, members), their API tokens, audit.",
)
RoleOption = Annotated[
    str,
    typer.Option("--role", metavar="viewer|editor|owner", help="The role in the workspace"),
]


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
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace", metavar="NAME", help="Make them a member of this workspace (--role)"
        ),
    ] = None,
    role: Annotated[
        str,
        typer.Option("--role", metavar="viewer|editor|owner", help="Their role in --workspace"),
    ] = "viewer",
    instance_admin: Annotated[
        bool,
        typer.Option(
            "--instance-admin", help="Manages workspaces and users; owner in every workspace"
        ),
    ] = False,
) -> None:
    """Create an admin user who can log in to /admin (with --workspace W --role R a member
    of W; without, of no workspace until someone adds them)."""
    from crm_postback.commands.manage_admin_accounts import AddAdminUser, add_admin_user
    from crm_postback.commands.unit_of_work import Actor

    wanted = AddAdminUser(username, password, workspace, role, instance_admin)
    with refused_input_exits():
        user = add_admin_user(wanted, Actor.cli())
    where = f", {role} of {workspace}" if workspace else ""
    admin = ", instance administrator" if instance_admin else ""
    typer.echo(f"admin user {user.id} {user.username!r} created{where}{admin}")


@admin_app.command("member-add")
def member_add(username: str, workspace: WorkspaceOption, role: RoleOption) -> None:
    """Make an existing admin user a member of a workspace with a role."""
    from crm_postback.commands.manage_admin_accounts import AddMember, add_workspace_member

    actor = cli_actor(workspace)
    with refused_input_exits():
        done = add_workspace_member(AddMember(username, role), actor)
    typer.echo(f"{done.username}: {role} of {workspace}")


@admin_app.command("member-role")
def member_role(username: str, workspace: WorkspaceOption, role: RoleOption) -> None:
    """Change a member's role in a workspace."""
    from crm_postback.commands.manage_admin_accounts import ChangeMemberRole, change_member_role

    actor = cli_actor(workspace)
    with refused_input_exits():
        done = change_member_role(ChangeMemberRole(username, role), actor)
    typer.echo(f"{done.username}: {role} of {workspace}")


@admin_app.command("member-remove")
def member_remove(username: str, workspace: WorkspaceOption) -> None:
    """Remove a member from a workspace (the user and their tokens stay)."""
    from crm_postback.commands.manage_admin_accounts import RemoveMember, remove_workspace_member

    actor = cli_actor(workspace)
    with refused_input_exits():
        done = remove_workspace_member(RemoveMember(username), actor)
    typer.echo(f"{done.username}: no longer a member of {workspace}")


@admin_app.command("members")
def members(workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME) -> None:
    """The members of a workspace and their roles (instance administrators are owners of
    every workspace without being listed)."""
    from crm_postback.configuration.admin_accounts import list_members
    from models.db import session_scope

    with session_scope(workspace=workspace_id(workspace)) as session:
        for member in list_members(session):
            state = "active" if member.active else "disabled"
            typer.echo(f"{member.username:<24} {member.role.value:<7} {state}")


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
    from models.workspace_scope import ALL_WORKSPACES

    with session_scope(workspace=ALL_WORKSPACES) as session:
        for user in session.scalars(select(AdminUser).order_by(AdminUser.id)):
            last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
            state = "active" if user.active else "disabled"
            admin = "  instance admin" if user.instance_admin else ""
            typer.echo(
                f"{user.id:>4}  {user.username:<24} {user.source:<4} {state:<9} login {last}{admin}"
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
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
    instance: Annotated[
        bool,
        typer.Option(
            "--instance",
            help="The instance's own entries instead (workspaces, admin users, their tokens)",
        ),
    ] = False,
) -> None:
    """The newest audit entries of a workspace (or, with --instance, of the instance itself):
    who changed what, before and after."""
    from crm_postback.configuration import audit
    from crm_postback.configuration.event_set_service import get_event_set
    from models.db import session_scope
    from models.workspace_scope import ALL_WORKSPACES

    scope = ALL_WORKSPACES if instance else workspace_id(workspace)
    with session_scope(workspace=scope) as session:
        if instance:
            found = audit.instance_entries(session, limit=limit)
        else:
            with refused_input_exits():
                selected = get_event_set(session, event_set).id if event_set else None
            found = audit.entries(session, event_set_id=selected, limit=limit)
        for entry in found:
            target = f"{entry.entity_type} {entry.entity_id}" if entry.entity_id else ""
            typer.echo(
                f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor:<16} {entry.action:<18} {target}"
            )
            for change in audit.changes(entry):
                typer.echo(f"    {change.field}: {change.before!r} -> {change.after!r}")
