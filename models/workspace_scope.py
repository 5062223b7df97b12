"""Every query of a workspace's tables is filtered by the workspace of its session.

A session is opened for one workspace (`session_scope(workspace=3)`) or, by the worker, the
beat and instance-wide maintenance, for all of them (`ALL_WORKSPACES`). In a session scoped
to one workspace:

* every ORM statement (select, get, update, delete, relationship loads) gets
  `workspace_id = <its workspace>` for each `WorkspaceFiltered` model it touches, added here
  with `with_loader_criteria`, so a query written without it is filtered anyway;
* a new row of a workspace table is given the session's workspace on flush, and a row of
  another workspace cannot be flushed;
* a Core statement on a workspace table (`update(Postback.__table__)`, a bulk INSERT) cannot be
  filtered for it: it is refused unless it says it filters by the workspace itself
  (`execution_options(workspace_filtered=True)`); so is raw SQL (`text(...)`), whose tables
  cannot be told.

A session opened without a scope cannot touch a workspace table at all. So a new query can
forget the filter only by declaring, in code a reviewer sees, that it spans all workspaces.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any, Final

from sqlalchemy import Table, event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.util import find_tables

from models.base import Base
from models.workspaces import WorkspaceFiltered


class AllWorkspaces:
    """The scope of the worker, the beat and instance-wide maintenance."""

    _instance: AllWorkspaces | None = None

    def __new__(cls) -> AllWorkspaces:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ALL_WORKSPACES"


ALL_WORKSPACES: Final = AllWorkspaces()
# A workspace's id, or every workspace.
WorkspaceScope = int | AllWorkspaces

SCOPE_KEY = "workspace_scope"
# Set on a Core statement that filters by workspace_id itself.
FILTERED_OPTION = "workspace_filtered"
# `session.execute(statement, execution_options=FILTERED)`
FILTERED: Final = {FILTERED_OPTION: True}


class WorkspaceScopeError(RuntimeError):
    """A statement would read or change workspace data without the workspace filter."""


@lru_cache(maxsize=1)
def workspace_tables() -> frozenset[str]:
    """The tables whose rows belong to a workspace (they have a `workspace_id` column)."""
    return frozenset(
        table.name
        for table in Base.metadata.tables.values()
        if "workspace_id" in table.c and table.name != "workspaces"
    )


def scope_session(session: Session, scope: WorkspaceScope) -> Session:
    if not isinstance(scope, AllWorkspaces) and (
        not isinstance(scope, int) or isinstance(scope, bool) or scope < 1
    ):
        raise TypeError(f"a workspace scope is a workspace id or ALL_WORKSPACES, not {scope!r}")
    session.info[SCOPE_KEY] = scope
    return session


def scope_of(session: Session) -> WorkspaceScope | None:
    scope: WorkspaceScope | None = session.info.get(SCOPE_KEY)
    return scope


def workspace_of(session: Session) -> int:
    """The one workspace the session is scoped to (raises for ALL_WORKSPACES or none)."""
    scope = scope_of(session)
    if not isinstance(scope, int):
        raise WorkspaceScopeError(f"this needs a session scoped to one workspace, not {scope!r}")
    return scope


def _touched_tables(statement: Any) -> Iterable[str]:
    for table in find_tables(statement, include_crud=True, include_joins=True):
        if isinstance(table, Table):
            yield table.name


def _names_workspace_table(state: ORMExecuteState) -> str | None:
    owned = workspace_tables()
    for name in _touched_tables(state.statement):
        if name in owned:
            return name
    return None


@event.listens_for(Session, "do_orm_execute")
def _filter_by_workspace(state: ORMExecuteState) -> None:
    scope = state.session.info.get(SCOPE_KEY)
    if scope is ALL_WORKSPACES:
        return
    if isinstance(state.statement, TextClause) and not (
        scope is not None and state.execution_options.get(FILTERED_OPTION)
    ):
        # Nothing tells which tables raw SQL reads: refused unless it says it filters.
        raise WorkspaceScopeError(
            "raw SQL in a session of one workspace (or none) cannot be checked: write it "
            "with SQLAlchemy, or filter it and mark it workspace_filtered"
        )
    if scope is None:
        table = _names_workspace_table(state)
        if table is not None:
            raise WorkspaceScopeError(
                f"a statement on {table} in a session without a workspace scope: open it with "
                "session_scope(workspace=...)"
            )
        return
    if state.is_orm_statement:
        if state.is_column_load or state.is_relationship_load:
            return  # the criteria of the statement that loaded the row propagate to these
        state.statement = state.statement.options(
            with_loader_criteria(
                WorkspaceFiltered,
                lambda model: model.workspace_id == scope,
                include_aliases=True,
            )
        )
        return
    # Honoured for Core statements only: an ORM statement is always filtered here, marked
    # or not.
    if state.execution_options.get(FILTERED_OPTION):
        return
    table = _names_workspace_table(state)
    if table is not None:
        raise WorkspaceScopeError(
            f"a Core statement on {table} cannot be filtered for the session's workspace: "
            "filter it by workspace_id and mark it execution_options(workspace_filtered=True), "
            "or write it with the ORM model"
        )


@event.listens_for(Session, "before_flush")
def _new_rows_in_the_workspace(session: Session, _context: Any, _instances: Any) -> None:
    scope = session.info.get(SCOPE_KEY)
    if scope is ALL_WORKSPACES:
        return
    for row in list(session.new) + list(session.dirty):
        if not isinstance(row, WorkspaceFiltered):
            continue
        if scope is None:
            raise WorkspaceScopeError(
                f"a {type(row).__name__} written in a session without a workspace scope"
            )
        if row.workspace_id is None and row in session.new:
            row.workspace_id = scope
        elif row.workspace_id != scope:
            raise WorkspaceScopeError(
                f"a {type(row).__name__} of another workspace written in workspace {scope}'s "
                "session"
            )
