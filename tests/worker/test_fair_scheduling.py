"""Fair scheduling: one event set's backlog never makes another set's fresh trigger wait for it.

A worker's batch of waiting triggers is shared out across their event sets
(`worker.processing.take_waiting_fairly`). These tests attack the share on SQLite and
PostgreSQL, with a second worker holding rows, and with a real worker draining a backlog."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm_postback.api import enqueue_triggers
from crm_postback.core.settings import get_settings
from crm_postback.simulator import SimulatorControl
from models import Postback, Trigger, TriggerStatus
from models.db import session_scope
from models.workspace_scope import ALL_WORKSPACES
from tests.conftest import (  # type: ignore[import-not-found]
    EVENT_SET_ID,
    WorkerProcess,
    trigger_body,
    wait_for,
)
from tests.sql_statements import recorded_statements  # type: ignore[import-not-found]
from worker.processing import process_triggers, take_waiting_fairly

QUIET_SOURCE_ID = "7300000000000000077"
QUIET_TOKEN = "quiet-token-0123456789"


@pytest.fixture
def event_sets(make_event_set: Callable[..., int]) -> dict[str, int]:
    """Four event sets, each mapping lead.submitted."""
    return {
        name: make_event_set(name=name, source_id=f"73000000000000001{n}")
        for n, name in enumerate(("busy", "quiet", "third", "fourth"))
    }


def store(event_set: str, count: int, first: int = 0) -> list[int]:
    ids: list[int] = []
    for start in range(first, first + count, 1000):
        batch = [
            trigger_body(
                "lead.submitted",
                f"{event_set}-{n}",
                event_set=event_set,
                match_keys={"email": f"{event_set}-{n}@example.com"},
            )
            for n in range(start, min(start + 1000, first + count))
        ]
        items = enqueue_triggers(batch)
        accepted = [item.accepted for item in items]
        assert None not in accepted
        ids.extend(item.trigger_id for item in accepted if item is not None)
    return ids


def shares(rows: list[int], ids_by_set: dict[str, list[int]]) -> dict[str, int]:
    set_of = {trigger_id: name for name, ids in ids_by_set.items() for trigger_id in ids}
    return dict(Counter(set_of[trigger_id] for trigger_id in rows))


def test_a_backlog_on_one_set_leaves_room_for_every_other_set(
    any_db: str, event_sets: dict[str, int]
) -> None:
    stored = {"busy": store("busy", 1500), "quiet": store("quiet", 2), "third": store("third", 1)}
    with session_scope(workspace=ALL_WORKSPACES) as session:
        taken = [row.id for row in take_waiting_fairly(session, 100)[0]]
        session.rollback()
    # The sets that fit in their share go first, in a batch of their own.
    assert shares(taken, stored) == {"quiet": 2, "third": 1}
    with session_scope(workspace=ALL_WORKSPACES) as session:
        _rows, more = take_waiting_fairly(session, 100)
        session.rollback()
    assert more


def test_equal_shares_when_every_set_has_a_backlog(any_db: str, event_sets: dict[str, int]) -> None:
    stored = {name: store(name, 40) for name in ("busy", "quiet", "third")}
    with session_scope(workspace=ALL_WORKSPACES) as session:
        taken = [row.id for row in take_waiting_fairly(session, 60)[0]]
        session.rollback()
    assert shares(taken, stored) == {"busy": 20, "quiet": 20, "third": 20}


def test_more_sets_than_room_takes_one_of_as_many_sets_as_fit(
    any_db: str, event_sets: dict[str, int]
) -> None:
    stored = {name: store(name, 3) for name in event_sets}
    seen: Counter[str] = Counter()
    for _ in range(12):
        with session_scope(workspace=ALL_WORKSPACES) as session:
            rows, more = take_waiting_fairly(session, 2)
            session.rollback()
        by_set = shares([row.id for row in rows], stored)
        assert sorted(by_set.values()) == [1, 1]
        assert more  # the sets left out are waiting: the next worker must be woken
        seen.update(by_set)
    # The start rotates: no set is always left out (12 draws of 2 of 4 sets).
    assert len(seen) >= 3


@pytest.mark.integration
def test_the_shares_of_many_sets_are_one_statement_compiled_once(
    pg_db: str, event_sets: dict[str, int]
) -> None:
    """PostgreSQL: whatever the sets and their shares, the rows of all of them are taken by
    one statement, the same text every time, served from SQLAlchemy's compiled cache (a
    VALUES list of the shares could not be cached, and was compiled on every batch)."""
    for name in ("busy", "quiet", "third"):
        store(name, 5)
    with recorded_statements() as statements:
        for limit in (9, 6, 30):  # three shares of 3, of 2, of 10
            with session_scope(workspace=ALL_WORKSPACES) as session:
                rows, _more = take_waiting_fairly(session, limit)
                session.rollback()
            assert len(rows) == min(limit, 15)
    seen = [(s.sql, s.cache) for s in statements if "LATERAL" in s.sql]
    assert len(seen) == 3 and len({sql for sql, _ in seen}) == 1
    assert all(stats.startswith("cached since") for _, stats in seen[1:]), seen


def test_the_whole_batch_is_used_when_only_one_set_waits(
    any_db: str, event_sets: dict[str, int]
) -> None:
    stored = store("busy", 30)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert [row.id for row in take_waiting_fairly(session, 25)[0]] == stored[:25]
        session.rollback()


def test_a_batch_run_by_the_worker_code_takes_the_quiet_trigger_first_time(
    any_db: str, event_sets: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `process_triggers`, as the task calls it: the quiet set's one trigger, stored
    after a 2,500-trigger backlog, is resolved by the first batch of 1,000."""
    from tests.conftest import apply_env  # type: ignore[import-not-found]

    apply_env(monkeypatch, BROKER_URL="redis://127.0.0.1:1/0")  # no wake-ups in this test
    backlog = store("busy", 2500)
    [quiet] = store("quiet", 1)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        done = process_triggers(session, [], get_settings(), datetime.now(UTC), also_ready=1000)
        session.commit()
    assert done.taken == 1 and done.full  # the quiet one alone, and more waiting

    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert session.get(Trigger, quiet).status == TriggerStatus.RESOLVED  # type: ignore[union-attr]
        resolved = sum(
            session.get(Trigger, i).status == TriggerStatus.RESOLVED  # type: ignore[union-attr]
            for i in backlog[:1000]
        )
    assert resolved == 0


