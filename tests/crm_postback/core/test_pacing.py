"""Pacing toward TikTok: a moving window per access token, shared through a real Redis."""

from __future__ import annotations

import logging
import multiprocessing
import time
import uuid
from collections.abc import Iterator

import pytest

from crm_postback.core.pacing import RequestPacer, request_pacer, reset_pacers
from crm_postback.core.settings import Settings


@pytest.fixture
def token() -> str:
    return f"pacing-token-{uuid.uuid4().hex}"


@pytest.fixture
def shared(redis_url: str, token: str) -> Iterator[RequestPacer]:
    pacer = RequestPacer("5/second", redis_url)
    yield pacer
    pacer.clear(token)


def test_at_most_n_per_window_then_the_wait_until_a_slot_frees(token: str) -> None:
    pacer = RequestPacer("3 per 10 seconds")
    assert [pacer.try_acquire(token) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = pacer.try_acquire(token)
    assert 9.0 < wait <= 10.1
    assert pacer.try_acquire("another-token") == 0.0


def test_acquire_waits_briefly_for_a_slot_but_never_beyond_its_bound(token: str) -> None:
    pacer = RequestPacer("2/second")
    assert pacer.acquire(token, 0.0) == pacer.acquire(token, 0.0) == 0.0
    started = time.monotonic()
    assert pacer.acquire(token, 0.1) > 0.1  # the next slot frees in ~1 s: not waited for
    assert time.monotonic() - started < 0.05
    assert pacer.acquire(token, 1.5) == 0.0  # waited for it
    assert 0.8 < time.monotonic() - started < 1.5


def _take_slots(url: str, token: str, seconds: float, queue: multiprocessing.Queue[float]) -> None:
    pacer = RequestPacer("5/second", url)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pacer.acquire(token, 0.5) == 0.0:  # as the worker does: waits, or gives up
            queue.put(time.time())
        else:
            time.sleep(0.1)


def test_processes_sharing_redis_share_one_budget(
    shared: RequestPacer, redis_url: str, token: str
) -> None:
    queue: multiprocessing.Queue[float] = multiprocessing.Queue()
    processes = [
        multiprocessing.get_context("fork").Process(
            target=_take_slots, args=(redis_url, token, 2.5, queue)
        )
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=20)
    taken = sorted(queue.get(timeout=1) for _ in range(queue.qsize()))
    # 3 processes, 2.5 s at 5/s: 15 slots at most (10 if each counted only its own twice over)
    assert 10 <= len(taken) <= 15
    # Stamped when each process had its answer: a slot is counted up to a few ms earlier
    # (a busy machine, a first connection), so a window is checked a little short.
    for index, at in enumerate(taken):
        assert len([t for t in taken[index:] if t - at < 0.95]) <= 5


def test_redis_down_falls_back_to_this_process_and_says_so_once(
    token: str, caplog: pytest.LogCaptureFixture
) -> None:
    pacer = RequestPacer("2/second", "redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="crm_postback.core.pacing"):
        started = time.monotonic()
        results = [pacer.try_acquire(token) for _ in range(4)]
        assert time.monotonic() - started < 2
    assert results[:2] == [0.0, 0.0] and all(wait > 0 for wait in results[2:])
    assert not pacer.shared
    warnings = [r for r in caplog.records if "shared storage unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert token not in caplog.text


def test_the_token_is_never_a_key_in_redis(
    shared: RequestPacer, redis_url: str, token: str
) -> None:
    import redis

    assert shared.try_acquire(token) == 0.0
    assert shared.shared
    client = redis.Redis.from_url(redis_url)
    keys = [key.decode() for key in client.scan_iter(count=10_000)]
    client.close()
    assert not [key for key in keys if token in key]
    assert [key for key in keys if RequestPacer.key(token) in key]


def test_the_setting_turns_pacing_on_and_is_checked() -> None:
    reset_pacers()
    assert Settings(tiktok_request_rate="").tiktok_request_rate == ""
    assert Settings(tiktok_request_rate="off").tiktok_request_rate == ""
    assert Settings(tiktok_request_rate=" 10/second ").tiktok_request_rate == "10/second"
    with pytest.raises(ValueError):
        Settings(tiktok_request_rate="ten a second")
    with pytest.raises(ValueError):
        Settings(tiktok_pacing_storage_url="memcached://127.0.0.1")
    assert request_pacer("", "") is None
    pacer = request_pacer("10/second", "")
    assert pacer is not None and request_pacer("10/second", "") is pacer
    settings = Settings(rate_limit_storage_url="redis://127.0.0.1:6379/1")
    assert settings.effective_pacing_storage_url == "redis://127.0.0.1:6379/1"
