"""Producer threads: they push a workload's partitions and stamp when each trigger was accepted.

A trigger's accept time is when the call that enqueued it returned (for a batch, the batch's
return). Latency is measured from there to the simulator's `received_at` of its event.
"""

from __future__ import annotations

import gc
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from bench.workload import TriggerRef, Workload


@dataclass(frozen=True)
class Send:
    """How one design is fed: `prepare` turns a chunk of refs into what its API takes (done
    before the clock starts when the run is not paced, so the generator's cost is not counted
    against either design); `deliver` sends it and returns how many were rejected."""

    prepare: Callable[[list[TriggerRef]], Any]
    deliver: Callable[[Any], int]


def ours_single(workload: Workload) -> Send:
    from crm_postback.api import InputRejected, enqueue_trigger

    def deliver(triggers: list[dict[str, Any]]) -> int:
        rejected = 0
        for trigger in triggers:
            try:
                enqueue_trigger(trigger)
            except InputRejected:
                rejected += 1
        return rejected

    return Send(lambda chunk: [workload.api_trigger(ref) for ref in chunk], deliver)


def ours_batch(workload: Workload) -> Send:
    from crm_postback.api import enqueue_triggers

    def deliver(triggers: list[dict[str, Any]]) -> int:
        items = enqueue_triggers(triggers)
        return sum(1 for item in items if item.accepted is None)

    return Send(lambda chunk: [workload.api_trigger(ref) for ref in chunk], deliver)


def naive(workload: Workload, set_ids: list[int]) -> Send:
    from bench.naive import fire_postback

    def deliver(postbacks: list[dict[str, Any]]) -> int:
        for postback in postbacks:
            fire_postback.delay(postback)
        return 0

    return Send(lambda chunk: [workload.naive_postback(ref, set_ids) for ref in chunk], deliver)


@dataclass
class ProducerResult:
    accepted_at: array[float]  # per trigger index, epoch seconds; 0.0 = never accepted
    started_at: float = 0.0  # when the first enqueue call began
    finished_at: float = 0.0  # when the last one returned
    sent: int = 0
    rejected: int = 0
    calls: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max(self.finished_at - self.started_at, 1e-9)


@dataclass
class ProducerPlan:
    chunk: int  # triggers per enqueue call (1 = one at a time)
    rate: float | None = None  # triggers/s over all producers; None = as fast as possible
    record_times: bool = True  # off for the long run (a million floats it does not report)
    # Called with the chunk's size before each call; blocks while the pipeline is too far
    # behind (the long run's backlog cap).
    gate: Callable[[int], None] | None = None
    # Called with the chunk's size after each call returned (the fairness run starts its quiet
    # producer once a share of the backlog is stored).
    on_sent: Callable[[int], None] | None = None
    # Once set, each producer stops before its next call; what it did not send stays at 0.0
    # in `accepted_at`.
    stop: threading.Event | None = None


def run(workload: Workload, send: Send, plan: ProducerPlan) -> ProducerResult:
    size = workload.triggers if plan.record_times else 0
    result = ProducerResult(accepted_at=array("d", bytes(8 * size)))
    lock = threading.Lock()
    starts: list[float] = []
    ends: list[float] = []
    prepared_ahead = not plan.rate and plan.record_times
    # Once the payloads are prepared, this process freezes its heap out of the cyclic
    # collector's scans (`gc.freeze()`), as a long-running producer may do after starting:
    # the prepared payloads (a harness artifact) and the modules of the design under test.
    # Both designs' producers get it; docs/performance.md gives the figures without it.
    barrier = threading.Barrier(workload.producers, action=gc.freeze if prepared_ahead else None)

    def worker(producer: int) -> None:
        refs = workload.partition(producer)
        per_thread_rate = plan.rate / workload.producers if plan.rate else None
        sent = rejected = calls = 0
        prepared: list[tuple[list[TriggerRef], Any]] | None = None
        if prepared_ahead:
            prepared = [(chunk, send.prepare(chunk)) for chunk in _chunks(refs, plan.chunk)]
        barrier.wait()
        began = time.time()
        try:
            if prepared is not None:
                work: Iterable[tuple[list[TriggerRef], Any]] = prepared
            else:
                work = (
                    (chunk, send.prepare(chunk))
                    for chunk in _chunks(refs, plan.chunk, per_thread_rate, began)
                )
            for chunk, payload in work:
                if plan.stop is not None and plan.stop.is_set():
                    break
                if plan.gate is not None:
                    plan.gate(len(chunk))
                rejected += send.deliver(payload)
                done = time.time()
                calls += 1
                sent += len(chunk)
                if plan.record_times:
                    for ref in chunk:
                        result.accepted_at[ref.index] = done
                if plan.on_sent is not None:
                    plan.on_sent(len(chunk))
        except Exception as error:
            with lock:
                result.errors.append(f"producer {producer}: {type(error).__name__}: {error}")
        with lock:
            starts.append(began)
            ends.append(time.time())
            result.sent += sent
            result.rejected += rejected
            result.calls += calls

    threads = [
        threading.Thread(target=worker, args=(p,), name=f"bench-producer-{p}", daemon=True)
        for p in range(workload.producers)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        if prepared_ahead:
            gc.unfreeze()
    result.started_at = min(starts, default=0.0)
    result.finished_at = max(ends, default=0.0)
    return result


def _chunks(
    refs: Iterator[TriggerRef], size: int, rate: float | None = None, began: float = 0.0
) -> Iterator[list[TriggerRef]]:
    """Chunks of at most `size`; paced, a chunk holds what is due (catching up after a lag)."""
    if rate is None:
        while chunk := list(islice(refs, size)):
            yield chunk
        return
    sent = 0
    tick = 0.01  # a paced producer wakes every 10 ms
    while True:
        due = int((time.time() - began) * rate) + 1 - sent
        if due <= 0:
            time.sleep(max(0.0, min(tick, (sent + 1) / rate - (time.time() - began))))
            continue
        chunk = list(islice(refs, min(due, size)))
        if not chunk:
            return
        sent += len(chunk)
        yield chunk
