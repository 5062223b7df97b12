"""core.rate_limits: a rate per key (in memory or shared through Redis) and a work gate."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest

from crm_postback.core.rate_limits import Busy, RateLimit, WorkGate


def test_a_key_gets_its_rate_then_a_retry_after() -> None:
    limit = RateLimit("test", "3/minute")
    assert [limit.hit("203.0.113.7").allowed for _ in range(3)] == [True] * 3
    refused = limit.hit("203.0.113.7")
    assert not refused.allowed and 1 <= refused.retry_after_seconds <= 60
    assert limit.hit("203.0.113.8").allowed  # another key counts on its own
    limit.clear("203.0.113.7")
    assert limit.hit("203.0.113.7").allowed


def test_limits_of_different_names_count_apart() -> None:
    first, second = RateLimit("first", "1/minute"), RateLimit("second", "1/minute")
    assert first.hit("k").allowed and second.hit("k").allowed
    assert not first.hit("k").allowed


def test_redis_shares_the_count_and_stores_no_key_as_sent(redis_url: str) -> None:
    import redis

    name = f"test-{uuid.uuid4().hex[:8]}"
    first, second = RateLimit(name, "2/minute", redis_url), RateLimit(name, "2/minute", redis_url)
    try:
        assert first.hit("198.51.100.23").allowed
        assert second.hit("198.51.100.23").allowed
        assert not first.hit("198.51.100.23").allowed
        keys = [key.decode() for key in redis.Redis.from_url(redis_url).keys("LIMITS*")]
        assert keys and not any("198.51.100.23" in key or name in key for key in keys)
    finally:
        first.clear("198.51.100.23")


def test_an_unreachable_redis_falls_back_to_counting_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = RateLimit("test", "2/minute", "redis://127.0.0.1:9/0")
    with caplog.at_level(logging.WARNING, "crm_postback.core.rate_limits"):
        outcomes = [limit.hit("k").allowed for _ in range(3)]
    assert outcomes == [True, True, False]
    warnings = [r for r in caplog.records if "counting in this process" in r.getMessage()]
    assert len(warnings) == 1  # not one per request


def test_the_gate_admits_its_slots_and_queue_and_refuses_the_rest_at_once() -> None:
    gate = WorkGate(slots=2, queue=1, wait_seconds=30)
    release = threading.Event()
    inside = threading.Semaphore(0)
    entered: list[int] = []

    def work(index: int) -> None:
        with gate.slot():
            entered.append(index)
            inside.release()
            release.wait(timeout=30)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    assert inside.acquire(timeout=10) and inside.acquire(timeout=10)  # two inside
    deadline = time.monotonic() + 10
    while gate._admitted < 3:  # the third waits in the queue
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(Busy) as busy, gate.slot():
        pass
    assert busy.value.retry_after_seconds >= 1
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(entered) == [0, 1, 2]
    with gate.slot():  # all left: free again
        pass


def test_waiting_longer_than_the_gate_allows_is_busy() -> None:
    gate = WorkGate(slots=1, queue=1, wait_seconds=0.05)
    with gate.slot(), pytest.raises(Busy), gate.slot():
        pass
