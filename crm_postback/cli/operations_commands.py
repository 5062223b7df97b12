"""Operations commands: `postback diagnose`, `erase-lead`, `withdraw-consent`, `purge`,
`flower`."""

from __future__ import annotations

from typing import Annotated

import typer

from crm_postback.cli.output import refused_input_exits
from crm_postback.cli.web_commands import is_loopback
from crm_postback.cli.workspace_option import WorkspaceOption, cli_actor, workspace_id
from crm_postback.core.settings import get_settings
from models import DEFAULT_WORKSPACE_NAME


def diagnose(
    event_set: Annotated[
        str | None, typer.Argument(help="Event set name or ID; default: every event set")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
    days: Annotated[int, typer.Option(min=1, max=90, help="Window in days")] = 14,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Signal diagnostics per event set of the workspace: findings with a severity and a
    suggested fix.

    Match-key coverage, volume against TikTok's guidance (more than 50 signals in 14 days),
    TikTok's error codes, unmapped triggers by type, what is still waiting.
    """
    from crm_postback.configuration.event_set_service import get_event_set
    from crm_postback.operations.diagnostics import diagnose as diagnose_one
    from crm_postback.operations.diagnostics import diagnose_all
    from crm_postback.operations.diagnostics_text import render_json, render_text
    from models.db import session_scope

    stale_trigger_seconds = max(300, get_settings().stale_trigger_seconds * 2)
    scope = workspace_id(workspace)
    with session_scope(workspace=scope) as session, refused_input_exits():
        if event_set is None:
            reports = diagnose_all(
                session, window_days=days, stale_trigger_seconds=stale_trigger_seconds
            )
        else:
            set_id = get_event_set(session, event_set).id
            reports = [
                diagnose_one(
                    session,
                    set_id,
                    window_days=days,
                    stale_trigger_seconds=stale_trigger_seconds,
                )
            ]
    if as_json:
        typer.echo(render_json(reports[0] if event_set else reports))
        return
    if not reports:
        typer.echo("no event sets yet: `postback event-set add ...`")
    for index, report in enumerate(reports):
        if index:
            typer.echo("")
        for line in render_text(report):
            typer.echo(line)


def erase_lead(
    lead_id: Annotated[str, typer.Argument(help="The routing system's lead id")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Erase one lead of the workspace on request (data-subject deletion): keys, attributes,
    event bodies.

    The lead row (every hash) is deleted, its triggers' attributes and its postbacks' event
    bodies are cleared; statuses, codes and counts stay. Another workspace's lead of the same
    id is another lead, left alone.
    """
    from crm_postback.commands.erase_lead import EraseLead
    from crm_postback.commands.erase_lead import erase_lead as run
    from crm_postback.operations.retention import describe_erased

    actor = cli_actor(workspace)
    if not yes and not typer.confirm(
        f"Erase everything personal stored for lead {lead_id!r} in workspace {workspace!r}?"
    ):
        raise typer.Exit(1)
    with refused_input_exits():
        result = run(EraseLead(lead_id), actor)
    for line in describe_erased(result):
        typer.echo(line)


def withdraw_consent(
    lead_id: Annotated[str, typer.Argument(help="The routing system's lead id")],
    workspace: WorkspaceOption = DEFAULT_WORKSPACE_NAME,
) -> None:
    """Record that a lead of the workspace withdrew consent: nothing more is sent for it.

    Its postbacks still waiting (pending, on the retry ladder) end consent_withdrawn; triggers
    that arrive later end the same way, unsent. One a worker is sending at that moment may
    still arrive. Running it again changes nothing. Not reversible (a lead who consents again
    comes back under a new lead id); erase-lead erases its keys.
    """
    from crm_postback.commands.withdraw_consent import WithdrawConsent
    from crm_postback.commands.withdraw_consent import withdraw_consent as run

    actor = cli_actor(workspace)
    with refused_input_exits():
        result = run(WithdrawConsent(lead_id), actor)
    typer.echo(result.message)


def purge(
    dry_run: Annotated[bool, typer.Option(help="Only count what would be cleared")] = False,
) -> None:
    """Run the retention purge now (beat runs it daily): keys and bodies past RETENTION_DAYS,
    in every workspace.

    Statuses, codes and counts are kept.
    """
    from crm_postback.commands.purge_personal_data import purge as run
    from crm_postback.commands.unit_of_work import Actor
    from crm_postback.operations.retention import count_expired, retention_cutoff
    from models import utcnow
    from models.db import session_scope
    from models.workspace_scope import ALL_WORKSPACES

    if dry_run:
        settings = get_settings()
        cutoff = retention_cutoff(settings, utcnow())
        with session_scope(workspace=ALL_WORKSPACES) as session:
            preview = count_expired(session, cutoff)
        typer.echo(
            f"would clear the match keys of {preview.leads} lead(s) and {preview.payloads} "
            f"stored event bod(ies) older than {cutoff:%Y-%m-%d %H:%M} UTC "
            f"(RETENTION_DAYS={settings.retention_days})"
        )
        return
    done = run(Actor.cli())
    typer.echo(
        f"cleared the match keys of {done.leads} lead(s) and {done.payloads} stored event "
        f"bod(ies) older than {done.cutoff:%Y-%m-%d %H:%M} UTC "
        f"(RETENTION_DAYS={done.retention_days})"
    )
    if done.log_emptied is False:
        typer.echo(
            "note: the database's write-ahead log still holds old copies of the cleared rows "
            "(another process kept it busy); it is emptied by the next purge"
        )


def flower(
    port: Annotated[int, typer.Option(help="Port of the Flower UI")] = 5555,
    address: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
) -> None:
    """Run Flower, Celery's monitoring UI (needs the flower extra; FLOWER_BASIC_AUTH).

    Install the package with its `flower` extra (the Docker image has it).
    FLOWER_BASIC_AUTH=user:password makes it ask for a login (it can revoke tasks).
    """
    import importlib.util

    from worker.app import app as celery_app

    basic_auth = get_settings().flower_basic_auth
    if not basic_auth and not is_loopback(address):
        typer.secho(
            f"error: Flower can revoke tasks; set FLOWER_BASIC_AUTH=user:password to listen "
            f"on {address}",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    if importlib.util.find_spec("flower") is None:
        typer.secho(
            "error: flower is not installed: install crm-postback with its `flower` extra",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    argv = ["flower", f"--port={port}", f"--address={address}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    celery_app.start(argv)


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose)
    app.command("erase-lead")(erase_lead)
    app.command("withdraw-consent")(withdraw_consent)
    app.command("purge")(purge)
    app.command("flower")(flower)
