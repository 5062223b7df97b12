"""Group commit: concurrent enqueue calls in one process share one transaction.

Every accepted trigger must be durably stored before its call returns, and a commit costs a
disk flush plus several round trips whatever it holds. When threads (web requests, a routing
system's producer threads) enqueue at the same time, the first becomes the leader, stores
everything queued at that moment in one transaction, wakes the others with their own answers
and hands leadership to whoever queued meanwhile. A lone caller commits alone at once: nobody
waits to fill a group, so light load keeps its latency. Large batches (ALONE_FROM_ITEMS) skip
the queue and commit concurrently, as before. If a shared transaction fails, each
caller of the group is retried alone, so one caller's bad input fails only that caller.

Under steady concurrency, the callers a commit answers come straight back with their next
trigger, just after the next leader has started: groups would alternate between the few that
queued meanwhile and the rest. So a leader whose predecessor carried several callers waits up
to `gather_seconds` for as many to be queued (PostgreSQL's `commit_delay`, for the calls of one
process): fewer commits, so less CPU per trigger where the database, the worker and the
callers share the cores, for at most that much more latency per call. A lone caller (the
previous group had one) never waits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

MAX_GROUP_ITEMS = 1_000
ALONE_FROM_ITEMS = 100  # a call with this many items commits on its own, concurrently


class _Waiter(Generic[Item, Outcome]):
    __slots__ = ("done", "error", "items", "lead", "outcomes")

    def __init__(self, items: Sequence[Item]) -> None:
        self.items = items
        # Held until the waiter is told (its answer, or leadership): a lock released by
        # another thread is the cheapest one-shot signal threading has (an Event is a
        # Condition, which allocates a lock of its own for every wait).
        self.done = threading.Lock()
        self.done.acquire()
        self.lead = False  # set when leadership is handed to this waiter
        self.outcomes: list[Outcome] | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Outcome]):
    """Runs `store(items) -> outcomes` (one outcome per item, in order) for groups of calls."""

    def __init__(
        self, store: Callable[[list[Item]], list[Outcome]], gather_seconds: float = 0.0
    ) -> None:
        self._store = store
        self._gather_seconds = gather_seconds
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # A forked child must not inherit a lock or a leader held by a parent's thread.
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[_Waiter[Item, Outcome]] = []
        self._leading = False
        self._last_group_callers = 0
        self._gathering_for = 0  # callers queued that a waiting leader wants; 0: none waits

    def submit(self, items: Sequence[Item]) -> list[Outcome]:
        if len(items) >= ALONE_FROM_ITEMS:
            # A large batch already shares its commit among its items; queueing it would only
            # serialize it behind other callers' transactions.
            return self._store(list(items))
        waiter: _Waiter[Item, Outcome] = _Waiter(items)
        with self._lock:
            self._queue.append(waiter)
            if not self._leading:
                self._leading = waiter.lead = True
            elif self._gathering_for and len(self._queue) >= self._gathering_for:
                # Only the arrival that completes the group wakes the leader: each wake-up
                # is a thread switch, which costs more than the leader's check.
                self._arrived.notify()
        if not waiter.lead:
            waiter.done.acquire()
            if not waiter.lead:
                return _answer(waiter)
        self._lead_one_group(waiter)
        return _answer(waiter)

    def _lead_one_group(self, leader: _Waiter[Item, Outcome]) -> None:
        with self._lock:
            try:
                self._gather()
            except BaseException:
                # Interrupted while it waited: this caller stores nothing, the next one leads.
                self._queue.remove(leader)
                self._hand_on()
                raise
            group: list[_Waiter[Item, Outcome]] = []
            size = 0
            while self._queue and (
                not group or size + len(self._queue[0].items) <= MAX_GROUP_ITEMS
            ):
                waiter = self._queue.pop(0)
                group.append(waiter)
                size += len(waiter.items)
            self._last_group_callers = len(group)
        try:
            try:
                outcomes = self._store([item for waiter in group for item in waiter.items])
                start = 0
                for waiter in group:
                    waiter.outcomes = outcomes[start : start + len(waiter.items)]
                    start += len(waiter.items)
            except Exception:
                if len(group) == 1:
                    raise
                # Nothing was committed. One caller's input (or a passing fault) must not fail
                # the others: each is stored on its own, and only its own error comes back.
                for waiter in group:
                    try:
                        waiter.outcomes = self._store(list(waiter.items))
                    except Exception as error:
                        waiter.error = error
        except BaseException as error:
            # An interrupt in the middle of the one-by-one retries: those already stored keep
            # their answers; the leader's caller sees the interrupt.
            for waiter in group:
                if waiter.outcomes is None:
                    waiter.error = error
            raise
        finally:
            with self._lock:
                self._hand_on()
            for waiter in group:
                if not waiter.lead:
                    waiter.done.release()
                waiter.lead = False

    def _gather(self) -> None:
        """With the lock held: waits up to `gather_seconds` for as many callers as the last
        group had."""
        expected = self._last_group_callers
        if expected > 1 and len(self._queue) < expected and self._gather_seconds > 0:
            self._gathering_for = expected
            try:
                self._arrived.wait_for(lambda: len(self._queue) >= expected, self._gather_seconds)
            finally:
                self._gathering_for = 0

    def _hand_on(self) -> None:
        """With the lock held: the first caller queued leads next, or nobody leads."""
        if self._queue:
            successor = self._queue[0]
            successor.lead = True
            successor.done.release()
        else:
            self._leading = False


def _answer(waiter: _Waiter[Item, Outcome]) -> list[Outcome]:
    if waiter.error is not None:
        raise waiter.error
    assert waiter.outcomes is not None
    return waiter.outcomes
