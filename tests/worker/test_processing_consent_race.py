"""Processing against a consent withdrawal committing at the same moment.

The promise (docs/delivery-guarantees.md): once `withdraw_consent` answers, nothing more of
the lead leaves except the postbacks it counted as in flight. A worker that plans and claims
rows in one transaction (`resolve_triggers` + `insert_claimed`, sent after its commit) must
either see the withdrawal (its rows end `consent_withdrawn`) or be counted by it.

Each test stops one side at the dangerous point with a barrier and lets the other run:
- the worker has read the lead, the withdrawal runs before the worker inserts its rows;
- the withdrawal has marked the lead, the worker runs before the withdrawal stops rows.
On PostgreSQL the worker reads its leads `FOR KEY SHARE`, so the side that came second
waits for the other's commit (seen here as a backend waiting on a lock). On SQLite the
worker's transaction holds the database's write lock from its first locking read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text

from crm_postback.api import enqueue_trigger
from crm_postback.commands.unit_of_work import Actor
from crm_postback.commands.withdraw_consent import (
    ConsentWithdrawn,
    WithdrawConsent,
    withdraw_consent,
)
from crm_postback.core.settings import get_settings
from models import DEFAULT_WORKSPACE_ID, Postback, PostbackStatus, Role, utcnow
from models.db import get_engine, session_scope
from models.workspace_scope import ALL_WORKSPACES
from worker import processing
from worker.claim_planning import OutgoingBatch

EDITOR = Actor("web:ed", DEFAULT_WORKSPACE_ID, Role.EDITOR)
LEADS = 5  # triggers of distinct leads in the worker's batch; one of them withdraws
WAIT = 20.0  # seconds; a side that hangs this long fails the test


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")
    return url


@pytest.fixture
def stored(db: str, make_event_set: Callable[..., int]) -> list[int]:
    """One stored trigger per lead, none resolved yet (no worker runs here)."""
    make_event_set()
    occurred = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    return [
        enqueue_trigger(
            {
                "type": "lead.submitted",
                "lead_id": f"L-{n}",
                "event_set": "acme",
                "occurred_at": occurred,
                "match_keys": {"email": f"{n}@example.com"},
            }
        ).trigger_id
        for n in range(LEADS)
    ]


def waiting_on_a_lock(db: str) -> bool:
    """Some backend of this test's PostgreSQL database waits for a row lock."""
    monitor = create_engine(db, isolation_level="AUTOCOMMIT")
    try:
        with monitor.connect() as connection:
            return bool(
                connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            )
    finally:
        monitor.dispose()


class Side(threading.Thread):
    """One side of the race in its own thread; keeps its result or error."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as error:  # re-raised in the test's thread
            self.error = error
        finally:
            self.done.set()

    def outcome(self) -> Any:
        assert self.done.wait(WAIT), "one side never finished"
        if self.error is not None:
            raise self.error
        return self.result


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = threading.Event()
    timer = threading.Timer(WAIT, deadline.set)
    timer.start()
    try:
        while not condition():
            assert not deadline.wait(0.02), f"timed out waiting for {what}"
    finally:
        timer.cancel()


def second_side_waited_or_finished(db: str, side: Side) -> None:
    """Returns once `side` is blocked by the first side (PostgreSQL: on a row lock; SQLite:
    still running after a while) or has finished (the race without the lock)."""
    if db.startswith("postgresql"):
        until(lambda: side.done.is_set() or waiting_on_a_lock(db), "the other side")
    else:
        side.done.wait(0.5)


def sent_ids(batches: list[OutgoingBatch]) -> set[int]:
    return {item.postback_id for batch in batches for item in batch.items}


def postbacks() -> dict[str, Any]:
    with session_scope(workspace=ALL_WORKSPACES) as session:
        return {row.lead_ref: row for row in session.scalars(select(Postback))}


def assert_promise_kept(result: ConsentWithdrawn, sent: set[int]) -> None:
    rows = postbacks()
    withdrawn_lead = rows["L-0"]
    if withdrawn_lead.id in sent:
        # It leaves after the withdrawal's answer: the answer must have counted it.
        assert result.postbacks_in_flight == 1, (result, withdrawn_lead.status)
        assert withdrawn_lead.status == PostbackStatus.SENDING
    else:
        assert withdrawn_lead.status == PostbackStatus.CONSENT_WITHDRAWN
        assert withdrawn_lead.payload is None
        assert result.postbacks_in_flight == 0
    # The other leads' events are not held back by one lead's withdrawal.
    assert {row.id for ref, row in rows.items() if ref != "L-0"} <= sent


def test_withdrawal_after_the_worker_read_the_lead_counts_its_rows_in_flight(
    db: str, stored: list[int]
) -> None:
    settings = get_settings()
    with session_scope(workspace=ALL_WORKSPACES) as session:
        now = utcnow()
        resolved = processing.resolve_triggers(session, stored, settings, now)
        assert resolved.taken == LEADS
        # The lead is read and found with consent; the withdrawal runs now.
        withdrawal = Side(lambda: withdraw_consent(WithdrawConsent("L-0"), EDITOR))
        withdrawal.start()
        second_side_waited_or_finished(db, withdrawal)
        if not db.startswith("postgresql"):
            assert not withdrawal.done.is_set(), "SQLite: the withdrawal waits for the writer"
        batches = processing.insert_claimed(session, resolved, settings, now)
        session.commit()
    result = withdrawal.outcome()
    sent = sent_ids(batches)
    assert_promise_kept(result, sent)
    assert len(sent) == LEADS  # planned before the withdrawal committed: in flight, counted


class PauseBefore:
    """Stops the thread that `enter`ed it right before the first statement `stops_at` picks
    until `resume` is set."""

    def __init__(self, stops_at: Callable[[str], bool]) -> None:
        self.stops_at = stops_at
        self.reached, self.resume = threading.Event(), threading.Event()
        self.thread: int | None = None

    def enter(self) -> None:
        self.thread = threading.get_ident()

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (
            threading.get_ident() == self.thread
            and not self.reached.is_set()
            and self.stops_at(statement)
        ):
            self.reached.set()
            assert self.resume.wait(WAIT)


@contextmanager
def pausing(stops_at: Callable[[str], bool]) -> Iterator[PauseBefore]:
    """A PauseBefore listening to the engine's statements; resumed and removed on leaving."""
    pause = PauseBefore(stops_at)
    engine = get_engine()
    event.listen(engine, "before_cursor_execute", pause)
    try:
        yield pause
    finally:
        pause.resume.set()
        event.remove(engine, "before_cursor_execute", pause)


