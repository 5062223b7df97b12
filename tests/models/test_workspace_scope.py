"""models.workspace_scope, attacked on SQLite and PostgreSQL: in a session scoped to workspace
A, no ORM statement sees or changes a row of workspace B, a Core statement on a workspace
table is refused unless it says it filters itself, and rows of B cannot be written.

Every test runs for every model whose table has `workspace_id` (derived from Base.metadata):
a new workspace table is swept automatically, and fails `test_every_workspace_model_has_a_builder`
until it has a row builder here.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, exists, func, insert, select, text, update
from sqlalchemy.orm import Session, aliased

from models import (
    ApiKey,
    AuditEntry,
    Base,
    DeliveryAttempt,
    EventSet,
    Lead,
    Mapping,
    Postback,
    Role,
    Trigger,
    Workspace,
    WorkspaceMember,
)
from models.bulk import bulk_insert
from models.db import get_engine, session_scope
from models.users import AdminUser
from models.workspace_scope import (
    ALL_WORKSPACES,
    FILTERED_OPTION,
    WorkspaceScopeError,
    workspace_of,
    workspace_tables,
)
from models.workspaces import WorkspaceFiltered

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MARK = NOW + timedelta(days=365)


def _digits(tag: str, length: int) -> str:
    return str(int(hashlib.sha256(tag.encode()).hexdigest(), 16))[:length]


def workspace_models() -> list[type[Any]]:
    """Every mapped model whose table has a workspace_id column."""
    models = [
        mapper.class_
        for mapper in Base.registry.mappers
        if "workspace_id" in mapper.local_table.c and mapper.local_table.name != "workspaces"
    ]
    return sorted(models, key=lambda model: model.__tablename__)


MODELS = workspace_models()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    return str(request.getfixturevalue(name))


# --- one row of every workspace model, per workspace -------------------------------------


@dataclass
class Built:
    """The rows made for one workspace, by table name."""

    workspace_id: int
    ids: dict[str, list[int]] = field(default_factory=dict)

    def first(self, table: str) -> int:
        return self.ids[table][0]


@dataclass(frozen=True)
class Builder:
    make: Callable[[Built, int | None, str], Any]  # (parents, workspace_id, unique tag) -> row
    touched: str  # a column an UPDATE may set to MARK


def _event_set(parents: Built, workspace_id: int | None, tag: str) -> EventSet:
    return EventSet(
        workspace_id=workspace_id,
        name=f"set-{tag}",
        source_id="73" + _digits(tag, 17),
        sealed_token="env:TOKEN",
        created_at=NOW,
        updated_at=NOW,
    )


def _mapping(parents: Built, workspace_id: int | None, tag: str) -> Mapping:
    return Mapping(
        workspace_id=workspace_id,
        event_set_id=parents.first("event_sets"),
        trigger_type="lead.submitted",
        event_name="Lead",
        created_at=NOW,
        updated_at=NOW,
    )


def _lead(parents: Built, workspace_id: int | None, tag: str) -> Lead:
    # The same lead ids in every workspace ("L-0", "L-1"): (workspace, lead_ref) is the key.
    return Lead(
        workspace_id=workspace_id,
        lead_ref="L-" + tag.split("-", 1)[1],
        created_at=NOW,
        updated_at=NOW,
    )


def _trigger(parents: Built, workspace_id: int | None, tag: str) -> Trigger:
    return Trigger(
        workspace_id=workspace_id,
        event_set_id=parents.first("event_sets"),
        lead_ref="L-1001",
        trigger_type="lead.submitted",
        occurred_at=NOW,
        idempotency_key=f"idem-{tag}",
        received_at=NOW,
    )


def _postback(parents: Built, workspace_id: int | None, tag: str) -> Postback:
    return Postback(
        workspace_id=workspace_id,
        trigger_id=parents.first("triggers"),
        event_set_id=parents.first("event_sets"),
        lead_ref="L-1001",
        event_id=f"event-{tag}",
        created_at=NOW,
        updated_at=NOW,
    )


def _attempt(parents: Built, workspace_id: int | None, tag: str) -> DeliveryAttempt:
    return DeliveryAttempt(
        workspace_id=workspace_id,
        postback_id=parents.first("postbacks"),
        attempted_at=NOW,
        outcome="delivered",
    )


def _api_key(parents: Built, workspace_id: int | None, tag: str) -> ApiKey:
    return ApiKey(
        workspace_id=workspace_id,
        name=f"router-{tag}",
        key_prefix="pbk_x",
        key_sha256=hashlib.sha256(tag.encode()).hexdigest(),
        permissions=["triggers:send"],
        created_at=NOW,
    )


def _audit(parents: Built, workspace_id: int | None, tag: str) -> AuditEntry:
    return AuditEntry(
        workspace_id=workspace_id,
        at=NOW,
        actor="system",
        action="event_set.add",
        entity_type="event_set",
        entity_id=parents.first("event_sets"),
        event_set_id=parents.first("event_sets"),
    )


def _member(parents: Built, workspace_id: int | None, tag: str) -> WorkspaceMember:
    return WorkspaceMember(
        workspace_id=workspace_id,
        # One membership per user and workspace: the n-th row is the n-th user's.
        user_id=parents.ids["admin_users"][_USER_OF.get(tag.split("-", 1)[1], 2)],
        role=Role.VIEWER,
        created_at=NOW,
    )


_USER_OF = {"0": 0, "1": 1}

# In the order their foreign keys need.
BUILDERS: dict[str, Builder] = {
    "event_sets": Builder(_event_set, "updated_at"),
    "mappings": Builder(_mapping, "updated_at"),
    "leads": Builder(_lead, "updated_at"),
    "triggers": Builder(_trigger, "received_at"),
    "postbacks": Builder(_postback, "updated_at"),
    "delivery_attempts": Builder(_attempt, "attempted_at"),
    "api_keys": Builder(_api_key, "created_at"),
    "audit_log": Builder(_audit, "at"),
    "workspace_members": Builder(_member, "created_at"),
}


@dataclass
class TwoWorkspaces:
    a: Built
    b: Built


def _populate(session: Session, workspace_id: int, user_ids: list[int], tag: str) -> Built:
    built = Built(workspace_id, {"admin_users": user_ids})
    for table, builder in BUILDERS.items():
        rows = [builder.make(built, workspace_id, f"{tag}-{n}") for n in range(2)]
        session.add_all(rows)
        session.flush()
        built.ids[table] = [row.id for row in rows]
    return built


@pytest.fixture
def two(database: str) -> TwoWorkspaces:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        a, b = Workspace(name="a"), Workspace(name="b")
        users = [AdminUser(username=f"someone-{n}", password_hash="x") for n in range(3)]
        session.add_all([a, b, *users])
        session.flush()
        user_ids = [user.id for user in users]
        built = TwoWorkspaces(
            _populate(session, a.id, user_ids, "a"), _populate(session, b.id, user_ids, "b")
        )
        session.commit()
    return built


def _snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every workspace table, as the database holds it."""
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return {
            model.__tablename__: [
                tuple(row)
                for row in session.execute(
                    select(*model.__table__.c).order_by(model.__table__.c.id),
                    execution_options={FILTERED_OPTION: True},
                )
            ]
            for model in MODELS
        }


