"""`--workspace NAME`: the workspace a CLI command acts in (default: the default workspace).

Every command that reads or changes a workspace's data takes `workspace: WorkspaceOption =
DEFAULT_WORKSPACE_NAME` and resolves it with `workspace_id(workspace)` (reads: open
`session_scope(workspace=<id>)`) or `cli_actor(workspace)` (commands: `Actor.cli(<id>)`, the
instance administrator and operator acting in that workspace). A name that is no
workspace's is refused with exit status 2, without repeating it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from crm_postback.cli.output import refused_input_exits

if TYPE_CHECKING:
    from crm_postback.commands.unit_of_work import Actor

WorkspaceOption = Annotated[
    str,
    typer.Option(
        "--workspace",
        "-w",
        metavar="NAME",
        help="The workspace to act in (`postback workspace list`); default: default",
    ),
]


def workspace_id(name: str) -> int:
    """The id of the workspace named; an unknown name exits with status 2."""
    from crm_postback.configuration.workspaces import get_workspace
    from models.db import session_scope
    from models.workspace_scope import ALL_WORKSPACES

    with session_scope(workspace=ALL_WORKSPACES) as session, refused_input_exits():
        return get_workspace(session, name).id


def cli_actor(name: str) -> Actor:
    """Whoever runs the CLI, acting in the workspace named."""
    from crm_postback.commands.unit_of_work import Actor

    return Actor.cli(workspace_id(name))
