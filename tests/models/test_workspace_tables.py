"""Every workspace-owned table has workspace_id, NOT NULL, with an index that serves the
workspace filter, in the schema the migrations built (reflected, on SQLite and PostgreSQL), and
every model of such a table is filtered by models.workspace_scope.

The tables are derived from the database itself: a new table is workspace-owned unless it is
added to INSTANCE_TABLES below, with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, inspect

from models import Base
from models.db import build_engine
from models.workspace_scope import workspace_tables
from models.workspaces import WorkspaceFiltered, WorkspaceOwned, WorkspaceOwnedThroughParent

# Tables of the instance, not of one workspace.
INSTANCE_TABLES = {
    "workspaces": "the workspaces themselves",
    "admin_users": "a person may be a member of several workspaces (workspace_members)",
    "admin_sessions": "a logged-in browser of an admin user",
    "admin_tokens": "an admin user's personal API tokens; the role comes from the membership",
    "alembic_version": "the migration bookkeeping",
}
# NULL is an entry of the instance itself (a workspace made, an admin user added).
NULLABLE = {"audit_log"}
# Attempts are read by postback; one index serves that and the filter (models/postbacks.py).
NOT_LEADING = {"delivery_attempts": ["postback_id", "workspace_id"]}


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    name = "sqlite_db" if request.param == "sqlite" else "postgres_url"
    engine = build_engine(str(request.getfixturevalue(name)), one_shot=True)
    yield engine
    engine.dispose()


def _workspace_owned(engine: Engine) -> list[str]:
    return sorted(set(inspect(engine).get_table_names()) - set(INSTANCE_TABLES))


def _indexes(engine: Engine, table: str) -> list[list[str]]:
    """The column lists of every index of the table, unique constraints included."""
    inspector = inspect(engine)
    found = [list(index["column_names"]) for index in inspector.get_indexes(table)]
    found += [list(unique["column_names"]) for unique in inspector.get_unique_constraints(table)]
    return found


def test_the_migrated_schema_has_every_table_the_models_declare(engine: Engine) -> None:
    reflected = set(inspect(engine).get_table_names())
    assert reflected == set(Base.metadata.tables) | {"alembic_version"}


def test_the_instance_allow_list_names_only_tables_that_exist(engine: Engine) -> None:
    assert set(INSTANCE_TABLES) <= set(inspect(engine).get_table_names())


def test_workspace_owned_tables_are_the_ones_the_scope_filters(engine: Engine) -> None:
    assert set(_workspace_owned(engine)) == set(workspace_tables())
    assert {"event_sets", "mappings", "leads", "triggers", "postbacks", "delivery_attempts"} <= (
        set(_workspace_owned(engine))
    )
    assert {"api_keys", "audit_log", "workspace_members"} <= set(_workspace_owned(engine))


def test_every_workspace_owned_table_has_workspace_id_not_null(engine: Engine) -> None:
    inspector = inspect(engine)
    for table in _workspace_owned(engine):
        columns = {column["name"]: column for column in inspector.get_columns(table)}
        assert "workspace_id" in columns, table
        assert columns["workspace_id"]["nullable"] is (table in NULLABLE), table
        # No default: a new row must name its workspace (the migration's default only moved
        # the rows of before).
        assert columns["workspace_id"].get("default") is None, table


def test_every_workspace_owned_table_is_deleted_with_its_workspace(engine: Engine) -> None:
    """Each table references its workspace with ON DELETE CASCADE, or (the hot tables, which
    skip that key's check: models.workspaces.WorkspaceOwnedThroughParent) cascades from a
    parent that is deleted with it: a trigger from its event set, a postback from its trigger,
    an attempt from its postback."""
    inspector = inspect(engine)
    keys = {
        table: [
            key
            for key in inspector.get_foreign_keys(table)
            if (key.get("options") or {}).get("ondelete", "").upper() == "CASCADE"
        ]
        for table in _workspace_owned(engine)
    }
    through_parent = {
        mapper.local_table.name
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, WorkspaceOwnedThroughParent)
    }
    assert {"triggers", "postbacks", "delivery_attempts"} <= through_parent

    def reaches_workspace(table: str, seen: frozenset[str] = frozenset()) -> bool:
        for key in keys.get(table, []):
            if key["referred_table"] == "workspaces":
                return key["constrained_columns"] == ["workspace_id"]
            if key["referred_table"] not in seen and reaches_workspace(
                key["referred_table"], seen | {table}
            ):
                return True
        return False

    for table in _workspace_owned(engine):
        direct = [key for key in keys[table] if key["referred_table"] == "workspaces"]
        if table in NULLABLE:
            assert inspector.get_foreign_keys(table) == [], (
                f"{table}: the audit trail outlives what it describes"
            )
            continue
        if table in through_parent:
            assert direct == [], f"{table}: its workspace key is checked on every insert"
            assert reaches_workspace(table), f"{table}: nothing deletes it with its workspace"
            continue
        assert len(direct) == 1, table
        assert direct[0]["constrained_columns"] == ["workspace_id"], table
        assert direct[0]["referred_columns"] == ["id"], table


def test_every_workspace_owned_table_has_an_index_for_the_filter(engine: Engine) -> None:
    for table in _workspace_owned(engine):
        indexes = _indexes(engine, table)
        if table in NOT_LEADING:
            assert NOT_LEADING[table] in indexes, (table, indexes)
            continue
        leading = [columns for columns in indexes if columns[0] == "workspace_id"]
        assert leading, f"{table} has no index led by workspace_id: {indexes}"


def test_lookups_by_name_are_unique_per_workspace(engine: Engine) -> None:
    """Two workspaces may use the same names and lead ids; nothing is unique across them."""
    expected = {
        "event_sets": [["workspace_id", "name"], ["workspace_id", "kind", "source_id"]],
        "leads": [["workspace_id", "lead_ref"]],
        "workspace_members": [["workspace_id", "user_id"]],
    }
    inspector = inspect(engine)
    for table, uniques in expected.items():
        reflected = [list(u["column_names"]) for u in inspector.get_unique_constraints(table)]
        reflected += [
            list(index["column_names"])
            for index in inspector.get_indexes(table)
            if index.get("unique")
        ]
        for columns in uniques:
            assert columns in reflected, (table, reflected)
        for columns in reflected:
            assert columns[0] == "workspace_id" or table == "workspace_members", (table, columns)


def _models_by_table() -> dict[str, type[Any]]:
    return {mapper.local_table.name: mapper.class_ for mapper in Base.registry.mappers}


def test_every_model_of_a_workspace_table_is_filtered() -> None:
    models = _models_by_table()
    for table in workspace_tables():
        assert table in models, f"{table} has no model: nothing would filter it"
        model = models[table]
        assert issubclass(model, WorkspaceFiltered), model.__name__
        if table not in NULLABLE:
            assert issubclass(model, WorkspaceOwned), model.__name__


def test_no_instance_model_carries_a_workspace() -> None:
    for table, model in _models_by_table().items():
        if table in INSTANCE_TABLES:
            assert not issubclass(model, WorkspaceFiltered), model.__name__
            assert table == "workspaces" or "workspace_id" not in model.__table__.c, table
