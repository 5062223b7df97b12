"""The Alembic history builds exactly the schema the models declare, on both backends."""

from __future__ import annotations

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
