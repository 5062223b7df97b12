"""Workspaces and their members: made, listed, found by name (services: no commit)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_postback.core.errors import InputRejected
from models import Workspace

# A name that is safe in a URL, a header, a metric label and a shell command.
WORKSPACE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
NAME_RULE = "1 to 64 lowercase letters, digits, '-' or '_', starting with a letter or digit"


def checked_name(name: str) -> str:
    name = name.strip()
    if not WORKSPACE_NAME.fullmatch(name):
        raise InputRejected.one("workspace", f"a workspace name is {NAME_RULE}")
    return name


def find_workspace(session: Session, name: str) -> Workspace | None:
    if not WORKSPACE_NAME.fullmatch(name):
        return None
    return session.scalar(select(Workspace).where(Workspace.name == name))


def get_workspace(session: Session, name: str) -> Workspace:
    """The workspace of this name; an unknown one is refused without repeating the name."""
    workspace = find_workspace(session, name)
    if workspace is None:
        raise InputRejected.one("workspace", "there is no workspace of this name")
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
