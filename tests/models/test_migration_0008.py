"""Migration 0008 adds the match-quality columns to an install of before without touching
its rows, makes postbacks unique by (event set, event name, event id), and goes back."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import Engine, text

from models.db import build_engine
from models.migrate import alembic_config, current_revision, head_revision, upgrade
from tests.models.conftest import NOW, insert_all  # type: ignore[import-not-found]

INSERT_POSTBACK = (
    "INSERT INTO postbacks (id, workspace_id, trigger_id, event_set_id, lead_ref, event_name,"
    " event_id, status, attempts, replays, created_at, updated_at) VALUES (:id, 1, 1, 1,"
    " 'L-1001', :name, :event_id, :status, 0, 0, :now, :now)"
)


@pytest.fixture
def at_0007(empty_database: str) -> str:
    """A database at 0007 holding one event set, lead, trigger, delivered postback, key."""
    upgrade(empty_database, "0007")
    _install_of_0007(build_engine(empty_database, one_shot=True))
    return empty_database


def _install_of_0007(engine: Engine) -> None:
    statements = [
        "INSERT INTO event_sets (id, workspace_id, name, kind, source_id, sealed_token,"
        " lead_event_source, status, created_at, updated_at) VALUES (1, 1, 'acme', 'crm', 'ES1',"
        " 'env:POSTBACK_TOKEN_A', 'crm-postback', 'active', :now, :now)",
        "INSERT INTO leads (id, workspace_id, lead_ref, email_hashes, phone_hashes,"
        " external_id_hashes, created_at, updated_at) VALUES (1, 1, 'L-1001', '[]', '[]', '[]',"
        " :now, :now)",
        "INSERT INTO triggers (id, workspace_id, event_set_id, lead_ref, trigger_type,"
        " occurred_at, attributes, idempotency_key, status, attempts, received_at) VALUES"
        " (1, 1, 1, 'L-1001', 'lead.sold', :now, '{}', 'k1', 'resolved', 1, :now)",
        "INSERT INTO postbacks (id, workspace_id, trigger_id, event_set_id, lead_ref, event_name,"
        " event_id, status, attempts, replays, created_at, updated_at) VALUES (1, 1, 1, 1,"
        " 'L-1001', 'Purchase', 'e1', 'delivered', 1, 0, :now, :now)",
        "INSERT INTO api_keys (id, workspace_id, name, key_prefix, key_sha256, created_at,"
        " permissions) VALUES (1, 1, 'router', 'pbk_abcdefgh', :sha, :now, '[]')",
    ]
    insert_all(engine, statements)


def _row(engine: Engine, sql: str) -> tuple[object, ...]:
    with engine.connect() as connection:
        return tuple(connection.execute(text(sql)).one())


def test_rows_of_before_keep_their_values_and_get_the_defaults(at_0007: str) -> None:
    engine = build_engine(at_0007, one_shot=True)
    upgrade(at_0007)
    assert current_revision(engine) == head_revision()
    assert _row(engine, "SELECT limited_data_use, max_event_age_days FROM event_sets") == (
        False,
        None,
    )
    assert _row(engine, "SELECT strict FROM api_keys") == (False,)
    assert _row(
        engine,
        "SELECT first_name_hash, zip_code_hash, locale, page_url, limited_data_use,"
        " consent_withdrawn_at FROM leads",
    ) == (None, None, None, None, None, None)
    assert _row(engine, "SELECT event_id, limited_data_use, dropped_keys FROM triggers") == (
        None,
        None,
        None,
    )
    assert _row(engine, "SELECT event_id, status, match_key_mask FROM postbacks") == (
        "e1",
        "delivered",
        None,
    )


def test_one_event_id_serves_events_of_different_names_only(at_0007: str) -> None:
    """TikTok tells events apart by name and id: a caller's Pixel event id may go with Lead
    and with Purchase, but one name and id twice in one event set is refused."""
    engine = build_engine(at_0007, one_shot=True)
    upgrade(at_0007)
    with engine.begin() as connection:
        connection.execute(
            text(INSERT_POSTBACK),
            {"id": 2, "name": "Lead", "event_id": "e1", "status": "consent_withdrawn", "now": NOW},
        )
    with pytest.raises(Exception, match=r"(?i)unique"), engine.begin() as connection:
        connection.execute(
            text(INSERT_POSTBACK),
            {"id": 3, "name": "Purchase", "event_id": "e1", "status": "pending", "now": NOW},
        )
    assert _row(engine, "SELECT count(*) FROM postbacks WHERE event_id = 'e1'") == (2,)


def test_downgrade_keeps_the_rows_and_upgrade_comes_back(at_0007: str) -> None:
    engine = build_engine(at_0007, one_shot=True)
    upgrade(at_0007)
    command.downgrade(alembic_config(at_0007), "0007")
    assert current_revision(engine) == "0007"
    assert _row(engine, "SELECT event_id, status FROM postbacks") == ("e1", "delivered")
    assert _row(engine, "SELECT lead_ref FROM leads") == ("L-1001",)
    upgrade(at_0007)
    assert current_revision(engine) == head_revision()
