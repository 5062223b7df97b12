"""Set-based statements, spelled for each backend.

On PostgreSQL, a batch of 1,000 rows is sent as a handful of array parameters with a short,
constant statement text (`= ANY(:ids)`, `INSERT ... SELECT unnest(...)`), so psycopg and the
server can cache and prepare it. A literal `IN (:p1, ... :p1000)` or a 1,000-row VALUES list is
a new text every time, too long for psycopg's parse cache (4 KiB), and costs more CPU to build
and parse than the rows cost to write. SQLite gets the portable forms.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause

ARRAY_FORM_FROM_ROWS = 50
ARRAY_FORM_FROM_VALUES = 50


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def matches_any(
    session: Session, column: ColumnElement[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """`column IN values`; one array parameter on PostgreSQL when there are many."""
    if is_postgres(session) and len(values) >= ARRAY_FORM_FROM_VALUES:
        array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return column == any_(array)
    return column.in_(list(values))


def insert_ignoring_conflicts(session: Session, table: Table) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` for PostgreSQL and SQLite (3.24+)."""
    module = postgresql if is_postgres(session) else sqlite
    return module.insert(table).on_conflict_do_nothing()


def _unnest(column: ColumnClause[Any], values: list[Any]) -> ColumnElement[Any]:
    if isinstance(column.type, JSON):
        # psycopg would read nested lists as a multi-dimensional array: send JSON as text.
        texts = [None if v is None else json.dumps(v, separators=(",", ":")) for v in values]
        array = bindparam(None, texts, type_=postgresql.ARRAY(Text()))
        return cast(func.unnest(array), postgresql.JSONB)
    return func.unnest(bindparam(None, values, type_=postgresql.ARRAY(column.type)))


def bulk_insert(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    returning: Sequence[ColumnClause[Any]] = (),
    ignore_conflicts: bool = False,
) -> list[Any]:
    """Inserts rows (all with the same keys); returns the `returning` columns of the rows
    actually inserted, in no guaranteed order: match them back by a unique key."""
    if not rows:
        return []
    # Building the array form costs more than it saves for a few rows.
    if not is_postgres(session) or len(rows) < ARRAY_FORM_FROM_ROWS:
        statement = insert_ignoring_conflicts(session, table) if ignore_conflicts else insert(table)
        if returning:
            return list(session.execute(statement.returning(*returning), rows))
        session.execute(statement, rows)
        return []
    names = list(rows[0])
    columns = {name: [row[name] for row in rows] for name in names}
    # A value shared by every row goes as one scalar; only varying columns become arrays.
    varying = {name for name, values in columns.items() if any(v != values[0] for v in values)}
    if not varying:
        varying = {names[0]}  # at least one set-returning column decides the row count
    unnested = select(
        *(
            _unnest(table.c[name], values)
            if name in varying
            else bindparam(None, values[0], type_=table.c[name].type)
            for name, values in columns.items()
        )
    )
    statement = postgresql.insert(table).from_select(names, unnested)
    if ignore_conflicts:
        statement = statement.on_conflict_do_nothing()
    if returning:
        return list(session.execute(statement.returning(*returning)))
    session.execute(statement)
    return []
