"""Migration 0007 moves an install of before into the workspace "default", and back."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Engine, text

from models.db import build_engine
from models.migrate import alembic_config, current_revision, head_revision, upgrade
from tests.models.conftest import NOW, insert_all  # type: ignore[import-not-found]

WORKSPACE_TABLES = (
    "event_sets",
    "mappings",
    "leads",
    "triggers",
    "postbacks",
    "delivery_attempts",
    "api_keys",
    "audit_log",
)


@pytest.fixture
def at_0006(empty_database: str) -> str:
    """An empty database migrated to 0006, the last revision without workspaces."""
    upgrade(empty_database, "0006")
    return empty_database


def _old_install(engine: Engine) -> None:
    """One of everything, as version 0006 stored it."""
    statements = [
        "INSERT INTO event_sets (id, name, kind, source_id, sealed_token, lead_event_source,"
        " status, created_at, updated_at) VALUES (1, 'acme', 'crm', 'ES1', 'env:POSTBACK_TOKEN_A',"
        " 'crm-postback', 'active', :now, :now)",
        "INSERT INTO mappings (id, event_set_id, trigger_type, event_name, conditions, properties,"
        " enabled, version, created_at, updated_at) VALUES (1, 1, 'lead.sold', 'Purchase', '[]',"
        " '{}', true, 1, :now, :now)",
        "INSERT INTO leads (id, lead_ref, email_hashes, phone_hashes, external_id_hashes,"
        " created_at, updated_at) VALUES (1, 'L-1001', '[]', '[]', '[]', :now, :now)",
        "INSERT INTO triggers (id, event_set_id, lead_ref, trigger_type, occurred_at, attributes,"
        " idempotency_key, status, attempts, received_at) VALUES (1, 1, 'L-1001', 'lead.sold',"
        " :now, '{}', 'k1', 'resolved', 1, :now)",
        "INSERT INTO postbacks (id, trigger_id, event_set_id, lead_ref, event_id, status,"
        " attempts, replays, created_at, updated_at) VALUES (1, 1, 1, 'L-1001', 'e1',"
        " 'delivered', 1, 0, :now, :now)",
        "INSERT INTO delivery_attempts (id, postback_id, attempted_at, outcome, batch_size)"
        " VALUES (1, 1, :now, 'delivered', 1)",
        "INSERT INTO api_keys (id, name, key_prefix, key_sha256, created_at) VALUES"
        " (1, 'router', 'pbk_abcdefgh', :sha, :now)",
        "INSERT INTO admin_users (id, username, password_hash, source, active, failed_logins,"
        " created_at) VALUES (1, 'boot', 'x', 'env', true, 0, :now)",
        "INSERT INTO admin_users (id, username, password_hash, source, active, failed_logins,"
        " created_at) VALUES (2, 'ops', 'x', 'cli', true, 0, :now)",
        "INSERT INTO audit_log (id, at, actor, action, entity_type) VALUES"
        " (1, :now, 'cli:ops', 'event_set.create', 'event_set')",
    ]
    insert_all(engine, statements)


def _scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as connection:
        return connection.execute(text(sql)).scalar_one()


def test_everything_of_before_lands_in_the_default_workspace(at_0006: str) -> None:
    engine = build_engine(at_0006, one_shot=True)
    _old_install(engine)
    upgrade(at_0006)
    assert current_revision(engine) == head_revision()

    assert _scalar(engine, "SELECT count(*) FROM workspaces") == 1
    assert _scalar(engine, "SELECT name FROM workspaces WHERE id = 1") == "default"
    for table in WORKSPACE_TABLES:
        assert _scalar(engine, f"SELECT count(*) FROM {table}") == 1, table
        assert _scalar(engine, f"SELECT count(*) FROM {table} WHERE workspace_id = 1") == 1, table
    # Keys of before could do everything; they still can.
    permissions = _scalar(engine, "SELECT permissions FROM api_keys WHERE id = 1")
    assert "postbacks:read" in str(permissions) and "triggers:send" in str(permissions)
    # Everyone could do everything: both users own the default workspace; the bootstrapped
    # one administers the instance.
    with engine.connect() as connection:
        members = connection.execute(
            text("SELECT user_id, role FROM workspace_members ORDER BY user_id")
        ).all()
        admins = connection.execute(
            text("SELECT id FROM admin_users WHERE instance_admin ORDER BY id")
        ).all()
    assert [tuple(row) for row in members] == [(1, "owner"), (2, "owner")]
    assert [row[0] for row in admins] == [1]
    # The next workspace gets an id of its own (PostgreSQL's sequence is past 1).
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO workspaces (name, created_at) VALUES ('b', :now)"), {"now": NOW}
        )
    assert _scalar(engine, "SELECT id FROM workspaces WHERE name = 'b'") == 2


def test_a_new_row_must_name_its_workspace(at_0006: str) -> None:
    """The server default only moved the rows of before: an INSERT that forgets the
    workspace fails instead of landing in "default"."""
    engine = build_engine(at_0006, one_shot=True)
    upgrade(at_0006)
    with pytest.raises(Exception, match=r"(?i)not.null|null value"), engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO leads (lead_ref, email_hashes, phone_hashes, external_id_hashes,"
                " created_at, updated_at) VALUES ('L-2', '[]', '[]', '[]', :now, :now)"
            ),
            {"now": NOW},
        )


def test_the_same_lead_id_in_two_workspaces_is_two_leads(at_0006: str) -> None:
    engine = build_engine(at_0006, one_shot=True)
    upgrade(at_0006)
    insert_lead = (
        "INSERT INTO leads (workspace_id, lead_ref, email_hashes, phone_hashes,"
        " external_id_hashes, created_at, updated_at) VALUES (:ws, 'L-1001', '[]', '[]', '[]',"
        " :now, :now)"
    )
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO workspaces (name, created_at) VALUES ('b', :now)"), {"now": NOW}
        )
        connection.execute(text(insert_lead), {"ws": 1, "now": NOW})
        connection.execute(text(insert_lead), {"ws": 2, "now": NOW})
    assert _scalar(engine, "SELECT count(*) FROM leads WHERE lead_ref = 'L-1001'") == 2
    with pytest.raises(Exception, match=r"(?i)unique"), engine.begin() as connection:
        connection.execute(text(insert_lead), {"ws": 2, "now": NOW})


def test_downgrade_keeps_a_single_workspace_install_and_refuses_a_second_workspace(
    at_0006: str,
) -> None:
    engine = build_engine(at_0006, one_shot=True)
    _old_install(engine)
    upgrade(at_0006)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO workspaces (name, created_at) VALUES ('b', :now)"), {"now": NOW}
        )
    with pytest.raises(RuntimeError, match="besides the default"):
        command.downgrade(alembic_config(at_0006), "0006")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM workspaces WHERE name = 'b'"))
    command.downgrade(alembic_config(at_0006), "0006")
    assert current_revision(engine) == "0006"
    for table in WORKSPACE_TABLES:
        assert _scalar(engine, f"SELECT count(*) FROM {table}") == 1, table
    upgrade(at_0006)
    assert _scalar(engine, "SELECT count(*) FROM workspace_members") == 2