def test_a_second_worker_gets_its_own_fair_share_of_what_is_not_locked(
    pg_db: str, event_sets: dict[str, int]
) -> None:
    """Two transactions at once on PostgreSQL: disjoint rows, and the second still takes
    the sets' next triggers in turn (SKIP LOCKED inside each set's share)."""
    stored = {"busy": store("busy", 300), "quiet": store("quiet", 6)}
    first_holds = threading.Event()
    release = threading.Event()
    first: list[int] = []

    def first_worker() -> None:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            first.extend(row.id for row in take_waiting_fairly(session, 8)[0])
            first_holds.set()
            release.wait(20)
            session.rollback()

    thread = threading.Thread(target=first_worker)
    thread.start()
    try:
        assert first_holds.wait(20)
        with session_scope(workspace=ALL_WORKSPACES) as session:
            second = [row.id for row in take_waiting_fairly(session, 8)[0]]
            session.rollback()
    finally:
        release.set()
        thread.join(20)
    assert not set(first) & set(second)
    assert shares(first, stored) == {"busy": 4, "quiet": 4}
    # The quiet set has 2 left after the first worker's 4: they go first, alone.
    assert shares(second, stored) == {"quiet": 2}  # what fits its share goes alone
    assert sorted(t for t in second if t in stored["quiet"]) == stored["quiet"][4:]


@pytest.mark.parametrize(
    ("waiting", "limit", "expected"),
    [
        # 10 does not divide by 3 sets: shares of 4, 3 and 3, not 4 each cut back to 10.
        ({"busy": 5, "quiet": 5, "third": 5}, 10, {"busy": 4, "quiet": 3, "third": 3}),
        # The quiet set fits its share and goes alone; none of the backlog is held meanwhile.
        ({"busy": 20, "quiet": 2}, 10, {"quiet": 2}),
    ],
)
def test_a_batch_locks_exactly_the_triggers_it_returns(
    pg_db: str,
    event_sets: dict[str, int],
    waiting: dict[str, int],
    limit: int,
    expected: dict[str, int],
) -> None:
    """A trigger locked and then left out of the batch is skipped by the worker woken for
    the rest until this batch commits, and then waits for the sweeper (found by the bench:
    2 of 20,000 triggers arrived 38 s late). While the first transaction is open, a second
    one can lock every waiting trigger the first did not return."""
    stored = {name: store(name, count) for name, count in waiting.items()}
    with session_scope(workspace=ALL_WORKSPACES) as holder:
        taken = [row.id for row in take_waiting_fairly(holder, limit)[0]]
        with session_scope(workspace=ALL_WORKSPACES) as other:
            free = set(
                other.scalars(
                    select(Trigger.id)
                    .where(Trigger.status == TriggerStatus.RECEIVED)
                    .with_for_update(skip_locked=True)
                )
            )
            other.rollback()
        holder.rollback()
    assert shares(taken, stored) == expected
    assert free == {i for ids in stored.values() for i in ids} - set(taken)


