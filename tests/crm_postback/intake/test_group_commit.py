"""Group commit: concurrent callers share a store call; each gets its own answers or error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_postback import api
from crm_postback.intake.group_commit import ALONE_FROM_ITEMS, MAX_GROUP_ITEMS, GroupCommit


class Recorder:
    """A store that records its groups; `gate` holds the first call until released."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.groups: list[list[str]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: list[str]) -> list[str]:
        self.groups.append(list(items))
        self.entered.set()
        self.gate.wait(5)
        if self.fail_on in items:
            raise RuntimeError("database unavailable")
        return [item.upper() for item in items]


def _in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = target()
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, box


def test_a_lone_caller_is_stored_at_once_and_alone() -> None:
    store = Recorder()
    store.gate.set()
    group = GroupCommit(store)
    assert group.submit(["a", "b"]) == ["A", "B"]
    assert group.submit(["c"]) == ["C"]
    assert store.groups == [["a", "b"], ["c"]]


def test_callers_arriving_during_a_commit_share_the_next_one() -> None:
    store = Recorder()
    group = GroupCommit(store)
    first, first_box = _in_thread(lambda: group.submit(["first"]))
    assert store.entered.wait(5)  # the first caller is inside its (slow) commit
    others = [_in_thread(lambda n=n: group.submit([f"x{n}", f"y{n}"])) for n in range(5)]
    time.sleep(0.2)  # let them all queue behind the first commit
    store.gate.set()
    first.join(5)
    for thread, _ in others:
        thread.join(5)
    assert first_box["value"] == ["FIRST"]
    for n, (_, box) in enumerate(others):
        assert box["value"] == [f"X{n}", f"Y{n}"]  # each its own answers, in its own order
    assert store.groups[0] == ["first"]
    assert len(store.groups) == 2 and sorted(store.groups[1]) == sorted(
        f"{k}{n}" for n in range(5) for k in "xy"
    )


def test_a_failed_group_is_retried_caller_by_caller_so_only_the_bad_one_fails() -> None:
    store = Recorder(fail_on="bad")
    group = GroupCommit(store)
    first, first_box = _in_thread(lambda: group.submit(["ok"]))
    assert store.entered.wait(5)
    queued = [_in_thread(lambda item=item: group.submit([item])) for item in ("bad", "other")]
    time.sleep(0.2)
    store.gate.set()
    for thread, _ in [(first, first_box), *queued]:
        thread.join(5)
    assert first_box["value"] == ["OK"]
    bad, other = (box for _, box in queued)
    assert isinstance(bad["error"], RuntimeError)  # only the caller whose item fails
    assert other["value"] == ["OTHER"]  # retried alone after the shared attempt failed
    assert ["bad", "other"] in store.groups or ["other", "bad"] in store.groups
    assert group.submit(["later"]) == ["LATER"]


def test_groups_stay_within_the_item_limit() -> None:
    store = Recorder()
    group = GroupCommit(store)
    first, _ = _in_thread(lambda: group.submit(["0"]))
    assert store.entered.wait(5)
    small = [str(n) for n in range(ALONE_FROM_ITEMS - 1)]
    callers = MAX_GROUP_ITEMS // len(small) + 1
    queued = [_in_thread(lambda: group.submit(small)) for _ in range(callers)]
    time.sleep(0.2)
    store.gate.set()
    for thread, _ in [(first, None), *queued]:
        thread.join(5)
    assert store.groups[0] == ["0"]
    assert all(len(g) <= MAX_GROUP_ITEMS for g in store.groups)
    assert sum(len(g) for g in store.groups) == 1 + callers * len(small)
    assert len(store.groups) >= 3  # the queued callers did not fit in one group


