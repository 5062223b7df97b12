"""Migration 0011 rebuilds the status indexes as partial ones, CONCURRENTLY and outside the
migration's transaction. An upgrade cut off at any step is finished by running it again, a
role's statement timeout does not stop it, and the downgrade puts the full indexes back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, text

from models.db import build_engine
from models.migrate import alembic_config, current_revision, upgrade

OPEN_POSTBACKS = "ix_postbacks_status_next_attempt_at"
OPEN_TRIGGERS = "ix_triggers_status_received_at"
NOT_DELIVERED = "ix_postbacks_not_delivered_event_set_id"

# CONCURRENTLY and the partial status indexes are PostgreSQL's.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("empty_database", ["postgres"], indirect=True),
]


@pytest.fixture
def at_0010(empty_database: str) -> Iterator[tuple[str, Engine]]:
    upgrade(empty_database, "0010")
    engine = build_engine(empty_database, one_shot=True)
    yield empty_database, engine
    engine.dispose()


def indexes(engine: Engine) -> dict[str, tuple[str, bool]]:
    """{name: (definition, valid)} of the postbacks and triggers indexes."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid IN ('postbacks'::regclass, 'triggers'::regclass)"
            )
        )
        return {name: (definition, valid) for name, definition, valid in rows}


def run_sql(engine: Engine, *statements: str) -> None:
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        for statement in statements:
            connection.execute(text(statement))


def assert_upgraded(engine: Engine) -> None:
    found = indexes(engine)
    assert not [name for name in found if name.endswith("_building")]
    assert "'sending'" in found[OPEN_POSTBACKS][0] and found[OPEN_POSTBACKS][1]
    assert "'waiting_for_lead'" in found[OPEN_TRIGGERS][0] and found[OPEN_TRIGGERS][1]
    assert "(event_set_id, status) WHERE" in found[NOT_DELIVERED][0]
    assert current_revision(engine) == "0011"


PREDICATE = "WHERE status IN ('pending', 'retrying', 'sending')"


def oid(engine: Engine, name: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT '{name}'::regclass::oid")).scalar_one())


@pytest.mark.parametrize("cut_off", ["a failed build", "before the drop", "before the rename"])
def test_an_upgrade_cut_off_is_finished_by_running_it_again(
    at_0010: tuple[str, Engine], cut_off: str
) -> None:
    url, engine = at_0010
    building = f"{OPEN_POSTBACKS}_building"
    create = f"CREATE INDEX {building} ON postbacks (status, next_attempt_at) {PREDICATE}"
    if cut_off == "a failed build":  # PostgreSQL leaves a failed CONCURRENTLY build invalid
        run_sql(
            engine,
            create,
            f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{building}'::regclass",
        )
    elif cut_off == "before the drop":  # the new index built, the old one still there
        run_sql(engine, create)
    else:  # the old index dropped, the new one not yet renamed
        run_sql(engine, create, f"DROP INDEX {OPEN_POSTBACKS}")
    left = oid(engine, building)
    upgrade(url)
    assert_upgraded(engine)
    # Only a complete index left in place of a dropped one is kept: the table is not left
    # without its status index while another is built.
    assert (oid(engine, OPEN_POSTBACKS) == left) == (cut_off == "before the rename")


def test_a_role_statement_timeout_does_not_stop_the_build(at_0010: tuple[str, Engine]) -> None:
    """The build reads every row; the migration's other statements are quick."""
    url, engine = at_0010
    database = engine.url.database
    run_sql(
        engine,
        "INSERT INTO event_sets (id, workspace_id, name, kind, source_id, sealed_token,"
        " lead_event_source, status, created_at, updated_at) VALUES (1, 1, 'acme', 'crm',"
        " 'ES1', 'env:POSTBACK_TOKEN_A', 'crm-postback', 'active', now(), now())",
        "INSERT INTO triggers (event_set_id, workspace_id, lead_ref, trigger_type, occurred_at,"
        " attributes, idempotency_key, status, received_at, attempts) SELECT 1, 1, 'L-' || g,"
        " 'lead.sold', now(), '{}', 'k' || g, 'resolved', now(), 0"
        " FROM generate_series(1, 300000) AS g",
        f"ALTER DATABASE \"{database}\" SET statement_timeout = '50ms'",
    )
    try:
        with pytest.raises(Exception, match="statement timeout"):
            run_sql(engine.execution_options(), "SELECT count(*) FROM triggers t, triggers u")
        upgrade(url)
    finally:
        run_sql(engine, f'ALTER DATABASE "{database}" RESET statement_timeout')
    assert_upgraded(engine)


def test_the_downgrade_puts_the_full_indexes_back(at_0010: tuple[str, Engine]) -> None:
    url, engine = at_0010
    before = indexes(engine)
    upgrade(url)
    command.downgrade(alembic_config(url), "0010")
    after = indexes(engine)
    assert after == before
    assert "WHERE" not in after[OPEN_POSTBACKS][0] and "WHERE" not in after[OPEN_TRIGGERS][0]
    assert current_revision(engine) == "0010"