def test_a_worker_woken_while_another_holds_the_small_sets_takes_the_backlog(
    pg_db: str, event_sets: dict[str, int]
) -> None:
    """The first worker's batch is the quiet set's 2 triggers (they fit in their share) and it
    wakes the next worker before committing. That worker still sees the quiet set's rows
    (they are `received` until the commit) but cannot lock them: it must take the backlog,
    not return empty-handed and end the chain of wake-ups (found by the bench: a set's last
    triggers waited 38 s for the sweeper)."""
    stored = {"busy": store("busy", 30), "quiet": store("quiet", 2)}
    with session_scope(workspace=ALL_WORKSPACES) as holder:
        first = [row.id for row in take_waiting_fairly(holder, 10)[0]]
        with session_scope(workspace=ALL_WORKSPACES) as woken:
            second, more = take_waiting_fairly(woken, 10)
            woken.rollback()
        holder.rollback()
    assert shares(first, stored) == {"quiet": 2}
    assert [row.id for row in second] == stored["busy"][:10] and more


@pytest.mark.integration
def test_a_real_worker_sends_the_quiet_sets_trigger_ahead_of_the_backlog(
    start_worker: Callable[..., WorkerProcess],
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
) -> None:
    """6,000 triggers wait on one event set, then one arrives for another set (another
    advertiser, another token); a real worker started afterwards sends the quiet trigger
    in its first batch: at least 4,000 of the backlog's events reach TikTok after it. Taking
    the oldest first, it would be the last event to arrive."""
    make_event_set(name="busy")
    make_event_set(name="quiet", source_id=QUIET_SOURCE_ID, token=QUIET_TOKEN)
    simulator.register_event_set(QUIET_SOURCE_ID, QUIET_TOKEN, kind="crm")
    store("busy", 6000)
    store("quiet", 1)
    start_worker()
    received = simulator.wait_for_events(6001, timeout=120)
    order = sorted(received, key=lambda event: event["received_at"])
    position = next(
        n for n, event in enumerate(order) if event.get("event_source_id") == QUIET_SOURCE_ID
    )
    assert sum(e.get("event_source_id") == EVENT_SET_ID for e in order) == 6000
    assert len(order) - 1 - position >= 4000, f"quiet event arrived {position + 1}th of 6,001"
    wait_for(lambda: simulator.count_events() == 6001, what="no event twice")


def resolve_all(now: datetime) -> None:
    """Resolves every waiting trigger into outbox rows leased for a delivery task (as the
    sweeper does), without sending them."""
    from worker.processing import process_triggers

    while True:
        with session_scope(workspace=ALL_WORKSPACES) as session:
            done = process_triggers(session, [], get_settings(), now, also_ready=1000)
            session.commit()
        if not done.taken:
            return


def test_the_sweeper_reserves_a_fair_share_for_every_set_with_due_rows(
    any_db: str, event_sets: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set resumed with 2,500 due postbacks (their delivery tasks lost) and another set's
    3 due retries: one sweep reserves the 3 with the first 997 of the backlog, not the
    backlog's oldest 1,000."""
    from tests.conftest import apply_env  # type: ignore[import-not-found]
    from worker.delivery import reserve_due

    apply_env(monkeypatch, BROKER_URL="redis://127.0.0.1:1/0")
    store("busy", 2500)
    store("quiet", 3)
    resolve_all(datetime.now(UTC))
    later = datetime.now(UTC) + timedelta(hours=1)  # every lease has run out
    with session_scope(workspace=ALL_WORKSPACES) as session:
        groups = reserve_due(session, get_settings(), later)
        session.commit()
        set_of = {
            r.id: r.event_set_id
            for r in session.execute(select(Postback.id, Postback.event_set_id))
        }
    reserved = Counter(set_of[row_id] for group in groups for row_id in group)
    assert reserved == {event_sets["busy"]: 997, event_sets["quiet"]: 3}
    assert all(len({set_of[row_id] for row_id in group}) == 1 for group in groups)
    with session_scope(workspace=ALL_WORKSPACES) as session:
        again = reserve_due(session, get_settings(), later)
        session.rollback()
    assert sum(map(len, again)) == 1000  # the next sweep: the next 1,000, none twice
    assert not {i for g in again for i in g} & {i for g in groups for i in g}


def test_one_sweep_of_a_long_backlog_drains_it_batch_after_batch(
    any_db: str,
    eager: None,
    simulator: SimulatorControl,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2,500 due postbacks whose delivery tasks were lost: the beat's one sweep reserves a
    batch, and each full batch's last delivery starts the next sweep, until none is due
    (eager tasks: the chain runs inline). Without the chain, one sweep sends 1,000."""
    from tests.conftest import apply_env  # type: ignore[import-not-found]
    from worker.tasks import sweep_due_postbacks

    make_event_set(name="busy")
    apply_env(monkeypatch, BROKER_URL="redis://127.0.0.1:1/0")  # the wake-ups are lost
    store("busy", 2500)
    resolve_all(datetime.now(UTC) - timedelta(hours=1))  # their leases ran out long ago
    apply_env(monkeypatch, BROKER_URL="memory://")
    sweep_due_postbacks.delay()
    assert simulator.count_events() == 2500
    with session_scope(workspace=ALL_WORKSPACES) as session:
        assert set(session.scalars(select(Postback.status))) == {"delivered"}
