"""The Alembic history builds exactly the schema the models declare, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from models import Base
from models.db import build_engine
from models.migrate import current_revision, head_revision, upgrade


def _drift(url: str) -> list[object]:
    engine = build_engine(url, one_shot=True)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_sqlite_schema_matches_models(sqlite_db: str) -> None:
    assert _drift(sqlite_db) == []
    assert current_revision(build_engine(sqlite_db)) == head_revision()


@pytest.mark.integration
def test_postgres_schema_matches_models(postgres_url: str) -> None:
    assert _drift(postgres_url) == []


def test_upgrade_is_idempotent(sqlite_db: str) -> None:
    upgrade(sqlite_db)
    assert current_revision(build_engine(sqlite_db)) == head_revision()


def test_sqlite_downgrade_of_0006_keeps_admin_tokens_and_sessions(sqlite_db: str) -> None:
    """Dropping failed_logins_since rebuilt admin_users on SQLite (batch recreate), and with
    foreign_keys=ON dropping the old table cascaded to every token and session."""
    from alembic import command
    from sqlalchemy import text

    from models.migrate import alembic_config

    engine = build_engine(sqlite_db, one_shot=True)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO admin_users (id, username, password_hash, source, active,"
                " failed_logins, created_at) VALUES (7, 'ops', 'x', 'cli', 1, 0, :now)"
            ),
            {"now": "2024-01-01 00:00:00.000000"},
        )
        connection.execute(
            text(
                "INSERT INTO admin_tokens (user_id, label, token_prefix, token_sha256,"
                " created_at) VALUES (7, 'ci', 'pb_', :sha, :now)"
            ),
            {"sha": "a" * 64, "now": "2024-01-01 00:00:00.000000"},
        )
        connection.execute(
            text(
                "INSERT INTO admin_sessions (user_id, session_sha256, csrf_token, created_at,"
                " last_seen_at, expires_at) VALUES (7, :sha, 'c', :now, :now, :now)"
            ),
            {"sha": "b" * 64, "now": "2024-01-01 00:00:00.000000"},
        )

    def counts() -> tuple[int, int, int]:
        with engine.connect() as connection:
            return tuple(  # type: ignore[return-value]
                connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("admin_users", "admin_tokens", "admin_sessions")
            )

    command.downgrade(alembic_config(sqlite_db), "0005")
    assert current_revision(engine) == "0005"
    assert counts() == (1, 1, 1)
    with engine.connect() as connection:
        columns = {row[1] for row in connection.exec_driver_sql("PRAGMA table_info(admin_users)")}
    assert "failed_logins_since" not in columns

    upgrade(sqlite_db)
    assert current_revision(engine) == head_revision()
    assert counts() == (1, 1, 1)
    assert _drift(sqlite_db) == []


def test_sqlite_downgrade_of_0002_keeps_event_sets_and_what_hangs_from_them(
    sqlite_db: str, make_event_set: Any
) -> None:
    """0002's downgrade drops a column of event_sets, triggers and postbacks; rebuilding
    event_sets (batch recreate) with foreign_keys=ON would cascade to every mapping."""
    from alembic import command
    from sqlalchemy import text

    from models.migrate import alembic_config

    make_event_set()
    engine = build_engine(sqlite_db, one_shot=True)

    def counts() -> tuple[int, int]:
        with engine.connect() as connection:
            return tuple(  # type: ignore[return-value]
                connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("event_sets", "mappings")
            )

    before = counts()
    assert before[0] == 1 and before[1] >= 1
    command.downgrade(alembic_config(sqlite_db), "0001")
    assert current_revision(engine) == "0001"
    assert counts() == before
    upgrade(sqlite_db)
    assert counts() == before
    assert _drift(sqlite_db) == []
