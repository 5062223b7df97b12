"""Set-based statements, spelled for each backend.

On PostgreSQL, a batch of 1,000 rows is sent as a handful of array parameters with a short,
constant statement text (`= ANY(:ids)`, `INSERT ... SELECT unnest(...)`), so psycopg and the
server can cache and prepare it. A literal `IN (:p1, ... :p1000)` or a 1,000-row VALUES list is
a new text every time, too long for psycopg's parse cache (4 KiB), and costs more CPU to build
and parse than the rows cost to write. SQLite gets the portable forms.

The arrays travel in PostgreSQL's binary format: psycopg's text format quotes and escapes
every element with a regular expression, which for 1,000 JSON documents costs far more Python
per statement than the binary format (docs/performance.md).
"""

from __future__ import annotations

import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from psycopg.types.array import ListBinaryDumper
from psycopg.types.json import set_json_loads
from sqlalchemy import (
    JSON,
    BindParameter,
    ColumnElement,
    Dialect,
    Table,
    Text,
    TypeDecorator,
    any_,
    bindparam,
    cast,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.elements import ColumnClause, KeyedColumnElement
from sqlalchemy.types import TypeEngine

from crm_postback.core import jsontext
from models.workspace_scope import (
    ALL_WORKSPACES,
    FILTERED_OPTION,
    WorkspaceScopeError,
    scope_of,
)

if TYPE_CHECKING:
    import psycopg

ARRAY_FORM_FROM_ROWS = 50
ARRAY_FORM_FROM_VALUES = 50


class BinaryList(list[Any]):
    """A list psycopg dumps as a binary array (see `tune_psycopg_connection`)."""


def tune_psycopg_connection(dbapi_connection: Any, _record: Any = None) -> None:
    """Per connection (so it holds for connections opened before this module was imported):
    BinaryList goes in binary format, and JSON columns are parsed by orjson."""
    dbapi_connection.adapters.register_dumper(BinaryList, ListBinaryDumper)
    set_json_loads(jsontext.loads, dbapi_connection)


class BinaryArray(TypeDecorator[list[Any]]):
    """`ARRAY(item_type)` whose bound values go to psycopg as BinaryList."""

    impl = postgresql.ARRAY
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        # Replaces ARRAY's processor, which would copy the values into a plain list.
        item_type: TypeEngine[Any] = typing.cast(
            "postgresql.ARRAY[Any]", self.impl_instance
        ).item_type
        convert = item_type.dialect_impl(dialect).bind_processor(dialect)

        def process(values: list[Any] | None) -> list[Any] | None:
            if values is None:
                return None
            items = values if convert is None else [convert(value) for value in values]
            if all(item is None for item in items):
                return list(items)  # no element to tell psycopg the array's type
            return BinaryList(items)

        return process


def array_param(values: Sequence[Any], item_type: TypeEngine[Any]) -> BindParameter[Any]:
    """One PostgreSQL array parameter holding `values`, sent in binary format."""
    return bindparam(None, list(values), type_=BinaryArray(item_type))


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


@contextmanager
def planned_for_its_parameters(session: Session) -> Iterator[None]:
    """PostgreSQL: statements run inside are never server-side prepared by psycopg, so each
    is planned for its own parameters, a small cost next to what a bad generic plan costs.

    For lookups on a table that grows from empty: psycopg prepares a statement on its fifth
    run, and PostgreSQL may then keep a generic plan made while the table was tiny (a
    sequential scan) until autovacuum first analyzes it. Seen in the steady benchmark: the
    leads lookup slowed down and latency grew for a minute (docs/performance.md).
    """
    if not is_postgres(session):
        yield
        return
    driver = typing.cast(
        "psycopg.Connection[Any]", session.connection().connection.driver_connection
    )
    previous = driver.prepare_threshold
    driver.prepare_threshold = None
    try:
        yield
    finally:
        driver.prepare_threshold = previous


def matches_any(
    session: Session,
    column: ColumnElement[Any] | QueryableAttribute[Any],
    values: Sequence[Any],
) -> ColumnElement[bool]:
    """`column IN values`; one array parameter on PostgreSQL when there are many."""
    if is_postgres(session) and len(values) >= ARRAY_FORM_FROM_VALUES:
        return column == any_(array_param(values, column.type))
    return column.in_(list(values))


def insert_ignoring_conflicts(session: Session, table: Table) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` for PostgreSQL and SQLite (3.24+)."""
    module = postgresql if is_postgres(session) else sqlite
    return module.insert(table).on_conflict_do_nothing()


# A returned column: `Table.c.x` or a model's attribute (`Lead.id`).
ReturnedColumn = KeyedColumnElement[Any] | QueryableAttribute[Any]

_ROW_INSERTS: dict[tuple[str, Table, bool, tuple[str, ...]], Any] = {}


def _row_insert(
    session: Session, table: Table, ignore_conflicts: bool, returning: tuple[ReturnedColumn, ...]
) -> Any:
    """The statement for the few-rows form, built once: building one costs more Python than
    executing it (most of a one-trigger call's statement time)."""
    key = (
        session.get_bind().dialect.name,
        table,
        ignore_conflicts,
        tuple(column.key for column in returning),
    )
    statement = _ROW_INSERTS.get(key)
    if statement is None:
        statement = insert_ignoring_conflicts(session, table) if ignore_conflicts else insert(table)
        if returning:
            statement = statement.returning(*returning)
        _ROW_INSERTS[key] = statement
    return statement


def _workspace_checked(
    session: Session, table: Table, rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    if "workspace_id" not in table.c:
        return {}
    scope = scope_of(session)
    if scope is ALL_WORKSPACES:
        return {FILTERED_OPTION: True}
    if scope is None or any(row.get("workspace_id") != scope for row in rows):
        raise WorkspaceScopeError(
            f"rows inserted into {table.name} must be of the session's workspace ({scope!r})"
        )
    return {FILTERED_OPTION: True}


def _unnest(column: ColumnClause[Any], values: list[Any]) -> ColumnElement[Any]:
    if isinstance(column.type, JSON):
        # psycopg would read nested lists as a multi-dimensional array: send JSON as text.
        texts = [None if v is None else jsontext.dumps(v) for v in values]
        return cast(func.unnest(array_param(texts, Text())), postgresql.JSONB)
    return func.unnest(array_param(values, column.type))


def bulk_insert(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    returning: Sequence[ReturnedColumn] = (),
    ignore_conflicts: bool = False,
) -> list[Any]:
    """Inserts rows (all with the same keys); returns the `returning` columns of the rows
    actually inserted, in no guaranteed order: match them back by a unique key.

    Rows of a workspace table name their workspace; in a session scoped to one workspace,
    every row must be of that workspace (`models.workspace_scope`)."""
    if not rows:
        return []
    options = _workspace_checked(session, table, rows)
    # Building the array form costs more than it saves for a few rows.
    if not is_postgres(session) or len(rows) < ARRAY_FORM_FROM_ROWS:
        statement = _row_insert(session, table, ignore_conflicts, tuple(returning))
        if returning:
            return list(session.execute(statement, rows, execution_options=options).all())
        session.execute(statement, rows, execution_options=options)
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
        result = session.execute(statement.returning(*returning), execution_options=options)
        return list(result.all())
    session.execute(statement, execution_options=options)
    return []
