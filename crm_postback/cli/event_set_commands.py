"""`postback event-set add/edit/list/show/pause/resume/set-token/verify`: TikTok CRM event sets."""

from __future__ import annotations

from typing import Annotated

import typer

from crm_postback.cli.output import refused_input_exits
from crm_postback.cli.workspace_option import WorkspaceOption, cli_actor, workspace_id
from crm_postback.core.settings import get_settings
from models import DEFAULT_WORKSPACE_NAME, EventSet

event_set_app = typer.Typer(no_args_is_help=True, help="TikTok CRM event sets (or Pixels).")

LIMITED_DATA_USE_HELP = (
    "Send limited_data_use true on the set's events (US state privacy opt-out), unless a lead "
    "or trigger says otherwise"
)
AGE_HELP = (
    "Events older than this many days when due end expired, unsent "
    "(default: the event source's, 28 for crm and 7 for web)"
)


def _age_option(text: str | None) -> float | None:
    """`--max-event-age-days`: a number of days, or `default` (the event source's)."""
    if text is None or text.strip().lower() == "default":
        return None
    try:
        return float(text)
    except ValueError:
        typer.secho(
            "error: max_event_age_days: must be a number of days, or 'default'", fg="red", err=True
        )
        raise typer.Exit(2) from None


def settings_text(event_set: EventSet) -> str:
    """`limited_data_use=false max_event_age_days=28 (crm default)`."""
    from crm_postback.configuration.event_set_service import event_age_limit

    age = f"{event_age_limit(event_set, get_settings()):g}"
    if event_set.max_event_age_days is None:
        age += f" ({event_set.kind} default)"
    flag = "true" if event_set.limited_data_use else "false"
    return f"limited_data_use={flag} max_event_age_days={age}"


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
    limited_data_use: Annotated[bool, typer.Option(help=LIMITED_DATA_USE_HELP)] = False,
    max_event_age_days: Annotated[
        str | None, typer.Option(help=AGE_HELP, metavar="DAYS|default")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="Start with a preset's mappings: lead-generation"),
    ] = None,
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
                limited_data_use=limited_data_use,
                max_event_age_days=_age_option(max_event_age_days),
                preset=preset,
            ),
            actor,
        )
    typer.echo(
        f"event set {event_set.id} {event_set.name!r} ({event_set.kind} {event_set.source_id})"
        f"  {settings_text(event_set)}"
    )
    if preset is not None:
        typer.echo(f"preset {preset}: mappings created (postback mapping list {event_set.name})")


@event_set_app.command("edit")
def event_set_edit(
    name: Annotated[str, typer.Argument(help="Event set name or TikTok ID")],
    new_name: Annotated[str | None, typer.Option("--name", help="Rename it")] = None,
    crm_name: Annotated[str | None, typer.Option(help="Sent as lead.lead_event_source")] = None,
    advertiser_id: Annotated[str | None, typer.Option(help="'' clears it")] = None,
    currency: Annotated[str | None, typer.Option(help="Default currency; '' clears it")] = None,
    limited_data_use: Annotated[
        bool | None, typer.Option(help=LIMITED_DATA_USE_HELP, show_default=False)
    ] = None,
    max_event_age_days: Annotated[
        str | None, typer.Option(help=AGE_HELP + "; 'default' clears it", metavar="DAYS|default")
    ] = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Change what is given (one audit entry; none if nothing changed). The test event code
    and the token have their own commands (set-token; the admin's test events switch)."""
    from crm_postback.commands.manage_event_sets import UpdateEventSet, update_event_set
    from crm_postback.configuration.event_set_service import KEEP

    actor = cli_actor(workspace)
    with refused_input_exits():
        updated = update_event_set(
            UpdateEventSet(
                name,
                name=new_name,
                lead_event_source=crm_name,
                advertiser_id=KEEP if advertiser_id is None else advertiser_id,
                default_currency=KEEP if currency is None else currency,
                limited_data_use=limited_data_use,
                max_event_age_days=KEEP
                if max_event_age_days is None
                else _age_option(max_event_age_days),
            ),
            actor,
        )
    event_set = updated.event_set
    typer.echo(f"{event_set.name}: saved  {settings_text(event_set)}")


@event_set_app.command("show")
def event_set_show(
    name: Annotated[str, typer.Argument(help="Event set name or TikTok ID")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """One event set: its settings, masked token and mappings."""
    from crm_postback.configuration.event_set_service import get_event_set
    from crm_postback.configuration.mapping_service import describe_mapping, list_mappings
    from crm_postback.core.token_vault import token_hint
    from models.db import session_scope

    settings = get_settings()
    with session_scope(workspace=workspace_id(workspace)) as session:
        with refused_input_exits():
            es = get_event_set(session, name)
        lines = [
            f"event set {es.id} {es.name!r} ({es.kind} {es.source_id}) {es.status}"
            + (f" ({es.paused_reason})" if es.paused_reason else ""),
            f"  token {token_hint(es.sealed_token, settings)}",
            f"  lead_event_source={es.lead_event_source} advertiser_id={es.advertiser_id or '-'} "
            f"default_currency={es.default_currency or '-'} "
            f"test_event_code={es.test_event_code or '-'}",
            f"  {settings_text(es)}",
        ]
        mappings = list_mappings(session, es)
        lines.append(f"  mappings: {len(mappings)}")
        lines.extend(
            f"  {m.id:>4} v{m.version}  {describe_mapping(m)}{'' if m.enabled else ' (disabled)'}"
            for m in mappings
        )
    for line in lines:
        typer.echo(line)


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
            typer.echo(f"{line}  {settings_text(es)}")


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
