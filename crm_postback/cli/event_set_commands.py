"""`postback event-set add/list/pause/resume/set-token/verify`: TikTok CRM event sets."""

from __future__ import annotations

from typing import Annotated

import typer

from crm_postback.cli.output import refused_input_exits
from crm_postback.cli.workspace_option import WorkspaceOption, cli_actor, workspace_id
from crm_postback.core.settings import get_settings
from models import DEFAULT_WORKSPACE_NAME

event_set_app = typer.Typer(no_args_is_help=True, help="TikTok CRM event sets (or Pixels).")


@event_set_app.command("add")
def event_set_add(
    name: Annotated[str, typer.Option(help="Your name for this advertiser destination")],
    event_set_id: Annotated[str, typer.Option(help="TikTok CRM event set ID (or pixel code)")],
    token: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            envvar="POSTBACK_NEW_TOKEN",
            help="Access token, or env:POSTBACK_TOKEN_<NAME> to read it from that environment "
            "variable at send time (no other variable may be named; only the CLI may)",
        ),
    ],
    kind: Annotated[str, typer.Option(help="crm (CRM event set) or web (Pixel)")] = "crm",
    crm_name: Annotated[str, typer.Option(help="Sent as lead.lead_event_source")] = "crm-postback",
    test_event_code: Annotated[str | None, typer.Option()] = None,
    advertiser_id: Annotated[str | None, typer.Option()] = None,
    currency: Annotated[str | None, typer.Option(help="Default currency for values")] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Add an event set. The token is encrypted at rest and never shown again."""
    from crm_postback.commands.manage_event_sets import AddEventSet, add_event_set

    actor = cli_actor(workspace)
    with refused_input_exits():
        event_set = add_event_set(
            AddEventSet(
                name=name,
                source_id=event_set_id,
                access_token=token,
                kind=kind,
                lead_event_source=crm_name,
                test_event_code=test_event_code,
                advertiser_id=advertiser_id,
                default_currency=currency,
            ),
            actor,
        )
    typer.echo(
        f"event set {event_set.id} {event_set.name!r} ({event_set.kind} {event_set.source_id})"
    )


@event_set_app.command("list")
def event_set_list(workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME) -> None:
    """List the workspace's event sets with their masked tokens and state."""
    from sqlalchemy import select

    from crm_postback.core.token_vault import token_hint
    from models import EventSet
    from models.db import session_scope

    settings = get_settings()
    with session_scope(workspace=workspace_id(workspace)) as session:
        for es in session.scalars(select(EventSet).order_by(EventSet.id)):
            line = (
                f"{es.id:>3}  {es.name:<24} {es.kind:<4} {es.source_id:<22} "
                f"token {token_hint(es.sealed_token, settings):<14} {es.status}"
            )
            if es.test_event_code:
                line += f"  test_event_code={es.test_event_code}"
            if es.paused_reason:
                line += f"  ({es.paused_reason})"
            typer.echo(line)


@event_set_app.command("pause")
def event_set_pause(
    name: str,
    reason: str = "paused by operator",
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Hold all postbacks of an event set (nothing is dropped)."""
    from crm_postback.commands.manage_event_sets import PauseEventSet, pause_event_set

    actor = cli_actor(workspace)
    with refused_input_exits():
        pause_event_set(PauseEventSet(name, reason), actor)
    typer.echo(f"{name}: paused")


@event_set_app.command("resume")
def event_set_resume(name: str, workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME) -> None:
    """Resume an event set; held postbacks are sent by the next sweep."""
    from crm_postback.commands.manage_event_sets import ResumeEventSet, resume_event_set

    actor = cli_actor(workspace)
    with refused_input_exits():
        resume_event_set(ResumeEventSet(name), actor)
    typer.echo(f"{name}: active")


@event_set_app.command("set-token")
def event_set_token(
    name: str,
    token: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            envvar="POSTBACK_NEW_TOKEN",
            help="Access token, or env:POSTBACK_TOKEN_<NAME> (read at send time)",
        ),
    ],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Replace the access token (resumes a set paused for token errors)."""
    from crm_postback.commands.manage_event_sets import ReplaceToken, replace_token

    actor = cli_actor(workspace)
    with refused_input_exits():
        replace_token(ReplaceToken(name, token), actor)
    typer.echo(f"{name}: token replaced")


@event_set_app.command("verify")
def event_set_verify(name: str, workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME) -> None:
    """Check the event set ID with TikTok (GET /open_api/v1.3/crm/list/, advertiser + token)."""
    from crm_postback.commands.manage_event_sets import VerifyEventSet, verify_event_set

    actor = cli_actor(workspace)
    with refused_input_exits():
        result = verify_event_set(VerifyEventSet(name), actor)
    suffix = f" (request_id {result.request_id})" if result.request_id else ""
    if not result.ok:
        typer.secho(f"{name}: {result.message}{suffix}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{name}: {result.message}{suffix}")
