"""`postback admin …` (users, tokens, audit), `postback mapping export/import`,
`postback event-set verify`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from crm_postback.core.errors import InputRejected
from crm_postback.core.settings import get_settings

admin_app = typer.Typer(
    no_args_is_help=True, help="Admin users of /admin, their API tokens, audit."
)


def _fail(error: InputRejected) -> None:
    for item in error.errors:
        typer.secho(f"error: {item}", fg="red", err=True)
    raise typer.Exit(2)


def _user(session, username: str):  # type: ignore[no-untyped-def]
    from crm_postback.configuration.admin_accounts import find_user

    user = find_user(session, username)
    if user is None:
        _fail(InputRejected.one("username", f"no admin user {username!r}"))
    return user


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
    from crm_postback.configuration.admin_accounts import create_user
    from models.db import session_scope

    with session_scope() as session:
        try:
            user = create_user(session, username, password)
        except InputRejected as error:
            _fail(error)
        session.commit()
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
    from crm_postback.configuration.admin_accounts import set_password
    from models.db import session_scope

    with session_scope() as session:
        try:
            set_password(session, _user(session, username), password)
        except InputRejected as error:
            _fail(error)
        session.commit()
    typer.echo(f"{username}: password set; their sessions ended")


@admin_app.command("user-disable")
def user_disable(username: str, enable: bool = False) -> None:
    """Disable a user (ends their sessions, refuses their tokens); --enable undoes it."""
    from crm_postback.configuration.admin_accounts import set_active
    from models.db import session_scope

    with session_scope() as session:
        set_active(session, _user(session, username), enable)
        session.commit()
    typer.echo(f"{username}: {'enabled' if enable else 'disabled'}")


@admin_app.command("user-list")
def user_list() -> None:
    """List admin users."""
    from sqlalchemy import select

    from models import AdminUser
    from models.db import session_scope

    with session_scope() as session:
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
    from crm_postback.configuration.admin_accounts import create_token
    from models.db import session_scope

    with session_scope() as session:
        try:
            new = create_token(session, _user(session, username), label)
        except InputRejected as error:
            _fail(error)
        session.commit()
    typer.echo(f"admin token {new.id} for {username} ({new.prefix}…); shown only now:")
    typer.echo(new.token)


@admin_app.command("token-revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Revoke an admin token."""
    from crm_postback.configuration.admin_accounts import revoke_token
    from models.db import session_scope

    with session_scope() as session:
        try:
            revoke_token(session, token_id)
        except InputRejected as error:
            _fail(error)
        session.commit()
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

    with session_scope() as session:
        try:
            selected = get_event_set(session, event_set).id if event_set else None
        except InputRejected as error:
            _fail(error)
        for entry in audit.entries(session, event_set_id=selected, limit=limit):
            target = f"{entry.entity_type} {entry.entity_id}" if entry.entity_id else ""
            typer.echo(
                f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor:<16} {entry.action:<18} {target}"
            )
            for change in audit.changes(entry):
                typer.echo(f"    {change.field}: {change.before!r} -> {change.after!r}")


def mapping_export(
    event_set: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")
    ] = None,
) -> None:
    """Write an event set's mappings as YAML (review them in git)."""
    from crm_postback.configuration.event_set_service import get_event_set
    from crm_postback.configuration.mapping_service import list_mappings
    from crm_postback.configuration.mapping_yaml import export_mappings
    from models.db import session_scope

    with session_scope() as session:
        try:
            target = get_event_set(session, event_set)
        except InputRejected as error:
            _fail(error)
        text = export_mappings(target, list_mappings(session, target))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"{event_set}: mappings written to {output}")


def mapping_import(
    file: Annotated[Path, typer.Argument(help="YAML from `postback mapping export`")],
    event_set: Annotated[
        str | None, typer.Option(help="Default: the event_set named in the file")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only say what would change")] = False,
) -> None:
    """Make an event set's mappings equal to the file (create, update, delete), audited."""
    from crm_postback.configuration.audit import cli_actor
    from crm_postback.configuration.event_set_service import get_event_set
    from crm_postback.configuration.mapping_yaml import import_mappings, read_document
    from models.db import session_scope

    text = file.read_text(encoding="utf-8")
    with session_scope() as session:
        try:
            name = event_set or read_document(text)[0]
            if not name:
                raise InputRejected.one("event_set", "the file names none; pass --event-set")
            target = get_event_set(session, name)
            result = import_mappings(session, target, text, actor=cli_actor(), dry_run=dry_run)
        except InputRejected as error:
            _fail(error)
        if not dry_run:
            session.commit()
    prefix = "dry run: would be " if dry_run else ""
    typer.echo(f"{name}: {prefix}{result.summary()}")


def event_set_verify(name: str) -> None:
    """Check the event set ID with TikTok (GET /open_api/v1.3/crm/list/, advertiser + token)."""
    from crm_postback.configuration.event_set_service import get_event_set
    from crm_postback.configuration.event_set_verification import verify_event_set
    from models.db import session_scope

    with session_scope() as session:
        try:
            target = get_event_set(session, name)
        except InputRejected as error:
            _fail(error)
        result = verify_event_set(target, get_settings())
    suffix = f" (request_id {result.request_id})" if result.request_id else ""
    if not result.ok:
        typer.secho(f"{name}: {result.message}{suffix}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{name}: {result.message}{suffix}")


def register(app: typer.Typer, *, event_set_app: typer.Typer, mapping_app: typer.Typer) -> None:
    app.add_typer(admin_app, name="admin")
    mapping_app.command("export")(mapping_export)
    mapping_app.command("import")(mapping_import)
    event_set_app.command("verify")(event_set_verify)
