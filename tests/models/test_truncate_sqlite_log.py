"""Emptying SQLite's write-ahead log (after an erasure) never holds up the writers for long:
a checkpoint that must wait for a reader gives up soon and says so."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import make_url

from models.db import get_engine, truncate_sqlite_log

# Longer than the checkpoint may wait, far shorter than the 30 s every other statement may.
WRITER_PATIENCE_SECONDS = 10


@pytest.fixture
def database(sqlite_db: str) -> str:
    path = make_url(sqlite_db).database
    assert path
    return path


@pytest.fixture
def reader_in_the_log(database: str) -> Iterator[sqlite3.Connection]:
    """Another process's read transaction, on a snapshot that reads from the log. (The
    writer stays open: closing it would checkpoint the log, and a reader that begins on a
    log already copied back reads only the database file.)"""
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("CREATE TABLE IF NOT EXISTS scratch (n INTEGER)")
    writer.execute("INSERT INTO scratch VALUES (1)")
    reader = sqlite3.connect(database, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM scratch").fetchone() == (1,)
    yield reader
    reader.close()
    writer.close()


def _wait_until_writers_are_held(database: str, checkpoint: threading.Thread) -> bool:
    """True once a writer cannot take the lock while the checkpoint runs."""
    probe = sqlite3.connect(database, isolation_level=None, timeout=0)
    try:
        while checkpoint.is_alive():
            try:
                probe.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return True
            probe.execute("ROLLBACK")
            checkpoint.join(0.01)
        return False
    finally:
        probe.close()


def test_a_reader_makes_the_truncate_give_up_soon_and_writers_go_on(
    database: str, reader_in_the_log: sqlite3.Connection
) -> None:
    results: list[bool | None] = []
    checkpoint = threading.Thread(target=lambda: results.append(truncate_sqlite_log()))
    checkpoint.start()
    _wait_until_writers_are_held(database, checkpoint)

    # An ingest commit arriving while the checkpoint waits: it waited the checkpoint's whole
    # busy_timeout (30 s), so a writer with less patience failed with "database is locked".
    writer = sqlite3.connect(database, isolation_level=None, timeout=WRITER_PATIENCE_SECONDS)
    try:
        writer.execute("INSERT INTO scratch VALUES (2)")
    finally:
        writer.close()
    checkpoint.join()
    assert results == [False]  # the reader kept the log from being emptied

    reader_in_the_log.execute("COMMIT")
    assert truncate_sqlite_log() is True


def test_the_checkpoint_connection_gets_its_patience_back(sqlite_db: str) -> None:
    """The pooled connection that ran the checkpoint waits as long as any other afterwards."""
    assert truncate_sqlite_log() is True
    with get_engine().connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30000
