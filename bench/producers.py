"""Producer threads: they push a workload's partitions and stamp when each trigger was accepted.

A trigger's accept time is when the call that enqueued it returned (for a batch, the batch's
return). Latency is measured from there to the simulator's `received_at` of its event.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice

from bench.workload import TriggerRef, Workload

# Sends a chunk; returns how many were rejected.
Send = Callable[[list[TriggerRef]], int]


def ours_single(workload: Workload) -> Send:
    from crm_postback.api import InputRejected, enqueue_trigger

    def send(chunk: list[TriggerRef]) -> int:
        rejected = 0
        for ref in chunk:
            try:
                enqueue_trigger(workload.api_trigger(ref))
            except InputRejected:
                rejected += 1
        return rejected

    return send


def ours_batch(workload: Workload) -> Send:
    from crm_postback.api import enqueue_triggers

    def send(chunk: list[TriggerRef]) -> int:
        items = enqueue_triggers([workload.api_trigger(ref) for ref in chunk])
        return sum(1 for item in items if item.accepted is None)

    return send


def naive(workload: Workload, set_ids: list[int]) -> Send:
    from bench.naive import fire_postback

    def send(chunk: list[TriggerRef]) -> int:
        for ref in chunk:
            fire_postback.delay(workload.naive_postback(ref, set_ids))
        return 0

    return send


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


def run(workload: Workload, send: Send, plan: ProducerPlan) -> ProducerResult:
    size = workload.triggers if plan.record_times else 0
    result = ProducerResult(accepted_at=array("d", bytes(8 * size)))
    lock = threading.Lock()
    starts: list[float] = []
    ends: list[float] = []
    barrier = threading.Barrier(workload.producers)

    def worker(producer: int) -> None:
        refs = workload.partition(producer)
        per_thread_rate = plan.rate / workload.producers if plan.rate else None
        sent = rejected = calls = 0
        barrier.wait()
        began = time.time()
        try:
            for chunk in _chunks(refs, plan.chunk, per_thread_rate, began):
                if plan.gate is not None:
                    plan.gate(len(chunk))
                rejected += send(chunk)
                done = time.time()
                calls += 1
                sent += len(chunk)
                if plan.record_times:
                    for ref in chunk:
                        result.accepted_at[ref.index] = done
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
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.started_at = min(starts, default=0.0)
    result.finished_at = max(ends, default=0.0)
    return result


def _chunks(
    refs: Iterator[TriggerRef], size: int, rate: float | None, began: float
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
