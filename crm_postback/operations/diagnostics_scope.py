"""The workspace condition of the diagnostics' Core statements (run with FILTERED)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table
from sqlalchemy.orm import Session

from models.workspace_scope import scope_of


def in_workspace(session: Session, *tables: Table) -> list[ColumnElement[bool]]:
    """The conditions keeping each table to the session's workspace (none in a session over
    every workspace). The event set's id already does, as an event set is one workspace's;
    the condition says so where the workspace filter checks it."""
    scope = scope_of(session)
    if not isinstance(scope, int):
        return []
    return [table.c.workspace_id == scope for table in tables]
