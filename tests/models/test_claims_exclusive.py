"""A claim is exclusive on both backends: while one transaction holds what it claimed (triggers
to process, outbox rows to send), a second claimer on another connection gets none of it.
PostgreSQL skips the locked rows; SQLite has no row locks, so the claim takes the database's
write lock at its `SELECT ... FOR UPDATE`, and the second claimer waits for the first to commit,
then finds the rows taken. Before, on SQLite, both took the same rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from crm_postback.api import enqueue_trigger
from crm_postback.core.settings import get_settings
from models import Postback, PostbackStatus, utcnow
from models.db import in_transaction, session_scope
from models.workspace_scope import ALL_WORKSPACES
from worker import delivery, processing

Result = TypeVar("Result")
# Long enough for the second claimer to have sent its claim before the first commits; the
# outcome asserted does not depend on it (only whether the bug could show).
OVERLAP_SECONDS = 0.5


@pytest.fixture(params=["sqlite_db", "pg_db"])
def backend(request: pytest.FixtureRequest, make_event_set: Callable[..., int]) -> Iterator[str]:
    request.getfixturevalue(request.param)
    make_event_set()
    for n in range(5):
        enqueue_trigger(
            {
                "type": "lead.submitted",
                "lead_id": f"L-{n}",
                "event_set": "acme",
                "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
                "match_keys": {"ttclid": f"E.C.P.{n}"},
            }
        )
    yield request.param


def while_held(first: Callable[[Session], Any], second: Callable[[Session], Result]) -> Result:
    """Runs `first` in a transaction that stays open while `second` runs on another connection
    (in a thread), then commits it; returns what `second` got."""
    got: list[Result] = []
    failed: list[BaseException] = []

    def run_second() -> None:
        try:
            got.append(in_transaction(second, workspace=ALL_WORKSPACES))
        except BaseException as error:  # reported by the test
            failed.append(error)

    with session_scope(workspace=ALL_WORKSPACES) as session:
        first(session)
        other = threading.Thread(target=run_second)
        other.start()
        time.sleep(OVERLAP_SECONDS)
        session.commit()
    other.join(timeout=60)
    assert not failed, failed
    return got[0]


def resolve_and_claim(session: Session) -> list[Any]:
    settings = get_settings()
    now = utcnow()
    resolved = processing.resolve_triggers(session, [], settings, now, also_ready=100)
    return processing.insert_claimed(session, resolved, settings, now)


def test_triggers_taken_by_one_worker_are_not_taken_by_another(backend: str) -> None:
    claimed_by_first: list[Any] = []
    second = while_held(
        lambda session: claimed_by_first.extend(resolve_and_claim(session)), resolve_and_claim
    )
    # The first took all five triggers' rows (else an empty second claim would prove nothing).
    assert sum(len(batch.items) for batch in claimed_by_first) == 5
    assert second == []


def test_outbox_rows_claimed_by_one_worker_are_not_claimed_by_another(backend: str) -> None:
    in_transaction(resolve_and_claim, workspace=ALL_WORKSPACES)
    with session_scope(
        workspace=ALL_WORKSPACES
    ) as session:  # every row due again, as after a failed attempt
        session.execute(
            update(Postback).values(
                status=PostbackStatus.RETRYING,
                next_attempt_at=utcnow() - timedelta(seconds=1),
                lease_until=None,
            )
        )
        session.commit()
        ids = [row.id for row in session.query(Postback.id)]
    assert len(ids) == 5

    def claim(session: Session) -> list[Any]:
        return delivery.claim(session, ids, get_settings(), utcnow())

    claimed_by_first: list[Any] = []
    second = while_held(lambda session: claimed_by_first.extend(claim(session)), claim)
    assert sum(len(batch.items) for batch in claimed_by_first) == 5
    assert second == []


def test_the_sweepers_reservation_is_exclusive(backend: str) -> None:
    in_transaction(resolve_and_claim, workspace=ALL_WORKSPACES)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        session.execute(
            update(Postback).values(
                status=PostbackStatus.RETRYING,
                next_attempt_at=utcnow() - timedelta(seconds=1),
                lease_until=None,
            )
        )
        session.commit()

    def reserve(session: Session) -> list[list[int]]:
        return delivery.reserve_due(session, get_settings(), utcnow())

    reserved: list[list[int]] = []
    assert while_held(lambda session: reserved.extend(reserve(session)), reserve) == []
    assert sum(len(group) for group in reserved) == 5


class _Cursor:
    """What `_begin_immediate_before_locking` sees of pysqlite's cursor: records what it runs."""

    def __init__(self) -> None:
        self.connection = type("Connection", (), {"in_transaction": False})()
        self.ran: list[str] = []

    def execute(self, sql: str) -> None:
        self.ran.append(sql)


@pytest.mark.parametrize(
    ("statement", "locks"),
    [
        ("INSERT INTO t VALUES (1)", True),
        ("  \n\tupdate t SET n = 1", True),
        ("Delete FROM t", True),
        ("REPLACE INTO t VALUES (1)", True),
        ("SAVEPOINT sa_savepoint_1", True),
        ("\n" * 40 + "insert into t values (1)", True),
        ("SELECT * FROM t", False),
        ("PRAGMA wal_checkpoint(TRUNCATE)", False),
        ("  -- INSERT\nSELECT 1", False),
        ("", False),
    ],
)
def test_plain_sql_that_writes_takes_the_write_lock(statement: str, locks: bool) -> None:
    from models.db import _begin_immediate_before_locking

    cursor = _Cursor()
    _begin_immediate_before_locking(None, cursor, statement, None, None, False)
    assert cursor.ran == (["BEGIN IMMEDIATE"] if locks else [])


def test_reading_a_statements_verb_copies_nothing_of_it() -> None:
    """Every statement on SQLite passes through this check: it read the verb from an upper-
    cased copy of the whole SQL (a 20 MB copy for a 20 MB statement)."""
    import tracemalloc

    from models.db import _begin_immediate_before_locking

    statement = "SELECT '" + "x" * 20_000_000 + "'"
    cursor = _Cursor()
    tracemalloc.start()
    try:
        _begin_immediate_before_locking(None, cursor, statement, None, None, False)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cursor.ran == []
    assert peak < 1_000_000
