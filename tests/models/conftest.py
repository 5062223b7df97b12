"""Fixtures and helpers of the migration tests: an empty database of the test's own, and the
INSERTs of an install of before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.conftest import PG_ADMIN_URL, RUN_ID, require_service  # type: ignore[import-not-found]

NOW = "2024-01-01 00:00:00.000000"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of the test's own, not migrated: a SQLite file, or a
    PostgreSQL database made for the test and dropped after it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    require_service(
        f"PostgreSQL at {PG_ADMIN_URL}", lambda: create_engine(PG_ADMIN_URL).connect().close()
    )
    name = f"postback_migration_{RUN_ID}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def insert_all(engine: Engine, statements: list[str]) -> None:
    """Runs the INSERTs in one transaction, with :now as NOW and :sha as a key's hash."""
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), {"now": NOW, "sha": "a" * 64})
