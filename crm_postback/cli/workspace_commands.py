"""`postback workspace add/list`: one workspace per advertiser or client."""

from __future__ import annotations

from typing import Annotated

import typer

from crm_postback.cli.output import refused_input_exits

workspace_app = typer.Typer(
    no_args_is_help=True,
    help="Workspaces: each advertiser's event sets, mappings, leads, keys and people, apart.",
)


@workspace_app.command("add")
def workspace_add(
    name: Annotated[
        str,
        typer.Argument(
            help="1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        ),
    ],
) -> None:
    """Make a workspace; then name it with --workspace on the other commands."""
    from crm_postback.commands.manage_workspaces import AddWorkspace, add_workspace
    from crm_postback.commands.unit_of_work import Actor

    with refused_input_exits():
        workspace = add_workspace(AddWorkspace(name), Actor.cli())
    typer.echo(f"workspace {workspace.id} {workspace.name!r}")


@workspace_app.command("list")
def workspace_list() -> None:
    """Every workspace with its counts of event sets, API keys (not revoked) and members."""
    from crm_postback.configuration.workspaces import summarize_workspaces
    from models.db import session_scope
    from models.workspace_scope import ALL_WORKSPACES

    with session_scope(workspace=ALL_WORKSPACES) as session:
        summaries = summarize_workspaces(session)
    typer.echo(f"{'id':>4}  {'name':<24} {'event sets':>10} {'api keys':>9} {'members':>8}")
    for w in summaries:
        typer.echo(f"{w.id:>4}  {w.name:<24} {w.event_sets:>10} {w.api_keys:>9} {w.members:>8}")
