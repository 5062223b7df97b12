"""Workspaces and their members: made, listed, found by name (services: no commit)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from crm_postback.core.errors import InputRejected
from models import ApiKey, EventSet, Workspace, WorkspaceMember

# A name that is safe in a URL, a header, a metric label and a shell command.
WORKSPACE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
NAME_RULE = "1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
# The metrics' `workspace` label of every workspace beyond METRICS_MAX_WORKSPACES: a workspace
# of this name would be indistinguishable from them.
RESERVED_NAMES = frozenset({"other"})

NO_SUCH_WORKSPACE = "there is no workspace of this name"


def checked_name(name: str) -> str:
    name = name.strip()
    if not WORKSPACE_NAME.fullmatch(name):
        raise InputRejected.one("workspace", f"a workspace name is {NAME_RULE}")
    if name in RESERVED_NAMES:
        raise InputRejected.one(
            "workspace", "this name is reserved: " + ", ".join(sorted(RESERVED_NAMES))
        )
    return name


def find_workspace(session: Session, name: str) -> Workspace | None:
    if not WORKSPACE_NAME.fullmatch(name):
        return None
    return session.scalar(select(Workspace).where(Workspace.name == name))


def get_workspace(session: Session, name: str) -> Workspace:
    """The workspace of this name; an unknown one is refused without repeating the name."""
    workspace = find_workspace(session, name)
    if workspace is None:
        raise InputRejected.one("workspace", NO_SUCH_WORKSPACE)
    return workspace


def add_workspace(session: Session, name: str) -> Workspace:
    name = checked_name(name)
    if find_workspace(session, name) is not None:
        raise InputRejected.one("workspace", "a workspace of this name exists")
    workspace = Workspace(name=name)
    session.add(workspace)
    session.flush()
    return workspace


def list_workspaces(session: Session) -> list[Workspace]:
    return list(session.scalars(select(Workspace).order_by(Workspace.name)))


@dataclass(frozen=True)
class WorkspaceSummary:
    id: int
    name: str
    created_at: datetime
    event_sets: int
    api_keys: int  # not revoked
    members: int  # admin users with a role in it (instance admins are in every one)


def summarize_workspaces(session: Session) -> list[WorkspaceSummary]:
    """Every workspace with its counts (a session over every workspace: the instance's view)."""

    def counts(query: Select[Any]) -> dict[int, int]:
        return {int(ws): int(n) for ws, n in session.execute(query) if ws is not None}

    def per_workspace(column: Any) -> Select[Any]:
        return select(column, func.count()).group_by(column)

    event_sets = counts(per_workspace(EventSet.workspace_id))
    api_keys = counts(per_workspace(ApiKey.workspace_id).where(ApiKey.revoked_at.is_(None)))
    members = counts(per_workspace(WorkspaceMember.workspace_id))
    return [
        WorkspaceSummary(
            w.id,
            w.name,
            w.created_at,
            event_sets.get(w.id, 0),
            api_keys.get(w.id, 0),
            members.get(w.id, 0),
        )
        for w in list_workspaces(session)
    ]