def updates_postbacks(statement: str) -> bool:
    return statement.lstrip().upper().startswith("UPDATE POSTBACKS")


def reads_leads(statement: str) -> bool:
    return statement.lstrip().upper().startswith("SELECT") and "FROM leads" in statement


@pytest.fixture
def pause(db: str) -> Iterator[PauseBefore]:
    """Stops the withdrawal right before its `UPDATE postbacks` (the lead is already marked,
    uncommitted)."""
    with pausing(updates_postbacks) as pause:
        yield pause


def test_worker_reading_a_lead_being_withdrawn_sees_the_withdrawal(
    db: str, stored: list[int], pause: PauseBefore
) -> None:
    settings = get_settings()

    def withdraw() -> ConsentWithdrawn:
        pause.enter()
        return withdraw_consent(WithdrawConsent("L-0"), EDITOR)

    planned, may_commit = threading.Event(), threading.Event()

    def work() -> list[OutgoingBatch]:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            now = utcnow()
            resolved = processing.resolve_triggers(session, stored, settings, now)
            batches = processing.insert_claimed(session, resolved, settings, now)
            planned.set()
            assert may_commit.wait(WAIT)
            session.commit()
            return batches

    withdrawal = Side(withdraw)
    withdrawal.start()
    assert pause.reached.wait(WAIT), "the withdrawal never reached its postback update"
    worker = Side(work)
    worker.start()
    # The worker waits for the withdrawal's lead lock; without it, it plans from a lead it
    # reads as still consenting and holds its rows uncommitted until `may_commit`.
    if db.startswith("postgresql"):
        until(lambda: planned.is_set() or waiting_on_a_lock(db), "the worker")
    else:
        assert not planned.wait(0.5), "SQLite: the worker waits for the withdrawal's write lock"
    pause.resume.set()
    result = withdrawal.outcome()
    may_commit.set()
    assert_promise_kept(result, sent_ids(worker.outcome()))
    assert postbacks()["L-0"].status == PostbackStatus.CONSENT_WITHDRAWN


def test_erasing_a_lead_a_worker_is_planning_waits_instead_of_deadlocking(
    pg_db: str, make_event_set: Callable[..., int]
) -> None:
    """The worker holds its triggers, then reads their leads FOR KEY SHARE; an erasure that
    locked the lead first and then updated those triggers would deadlock with it (PostgreSQL
    aborts one side). It takes the triggers first, so it waits for the worker and erases."""
    from crm_postback.commands.erase_lead import EraseLead, erase_lead

    make_event_set()
    occurred = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    [trigger_id] = [
        enqueue_trigger(
            {
                "type": "lead.submitted",
                "lead_id": "L-0",
                "event_set": "acme",
                "occurred_at": occurred,
                "match_keys": {"email": "zero@example.com"},
            }
        ).trigger_id
    ]
    settings = get_settings()
    owner = Actor("cli:ops", DEFAULT_WORKSPACE_ID, Role.OWNER)
    with pausing(reads_leads) as pause:

        def work() -> int:
            pause.enter()
            with session_scope(workspace=ALL_WORKSPACES) as session:
                now = utcnow()
                resolved = processing.resolve_triggers(session, [trigger_id], settings, now)
                processing.insert_claimed(session, resolved, settings, now)
                session.commit()
                return resolved.taken

        worker = Side(work)
        worker.start()
        assert pause.reached.wait(WAIT), "the worker never read its leads"
        erasure = Side(lambda: erase_lead(EraseLead("L-0"), owner))
        erasure.start()
        until(lambda: erasure.done.is_set() or waiting_on_a_lock(pg_db), "the erasure")
        pause.resume.set()
        assert worker.outcome() == 1
        erased = erasure.outcome()
    assert erased.lead_found
    with session_scope(workspace=ALL_WORKSPACES) as session:
        [row] = session.scalars(select(Postback)).all()
    assert row.payload is None  # the erasure ran after the worker's rows were committed
