"""`postback api-key create/list/revoke`: the ingest API keys of source (routing) systems."""

from __future__ import annotations

from typing import Annotated

import typer

from crm_postback.cli.output import refused_input_exits
from models import DEFAULT_WORKSPACE_ID

api_key_app = typer.Typer(no_args_is_help=True, help="API keys of source (routing) systems.")


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Argument(help="The source system, e.g. acme-router")],
) -> None:
    """Create a key for a source system. The key is printed once and never stored."""
    from crm_postback.commands.manage_api_keys import CreateApiKey, create_api_key
    from crm_postback.commands.unit_of_work import Actor

    with refused_input_exits():
        new = create_api_key(CreateApiKey(name), Actor.cli())
    typer.echo(f"api key {new.id} for {new.name!r} ({new.key_prefix}…); shown only now:")
    typer.echo(new.key)


@api_key_app.command("list")
def api_key_list() -> None:
    """List keys: id, prefix, source system, state, last use."""
    from crm_postback.configuration.api_keys import list_keys
    from models.db import session_scope

    with session_scope(workspace=DEFAULT_WORKSPACE_ID) as session:
        for key in list_keys(session):
            state = (
                "active" if key.revoked_at is None else f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
            )
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            typer.echo(f"{key.id:>4}  {key.key_prefix}…  {key.name:<24} {state:<24} used {used}")


@api_key_app.command("revoke")
def api_key_revoke(key_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Revoke a key: requests with it get 403 from now on."""
    from crm_postback.commands.manage_api_keys import RevokeApiKey, revoke_api_key
    from crm_postback.commands.unit_of_work import Actor

    with refused_input_exits():
        key = revoke_api_key(RevokeApiKey(key_id), Actor.cli())
    typer.echo(f"api key {key.id} ({key.name}) revoked at {key.revoked_at:%Y-%m-%d %H:%M:%S}")