def test_a_large_batch_commits_on_its_own_while_a_group_is_in_flight() -> None:
    store = Recorder()
    group = GroupCommit(store)
    first, _ = _in_thread(lambda: group.submit(["0"]))
    assert store.entered.wait(5)
    big = [str(n) for n in range(ALONE_FROM_ITEMS)]
    big_thread, big_box = _in_thread(lambda: group.submit(big))
    time.sleep(0.2)
    assert big in store.groups  # it entered the store although the first group is held
    store.gate.set()
    first.join(5)
    big_thread.join(5)
    assert big_box["value"] == [item.upper() for item in big]


class Interrupt(BaseException):
    """What KeyboardInterrupt or a thread's async exception looks like to the group."""


def test_a_leader_interrupted_while_it_gathers_hands_on_and_stores_nothing() -> None:
    store = Recorder()
    group = GroupCommit(store, gather_seconds=0.5)
    _a_group_of_three_callers(group, store)
    behind: list[tuple[threading.Thread, dict[str, Any]]] = []
    gathering = group._arrived
    real_wait = gathering.wait_for

    def interrupted_wait(predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        gathering.wait_for = real_wait  # type: ignore[method-assign]
        # As the real wait: the lock is let go meanwhile, and another caller queues.
        gathering.release()
        behind.append(_in_thread(lambda: group.submit(["f"])))
        time.sleep(0.2)
        gathering.acquire()
        raise Interrupt

    gathering.wait_for = interrupted_wait  # type: ignore[method-assign]
    with pytest.raises(Interrupt):
        group.submit(["e"])
    [(thread, box)] = behind
    thread.join(5)
    assert box["value"] == ["F"]  # the caller behind it led its own group
    assert all("e" not in stored for stored in store.groups)
    assert group.submit(["g"]) == ["G"]


def test_an_interrupt_during_the_one_by_one_retries_keeps_the_answers_already_stored() -> None:
    """The interrupt reaches the leader's caller; a caller stored alone before it keeps its
    answer, and the one not stored gets the interrupt as its error."""
    committed: list[str] = []

    def store(items: list[str]) -> list[str]:
        if "gate" in items:
            time.sleep(0.4)
        if len(items) > 1:
            raise ValueError("the shared transaction failed")
        if items == ["interrupted"]:
            raise Interrupt
        committed.extend(items)
        return [item.upper() for item in items]

    group = GroupCommit(store)
    first, _ = _in_thread(lambda: group.submit(["gate"]))
    queued = []
    for item in ("leader", "ok", "interrupted"):  # queued in this order behind the gate
        time.sleep(0.05)
        queued.append(_in_thread(lambda item=item: group.submit([item])))
    for thread, _ in [(first, None), *queued]:
        thread.join(5)
    (_, leader), (_, ok), (_, interrupted) = queued
    assert committed == ["gate", "leader", "ok"]
    assert isinstance(leader["error"], Interrupt)
    assert ok == {"value": ["OK"]}
    assert isinstance(interrupted["error"], Interrupt)


def _a_group_of_three_callers(group: GroupCommit[str, str], store: Recorder) -> None:
    """The leader "a" holds the store while b, c and d queue; they commit as one group."""
    leader, _ = _in_thread(lambda: group.submit(["a"]))
    assert store.entered.wait(5)
    queued = [_in_thread(lambda item=item: group.submit([item])) for item in "bcd"]
    time.sleep(0.2)
    store.gate.set()
    for thread, _ in [(leader, None), *queued]:
        thread.join(5)
    assert sorted(store.groups[-1]) == ["b", "c", "d"]


def test_after_a_group_of_several_the_next_leader_waits_for_as_many_callers() -> None:
    """Steady concurrency: the callers just answered come back one by one, and are stored
    together instead of the first alone and the others behind it."""
    store = Recorder()
    group = GroupCommit(store, gather_seconds=30)
    _a_group_of_three_callers(group, store)
    first, first_box = _in_thread(lambda: group.submit(["e"]))
    time.sleep(0.2)
    assert first.is_alive() and store.groups[-1] != ["e"]  # waiting for two more
    others = [_in_thread(lambda item=item: group.submit([item])) for item in "fg"]
    for thread, _ in [(first, first_box), *others]:
        thread.join(5)
    assert first_box["value"] == ["E"]
    assert sorted(store.groups[-1]) == ["e", "f", "g"]


def test_the_wait_is_bounded_and_a_lone_caller_then_commits_at_once() -> None:
    store = Recorder()
    group = GroupCommit(store, gather_seconds=0.05)
    _a_group_of_three_callers(group, store)
    assert group.submit(["e"]) == ["E"]  # nobody came: stored alone once the wait ran out
    assert store.groups[-1] == ["e"]
    slow = GroupCommit(store, gather_seconds=30)
    for item in "xyz":  # one caller at a time never waits, however long the wait may be
        lone, box = _in_thread(lambda item=item: slow.submit([item]))
        lone.join(5)
        assert box["value"] == [item.upper()]


def test_without_a_wait_the_next_leader_commits_what_is_queued_at_once() -> None:
    store = Recorder()
    group = GroupCommit(store, gather_seconds=0)
    _a_group_of_three_callers(group, store)
    first, box = _in_thread(lambda: group.submit(["e"]))
    first.join(5)
    assert box["value"] == ["E"] and store.groups[-1] == ["e"]


def test_many_threads_each_get_their_own_answer_or_error_once() -> None:
    """Twelve threads, 3,600 calls, one in 25 bad: every call returns exactly once, with its
    own answer, or its own error when it was the bad one; no caller is left waiting. The
    calls share groups, and groups with a bad call are retried caller by caller."""

    sizes: list[tuple[int, bool]] = []

    def store(items: list[str]) -> list[str]:
        bad = any(item.startswith("bad") for item in items)
        sizes.append((len(items), bad))
        time.sleep(0.0005)  # a commit's round trip: others queue meanwhile
        if bad:
            raise ValueError("bad item in the group")
        return [item.upper() for item in items]

    group = GroupCommit(store, gather_seconds=0.001)
    answers: dict[str, object] = {}

    def caller(thread: int) -> None:
        for n in range(300):
            item = f"{'bad' if n % 25 == 7 else 'ok'}-{thread}-{n}"
            try:
                answers[item] = group.submit([item])
            except ValueError as error:
                answers[item] = error

    threads = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert max(size for size, _ in sizes) > 1  # calls did share groups
    assert any(size > 1 and bad for size, bad in sizes)  # and some were retried one by one
    assert len(answers) == 3_600
    for item, answer in answers.items():
        if item.startswith("bad"):
            assert isinstance(answer, ValueError)
        else:
            assert answer == [item.upper()]


@pytest.mark.integration
def test_concurrent_enqueue_trigger_calls_are_each_committed_on_return(
    pg_db: str, make_event_set: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight threads on real PostgreSQL: every call's trigger is visible to another
    connection the moment it returns, and the calls shared transactions."""
    from models import Trigger
    from models.db import build_engine

    make_event_set()
    dispatched: list[list[int]] = []
    monkeypatch.setattr(api, "_dispatch", lambda ids: dispatched.append(list(ids)))
    observer = build_engine(pg_db, one_shot=True)
    missing: list[int] = []

    def producer(thread: int) -> None:
        for n in range(25):
            accepted = api.enqueue_trigger(
                {
                    "type": "lead.submitted",
                    "lead_id": f"L-{thread}-{n}",
                    "event_set": "acme",
                    "occurred_at": "2026-11-20T10:00:00Z",
                    "match_keys": {"email": f"t{thread}.n{n}@example.com"},
                }
            )
            with observer.connect() as connection:
                found = connection.scalar(
                    select(func.count()).where(Trigger.id == accepted.trigger_id)
                )
            if found != 1:
                missing.append(accepted.trigger_id)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    observer.dispose()
    assert missing == []
    assert sum(len(ids) for ids in dispatched) == 200
    assert len(dispatched) < 200  # some calls shared a commit (and one task)
