"""Workspaces: made by an instance administrator (the CLI's `postback workspace add`).

A change of the instance itself: `unit_of_work(requires=None)`, a session over every
workspace. Its audit entry is the instance's own (`workspace_id` NULL, seen by instance
administrators), naming the new workspace by its id: the workspace did not exist before it,
so nothing in it was changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from crm_postback.commands.unit_of_work import Actor, unit_of_work
from crm_postback.configuration import workspaces
from models import Workspace


@dataclass(frozen=True)
class AddWorkspace:
    name: str  # a lowercase slug (`workspaces.checked_name`)


def add_workspace(request: AddWorkspace, actor: Actor) -> Workspace:
    """The new workspace (detached, columns loaded); a taken or malformed name is refused
    naming the field `workspace`."""
    with unit_of_work(actor, requires=None) as uow:
        workspace = workspaces.add_workspace(uow.session, request.name)
        uow.audit(
            "workspace.create",
            entity_type="workspace",
            entity_id=workspace.id,
            after={"name": workspace.name},
        )
        return workspace
