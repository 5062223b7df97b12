"""Migration 0010 drops the workspace keys of triggers, postbacks and attempts (and the event
set key of postbacks) without touching a row; a workspace's delete still reaches them through
their parents, and the downgrade puts the keys back."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from models.db import build_engine
from models.migrate import alembic_config, current_revision, head_revision, upgrade
from tests.models.conftest import insert_all  # type: ignore[import-not-found]

TABLES = ("event_sets", "mappings", "leads", "triggers", "postbacks", "delivery_attempts")


@pytest.fixture
def at_0009(empty_database: str) -> str:
    """A database at 0009 holding, in each of two workspaces, one of every row of a trigger's
    path: event set, mapping, lead, trigger, delivered postback, its attempt."""
    upgrade(empty_database, "0009")
    insert_all(
        build_engine(empty_database, one_shot=True),
        ["INSERT INTO workspaces (id, name, created_at) VALUES (2, 'other', :now)"]
        + [statement for workspace in (1, 2) for statement in _one_of_each(workspace)],
    )
    return empty_database


def _one_of_each(ws: int) -> list[str]:
    return [
        "INSERT INTO event_sets (id, workspace_id, name, kind, source_id, sealed_token,"
        f" lead_event_source, status, created_at, updated_at) VALUES ({ws}, {ws}, 'acme', 'crm',"
        f" 'ES{ws}', 'env:POSTBACK_TOKEN_A', 'crm-postback', 'active', :now, :now)",
        "INSERT INTO mappings (id, workspace_id, event_set_id, trigger_type, event_name,"
        f" conditions, properties, enabled, version, created_at, updated_at) VALUES ({ws}, {ws},"
        f" {ws}, 'lead.sold', 'Purchase', '[]', '{{}}', true, 1, :now, :now)",
        "INSERT INTO leads (id, workspace_id, lead_ref, email_hashes, phone_hashes,"
        f" external_id_hashes, created_at, updated_at) VALUES ({ws}, {ws}, 'L-1001', '[]', '[]',"
        " '[]', :now, :now)",
        "INSERT INTO triggers (id, workspace_id, event_set_id, lead_ref, trigger_type,"
        " occurred_at, attributes, idempotency_key, status, attempts, received_at) VALUES"
        f" ({ws}, {ws}, {ws}, 'L-1001', 'lead.sold', :now, '{{}}', 'k1', 'resolved', 1, :now)",
        "INSERT INTO postbacks (id, workspace_id, trigger_id, event_set_id, lead_ref, mapping_id,"
        " event_name, event_id, status, attempts, replays, created_at, updated_at) VALUES"
        f" ({ws}, {ws}, {ws}, {ws}, 'L-1001', {ws}, 'Purchase', 'e1', 'delivered', 1, 0, :now,"
        " :now)",
        "INSERT INTO delivery_attempts (id, workspace_id, postback_id, attempted_at, outcome,"
        f" batch_size) VALUES ({ws}, {ws}, {ws}, :now, 'delivered', 1)",
    ]


def _counts(engine: Engine, workspace: int) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE workspace_id = :ws"), {"ws": workspace}
            ).scalar_one()
            for table in TABLES
        }


def _keys_to(engine: Engine, table: str) -> set[str]:
    return {key["referred_table"] for key in inspect(engine).get_foreign_keys(table)}


ONE_EACH = dict.fromkeys(TABLES, 1)


def test_the_keys_go_and_every_row_stays(at_0009: str) -> None:
    engine = build_engine(at_0009, one_shot=True)
    upgrade(at_0009)
    assert current_revision(engine) == head_revision()
    # SQLite rebuilt the three tables; a cascade from dropping the old ones would show here.
    assert _counts(engine, 1) == _counts(engine, 2) == ONE_EACH
    assert _keys_to(engine, "triggers") == {"event_sets"}
    assert _keys_to(engine, "postbacks") == {"triggers", "mappings"}
    assert _keys_to(engine, "delivery_attempts") == {"postbacks"}


def test_deleting_a_workspace_still_deletes_its_triggers_postbacks_and_attempts(
    at_0009: str,
) -> None:
    engine = build_engine(at_0009, one_shot=True)
    upgrade(at_0009)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM workspaces WHERE id = 2"))
    assert _counts(engine, 2) == dict.fromkeys(TABLES, 0)
    assert _counts(engine, 1) == ONE_EACH


def test_deleting_an_event_set_deletes_what_hangs_from_it(at_0009: str) -> None:
    """Postbacks lost their own key to the event set: they go with its triggers."""
    engine = build_engine(at_0009, one_shot=True)
    upgrade(at_0009)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM event_sets WHERE id = 2"))
    assert _counts(engine, 2) == {**dict.fromkeys(TABLES, 0), "leads": 1}
    assert _counts(engine, 1) == ONE_EACH


def test_downgrade_puts_the_keys_back_and_keeps_the_rows(at_0009: str) -> None:
    engine = build_engine(at_0009, one_shot=True)
    upgrade(at_0009)
    command.downgrade(alembic_config(at_0009), "0009")
    assert current_revision(engine) == "0009"
    assert _counts(engine, 1) == _counts(engine, 2) == ONE_EACH
    assert _keys_to(engine, "triggers") == {"event_sets", "workspaces"}
    assert _keys_to(engine, "postbacks") == {"triggers", "mappings", "event_sets", "workspaces"}
    assert _keys_to(engine, "delivery_attempts") == {"postbacks", "workspaces"}
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM workspaces WHERE id = 2"))
    assert _counts(engine, 2) == dict.fromkeys(TABLES, 0)
    upgrade(at_0009)
    assert _counts(engine, 1) == ONE_EACH