def _of(snapshot: dict[str, list[tuple[Any, ...]]], workspace_id: int) -> dict[str, Any]:
    result = {}
    for model in MODELS:
        position = list(model.__table__.c.keys()).index("workspace_id")
        result[model.__tablename__] = [
            row for row in snapshot[model.__tablename__] if row[position] == workspace_id
        ]
    return result


@pytest.fixture
def b_untouched(two: TwoWorkspaces) -> Iterator[TwoWorkspaces]:
    """After the test, every row of B is exactly as it was."""
    before = _of(_snapshot(), two.b.workspace_id)
    yield two
    assert _of(_snapshot(), two.b.workspace_id) == before


by_model = pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__tablename__)


# --- the sweep is complete ---------------------------------------------------------------


def test_every_workspace_model_has_a_builder() -> None:
    assert {model.__tablename__ for model in MODELS} == set(BUILDERS)


def test_every_workspace_table_is_mapped_by_a_filtered_model() -> None:
    assert {model.__tablename__ for model in MODELS} == set(workspace_tables())
    for model in MODELS:
        assert issubclass(model, WorkspaceFiltered), model.__name__


# --- reads ---------------------------------------------------------------------------------


@by_model
def test_select_in_a_scoped_session_sees_only_its_workspace(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    with session_scope(workspace=two.a.workspace_id) as session:
        assert sorted(session.scalars(select(model.id))) == two.a.ids[table]
        assert sorted(row.id for row in session.scalars(select(model))) == two.a.ids[table]
        assert session.scalar(select(func.count()).select_from(model)) == 2
        every = select(model.id).where(model.id.in_(two.a.ids[table] + two.b.ids[table]))
        assert sorted(session.scalars(every)) == two.a.ids[table]


@by_model
def test_get_of_another_workspaces_row_is_none(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    with session_scope(workspace=two.a.workspace_id) as session:
        assert session.get(model, two.b.first(table)) is None
        assert session.get(model, two.a.first(table)) is not None
        assert session.scalars(select(model).filter_by(id=two.b.first(table))).first() is None


@by_model
def test_aliases_subqueries_and_exists_are_filtered(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    with session_scope(workspace=two.a.workspace_id) as session:
        other = aliased(model)
        assert sorted(session.scalars(select(other.id))) == two.a.ids[table]
        inner = select(model.id).where(model.id == two.b.first(table)).scalar_subquery()
        assert session.scalar(select(func.count()).select_from(model).where(model.id == inner)) == 0
        # `exists()` has no ORM entity of its own: the statement is filtered or refused,
        # never answered with B's row.
        for b_exists in (
            exists().where(model.id == two.b.first(table)),
            select(model.id).where(model.id == two.b.first(table)).exists(),
        ):
            with contextlib.suppress(WorkspaceScopeError):
                assert session.scalar(select(b_exists)) is False
        assert session.scalar(select(model.id).where(model.id == two.b.first(table))) is None


@by_model
def test_all_workspaces_sees_every_row(two: TwoWorkspaces, model: type[Any]) -> None:
    table = model.__tablename__
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert sorted(session.scalars(select(model.id))) == sorted(
            two.a.ids[table] + two.b.ids[table]
        )
        assert session.get(model, two.b.first(table)) is not None
        with pytest.raises(WorkspaceScopeError):
            workspace_of(session)


def test_joins_across_workspaces_are_filtered_on_both_sides(b_untouched: TwoWorkspaces) -> None:
    two = b_untouched
    with session_scope(workspace=ALL_WORKSPACES) as session:
        # A postback of A that names a trigger of B (no such row is ever made by the code).
        session.execute(
            update(Postback)
            .where(Postback.id == two.a.ids["postbacks"][1])
            .values(trigger_id=two.b.first("triggers"))
        )
        session.commit()
    try:
        with session_scope(workspace=two.a.workspace_id) as session:
            pairs = session.execute(
                select(Postback.id, Trigger.id).join(Trigger, Postback.trigger_id == Trigger.id)
            ).all()
            assert pairs == [(two.a.first("postbacks"), two.a.first("triggers"))]
            outer = session.execute(
                select(Postback.id, Trigger.id)
                .outerjoin(Trigger, Postback.trigger_id == Trigger.id)
                .order_by(Postback.id)
            ).all()
            assert outer == [
                (two.a.first("postbacks"), two.a.first("triggers")),
                (two.a.ids["postbacks"][1], None),
            ]
            attempts = session.scalars(
                select(DeliveryAttempt.id)
                .join(Postback, DeliveryAttempt.postback_id == Postback.id)
                .join(EventSet, Postback.event_set_id == EventSet.id)
            ).all()
            assert sorted(attempts) == two.a.ids["delivery_attempts"]
    finally:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            session.execute(
                update(Postback)
                .where(Postback.id == two.a.ids["postbacks"][1])
                .values(trigger_id=two.a.first("triggers"))
            )
            session.commit()


def test_a_row_loaded_in_one_workspace_is_not_handed_out_in_another(
    b_untouched: TwoWorkspaces,
) -> None:
    """The identity map is per session, and a session keeps its scope: B's row read under
    ALL_WORKSPACES is not returned by a later scoped session."""
    two = b_untouched
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.get(Lead, two.b.first("leads")) is not None
    with session_scope(workspace=two.a.workspace_id) as session:
        assert session.get(Lead, two.b.first("leads")) is None
        assert session.scalars(select(Lead).where(Lead.lead_ref == "L-1")).all() != []
        assert {lead.workspace_id for lead in session.scalars(select(Lead))} == {two.a.workspace_id}


# --- ORM writes ------------------------------------------------------------------------------


@by_model
def test_orm_update_without_where_changes_only_its_workspace(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    column = getattr(model, BUILDERS[table].touched)
    with session_scope(workspace=two.a.workspace_id) as session:
        result = session.execute(
            update(model).values({column: MARK}).execution_options(synchronize_session=False)
        )
        assert result.rowcount == 2
        targeted = session.execute(
            update(model)
            .where(model.id == two.b.first(table))
            .values({column: MARK})
            .execution_options(synchronize_session=False)
        )
        assert targeted.rowcount == 0
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        marked = session.scalars(select(model.id).where(column == MARK)).all()
        assert sorted(marked) == two.a.ids[table]


@by_model
def test_orm_update_with_fetch_synchronisation_is_filtered(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    column = getattr(model, BUILDERS[table].touched)
    with session_scope(workspace=two.a.workspace_id) as session:
        session.execute(
            update(model).values({column: MARK}).execution_options(synchronize_session="fetch")
        )
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert sorted(session.scalars(select(model.id).where(column == MARK))) == two.a.ids[table]


@by_model
def test_orm_delete_without_where_deletes_only_its_workspace(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    with session_scope(workspace=two.a.workspace_id) as session:
        deleted = session.execute(
            delete(model).execution_options(synchronize_session=False)
        ).rowcount
        assert deleted == 2
        assert (
            session.execute(
                delete(model)
                .where(model.id == two.b.first(table))
                .execution_options(synchronize_session=False)
            ).rowcount
            == 0
        )
        session.commit()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert sorted(session.scalars(select(model.id))) == two.b.ids[table]


# --- new rows --------------------------------------------------------------------------------


def _parents_in(two: TwoWorkspaces, built: Built) -> Built:
    return Built(built.workspace_id, {**built.ids, "admin_users": two.a.ids["admin_users"]})


@by_model
def test_a_new_row_gets_the_sessions_workspace(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    with session_scope(workspace=two.a.workspace_id) as session:
        row = BUILDERS[table].make(_parents_in(two, two.a), None, "a-new")
        session.add(row)
        session.flush()
        assert row.workspace_id == two.a.workspace_id
        session.commit()
        new_id = row.id
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.get(model, new_id).workspace_id == two.a.workspace_id


@by_model
def test_a_new_row_of_another_workspace_cannot_be_flushed(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    with session_scope(workspace=two.a.workspace_id) as session:
        row = BUILDERS[table].make(_parents_in(two, two.b), two.b.workspace_id, "b-new")
        session.add(row)
        with pytest.raises(WorkspaceScopeError):
            session.flush()


@by_model
def test_a_loaded_row_cannot_be_moved_to_another_workspace(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    with session_scope(workspace=two.a.workspace_id) as session:
        row = session.get(model, two.a.first(table))
        row.workspace_id = two.b.workspace_id
        with pytest.raises(WorkspaceScopeError):
            session.flush()


@by_model
def test_bulk_insert_of_rows_of_another_workspace_is_refused(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two = b_untouched
    with session_scope(workspace=two.a.workspace_id) as session:
        rows = [_row_values(model, two, two.b, "b-bulk")]
        with pytest.raises(WorkspaceScopeError):
            bulk_insert(session, model.__table__, rows)
        unnamed = [{k: v for k, v in rows[0].items() if k != "workspace_id"}]
        with pytest.raises(WorkspaceScopeError):
            bulk_insert(session, model.__table__, unnamed)
        mixed = [_row_values(model, two, two.a, "a-bulk"), *rows]
        with pytest.raises(WorkspaceScopeError):
            bulk_insert(session, model.__table__, mixed)


def test_bulk_insert_of_the_sessions_workspace_works(b_untouched: TwoWorkspaces) -> None:
    two = b_untouched
    with session_scope(workspace=two.a.workspace_id) as session:
        rows = [
            {**_row_values(Trigger, two, two.a, f"a-bulk-{n}"), "idempotency_key": f"bulk-{n}"}
            for n in range(60)  # past the array form's threshold on PostgreSQL
        ]
        inserted = bulk_insert(session, Trigger.__table__, rows, returning=[Trigger.id])
        assert len(inserted) == 60
        session.commit()
    with session_scope(workspace=two.a.workspace_id) as session:
        assert session.scalar(select(func.count()).select_from(Trigger)) == 62


def test_bulk_insert_in_an_unscoped_session_is_refused(b_untouched: TwoWorkspaces) -> None:
    two = b_untouched
    with Session(get_engine()) as session, pytest.raises(WorkspaceScopeError):
        bulk_insert(session, Trigger.__table__, [_row_values(Trigger, two, two.a, "a-x")])


def _row_values(model: type[Any], two: TwoWorkspaces, built: Built, tag: str) -> dict[str, Any]:
    """A new row of `model` in `built`'s workspace, as a bulk_insert row (every column)."""
    row = BUILDERS[model.__tablename__].make(_parents_in(two, built), built.workspace_id, tag)
    values = {}
    for column in model.__table__.c:
        if column.key == "id":
            continue
        value = getattr(row, column.key, None)
        if value is None and column.default is not None and column.default.is_scalar:
            value = column.default.arg
        elif value is None and column.default is not None and column.default.is_callable:
            value = NOW if column.key.endswith("_at") else column.default.arg(None)
        values[column.key] = value
    return values


# --- Core statements -------------------------------------------------------------------------


def _core_statements(model: type[Any], two: TwoWorkspaces) -> dict[str, Any]:
    table = model.__table__
    values = _row_values(model, two, two.a, "a-core")
    touched = table.c[BUILDERS[model.__tablename__].touched]
    return {
        "select": select(table.c.id),
        "select-where": select(table.c.id).where(table.c.id == two.b.first(model.__tablename__)),
        "count": select(func.count()).select_from(table),
        "update": update(table).values({touched: MARK}),
        "delete": delete(table).where(table.c.id == two.b.first(model.__tablename__)),
        "insert": insert(table).values(values),
    }


@by_model
def test_unmarked_core_statements_are_refused(b_untouched: TwoWorkspaces, model: type[Any]) -> None:
    """Each statement alone, and with the workspace table only in a join or a subquery."""
    two = b_untouched
    table = model.__table__
    workspaces = Workspace.__table__
    statements = {
        **_core_statements(model, two),
        "join": select(workspaces.c.name).join_from(
            workspaces, table, workspaces.c.id == table.c.workspace_id
        ),
        "subquery": select(workspaces.c.id).where(
            workspaces.c.id.in_(select(table.c.workspace_id).scalar_subquery())
        ),
        # Filtering by workspace is not enough: the statement must say so.
        "filtered-unmarked": select(table.c.id).where(table.c.workspace_id == two.a.workspace_id),
    }
    with session_scope(workspace=two.a.workspace_id) as session:
        for kind, statement in statements.items():
            with pytest.raises(WorkspaceScopeError):
                session.execute(statement)
                pytest.fail(f"{kind} ran")


@by_model
def test_marked_core_statement_that_filters_itself_runs(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__table__
    with session_scope(workspace=two.a.workspace_id) as session:
        ids = session.scalars(
            select(table.c.id).where(table.c.workspace_id == two.a.workspace_id),
            execution_options={FILTERED_OPTION: True},
        ).all()
        assert sorted(ids) == two.a.ids[model.__tablename__]
        marked = (
            select(table.c.id)
            .where(table.c.workspace_id == two.a.workspace_id)
            .execution_options(**{FILTERED_OPTION: True})
        )
        assert sorted(session.scalars(marked)) == two.a.ids[model.__tablename__]


@by_model
def test_the_mark_does_not_lift_the_filter_of_an_orm_statement(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    """The mark is for Core statements that filter themselves; an ORM statement carrying it
    (a copy-paste away) is filtered all the same."""
    two = b_untouched
    with session_scope(workspace=two.a.workspace_id) as session:
        marked = select(model).execution_options(**{FILTERED_OPTION: True})
        rows = session.scalars(marked).all()
        assert {row.workspace_id for row in rows} == {two.a.workspace_id}
        passed = session.scalars(select(model.id), execution_options={FILTERED_OPTION: True})
        assert sorted(passed) == two.a.ids[model.__tablename__]


@by_model
def test_the_mark_does_not_open_an_unscoped_session(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    with Session(get_engine()) as session, pytest.raises(WorkspaceScopeError):
        session.execute(select(model.__table__.c.id), execution_options={FILTERED_OPTION: True})


def test_raw_sql_is_refused_unless_it_says_it_filters(b_untouched: TwoWorkspaces) -> None:
    """Nothing tells which tables a text() reads: in a session of one workspace it runs only
    marked; in an unscoped session never; over every workspace always."""
    two = b_untouched
    raw = text("SELECT lead_ref FROM leads")
    with session_scope(workspace=two.a.workspace_id) as session:
        with pytest.raises(WorkspaceScopeError):
            session.execute(raw)
        mine = text("SELECT id FROM leads WHERE workspace_id = :ws")
        found = session.scalars(
            mine, {"ws": two.a.workspace_id}, execution_options={FILTERED_OPTION: True}
        ).all()
        assert sorted(found) == two.a.ids["leads"]
    with Session(get_engine()) as session, pytest.raises(WorkspaceScopeError):
        session.execute(raw, execution_options={FILTERED_OPTION: True})
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert len(session.execute(raw).all()) == len(two.a.ids["leads"]) + len(two.b.ids["leads"])


def test_core_statement_on_instance_tables_runs_unmarked(b_untouched: TwoWorkspaces) -> None:
    two = b_untouched
    with session_scope(workspace=two.a.workspace_id) as session:
        names = session.scalars(select(Workspace.__table__.c.name)).all()
        assert set(names) >= {"a", "b"}
        assert len(session.scalars(select(AdminUser.__table__.c.username)).all()) == 3


# --- sessions without a scope ---------------------------------------------------------------


@by_model
def test_an_unscoped_session_cannot_touch_a_workspace_table(
    b_untouched: TwoWorkspaces, model: type[Any]
) -> None:
    two, table = b_untouched, model.__tablename__
    with Session(get_engine()) as session:
        for statement in (
            select(model),
            select(model.id),
            update(model).values({BUILDERS[table].touched: MARK}),
            delete(model),
            select(model.__table__.c.id),
        ):
            with pytest.raises(WorkspaceScopeError):
                session.execute(statement)
        with pytest.raises(WorkspaceScopeError):
            session.get(model, two.a.first(table))
        session.add(BUILDERS[table].make(_parents_in(two, two.a), two.a.workspace_id, "a-free"))
        with pytest.raises(WorkspaceScopeError):
            session.flush()


def test_an_unscoped_session_still_reads_instance_tables(b_untouched: TwoWorkspaces) -> None:
    with Session(get_engine()) as session:
        assert len(session.scalars(select(AdminUser.username)).all()) == 3
        assert "a" in session.scalars(select(Workspace.name)).all()


def test_a_scope_is_a_workspace_id_or_all(database: str) -> None:
    for wrong in (0, -1, True, "1", None, 1.0):
        with pytest.raises(TypeError), session_scope(workspace=wrong):  # type: ignore[arg-type]
            pass


def test_workspace_of_names_the_scoped_workspace(b_untouched: TwoWorkspaces) -> None:
    with session_scope(workspace=b_untouched.a.workspace_id) as session:
        assert workspace_of(session) == b_untouched.a.workspace_id
