"""`postback api-key create/list/revoke/strict`: the ingest API keys of source (routing) systems.

Each acts in one workspace: `--workspace NAME`, or the default workspace without it. The CLI
acts as an instance administrator (whoever runs it has the database already).
"""

from __future__ import annotations

from typing import Annotated

import typer

from crm_postback.cli.output import refused_input_exits
from crm_postback.cli.workspace_option import WorkspaceOption, cli_actor, workspace_id
from models import DEFAULT_WORKSPACE_NAME

api_key_app = typer.Typer(no_args_is_help=True, help="API keys of source (routing) systems.")


@api_key_app.command("create")
def api_key_create(
    name: Annotated[
        str, typer.Argument(metavar="SOURCE", help="The source system, e.g. acme-router")
    ],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
    event_sets: Annotated[
        list[str] | None,
        typer.Option(
            "--event-set",
            metavar="REF",
            help="Limit the key to this event set (name, id or TikTok event set ID); "
            "repeatable. Without it: every event set of the workspace, now and later.",
        ),
    ] = None,
    permissions: Annotated[
        list[str] | None,
        typer.Option(
            "--permission",
            metavar="P",
            help="triggers:send, leads:write or postbacks:read; repeatable. Without it: all.",
        ),
    ] = None,
    rate_limit: Annotated[
        str | None,
        typer.Option(
            "--rate-limit",
            metavar="RATE",
            help='Requests this key may make, e.g. "100/second" or "none" '
            "(default: the INGEST_KEY_RATE_LIMIT setting).",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="A match key that does not normalise refuses the trigger (default: it is "
            "dropped and the answer warns).",
        ),
    ] = False,
) -> None:
    """Create a key for a source system. The key is printed once and never stored."""
    from crm_postback.commands.manage_api_keys import CreateApiKey, create_api_key

    actor = cli_actor(workspace)
    request = CreateApiKey(name, event_sets or None, permissions or None, rate_limit, strict)
    with refused_input_exits():
        new = create_api_key(request, actor)
    typer.echo(f"api key {new.id} for {new.name!r} ({new.key_prefix}…) in workspace {workspace}")
    limits = [
        "event sets: "
        + ("all" if new.event_set_ids is None else ", ".join(map(str, new.event_set_ids))),
        "permissions: " + ", ".join(new.permissions),
        "rate limit: " + (new.rate_limit or "the INGEST_KEY_RATE_LIMIT setting"),
        "bad match keys: " + ("refused (strict)" if new.strict else "dropped with a warning"),
    ]
    typer.echo("; ".join(limits))
    typer.echo("shown only now:")
    typer.echo(new.key)


@api_key_app.command("list")
def api_key_list(workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME) -> None:
    """List the workspace's keys: id, prefix, source system, state, last use, limits."""
    from crm_postback.configuration.api_keys import PERMISSIONS, event_set_names, list_keys
    from models.db import session_scope

    with session_scope(workspace=workspace_id(workspace)) as session:
        for key in list_keys(session):
            state = (
                "active" if key.revoked_at is None else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
            )
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            names = event_set_names(session, key)
            scope = "all event sets" if names is None else "event sets " + ",".join(names)
            allowed = (
                "all permissions"
                if set(key.permissions) >= set(PERMISSIONS)
                else ",".join(key.permissions) or "no permissions"
            )
            rate = key.rate_limit or "default rate"
            strictness = "strict" if key.strict else "lenient"
            typer.echo(
                f"{key.id:>4}  {key.key_prefix}…  {key.name:<24} {state:<24} used {used}"
                f"  {scope}; {allowed}; {rate}; {strictness}"
            )


@api_key_app.command("revoke")
def api_key_revoke(
    key_id: Annotated[int, typer.Argument(metavar="ID")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Revoke a key of the workspace: requests with it get 403 from now on."""
    from crm_postback.commands.manage_api_keys import RevokeApiKey, revoke_api_key

    actor = cli_actor(workspace)
    with refused_input_exits():
        key = revoke_api_key(RevokeApiKey(key_id), actor)
    typer.echo(f"api key {key.id} ({key.name}) revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S}")


@api_key_app.command("strict")
def api_key_strict(
    key_id: Annotated[int, typer.Argument(metavar="ID")],
    on: Annotated[
        bool,
        typer.Option(
            "--on/--off",
            help="--on: a match key that does not normalise refuses the key's triggers; "
            "--off: it is dropped with a warning (the default of a new key).",
        ),
    ],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Make a key of the workspace strict, or lenient again (from its next request)."""
    from crm_postback.commands.manage_api_keys import SetApiKeyStrict, set_api_key_strict

    actor = cli_actor(workspace)
    with refused_input_exits():
        key = set_api_key_strict(SetApiKeyStrict(key_id, on), actor)
    state = "strict" if key.strict else "lenient"
    suffix = "" if key.changed else " already; nothing changed"
    typer.echo(f"api key {key.id} ({key.name}) is {state}{suffix}")
