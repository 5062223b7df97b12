"""Coalesced wake-ups: a burst of triggers queues one message, not one per trigger."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from crm_postback.api import enqueue_trigger
from crm_postback.core.settings import get_settings
from tests.conftest import apply_env  # type: ignore[import-not-found]
from worker import wakeups


def test_flag_is_taken_once_until_released(on_redis: Callable[[], int]) -> None:
    settings = get_settings()
    assert wakeups.claim_wakeup(settings) is True
    assert wakeups.claim_wakeup(settings) is False
    wakeups.release_wakeup(settings)
    assert wakeups.claim_wakeup(settings) is True


def test_brokers_without_redis_wake_every_time(sqlite_db: str) -> None:
    settings = get_settings()  # memory:// in tests
    assert wakeups.claim_wakeup(settings) and wakeups.claim_wakeup(settings)


def test_a_burst_of_single_triggers_queues_one_message(
    on_redis: Callable[[], int],
    sqlite_db: str,
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wakeups, "WAKEUP_TTL_MS", 600_000)  # see the filesystem case below
    make_event_set()
    for n in range(50):
        enqueue_trigger(
            {
                "type": "lead.submitted",
                "lead_id": f"L-{n}",
                "event_set": "acme",
                "occurred_at": datetime.now(UTC).isoformat(),
                "match_keys": {"email": f"l{n}@example.com"},
            }
        )
    assert on_redis() == 1


def test_flag_expires_so_a_lost_wakeup_only_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit-level, on fakeredis: no server needed; the real-Redis tests above are the proof."""
    import fakeredis

    from crm_postback.core.settings import Settings

    fake = fakeredis.FakeRedis()
    monkeypatch.setattr(wakeups, "_client", lambda url: fake)
    settings = Settings(broker_url="redis://unused:6379/0", celery_queue="unit")
    assert wakeups.claim_wakeup(settings) is True
    assert wakeups.claim_wakeup(settings) is False
    ttl_ms = fake.pttl("postback:wakeup:unit")
    assert 0 < ttl_ms <= wakeups.WAKEUP_TTL_MS


@pytest.fixture
def on_filesystem(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    from worker.app import broker_options

    apply_env(monkeypatch, BROKER_URL="filesystem://")
    queue = get_settings().broker_folder / "queue"
    broker_options(get_settings())  # the folders, as the app makes them
    return lambda: len(list(queue.glob("*.msg")))


def test_filesystem_flag_is_taken_once_until_released(on_filesystem: Callable[[], int]) -> None:
    settings = get_settings()
    assert wakeups.shared(settings)
    assert wakeups.claim_wakeup(settings) is True
    assert wakeups.claim_wakeup(settings) is False
    wakeups.release_wakeup(settings)
    assert wakeups.claim_wakeup(settings) is True


def test_filesystem_flag_expires_so_a_lost_wakeup_only_delays(
    on_filesystem: Callable[[], int],
) -> None:
    import os

    settings = get_settings()
    assert wakeups.claim_wakeup(settings) is True
    flag = next(settings.broker_folder.glob("wakeup-*.pending"))
    stale = time.time() - wakeups.WAKEUP_TTL_MS / 1000 - 1
    os.utime(flag, (stale, stale))  # its worker never started the message
    assert wakeups.claim_wakeup(settings) is True
    assert wakeups.claim_wakeup(settings) is False


def test_a_filesystem_flag_from_the_future_is_stale(on_filesystem: Callable[[], int]) -> None:
    """The clock was stepped back after the flag was made: it would have counted as fresh
    until the clock caught up (an hour here), and no trigger would have woken a worker."""
    import os

    settings = get_settings()
    assert wakeups.claim_wakeup(settings) is True
    flag = next(settings.broker_folder.glob("wakeup-*.pending"))
    ahead = time.time() + 3600
    os.utime(flag, (ahead, ahead))
    assert wakeups.claim_wakeup(settings) is True
    assert wakeups.claim_wakeup(settings) is False  # the new flag is fresh


def test_a_failed_publish_releases_the_filesystem_flag(on_filesystem: Callable[[], int]) -> None:
    settings = get_settings()

    def broker_down() -> None:
        raise OSError("broker folder unwritable")

    wakeups.wake(settings, broker_down, "the test's triggers")
    assert wakeups.claim_wakeup(settings) is True  # the next trigger publishes again


def test_a_burst_on_the_filesystem_broker_queues_one_message(
    on_filesystem: Callable[[], int],
    make_event_set: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No worker takes the message, so only the flag's expiry could add one: not within a
    # burst, however slowly a loaded machine enqueues it.
    monkeypatch.setattr(wakeups, "WAKEUP_TTL_MS", 600_000)
    make_event_set()
    for n in range(20):
        enqueue_trigger(
            {
                "type": "lead.submitted",
                "lead_id": f"L-{n}",
                "event_set": "acme",
                "occurred_at": datetime.now(UTC).isoformat(),
                "match_keys": {"email": f"l{n}@example.com"},
            }
        )
    assert on_filesystem() == 1


def test_an_odd_queue_name_gets_a_flag_file_inside_the_broker_folder(
    on_filesystem: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, BROKER_URL="filesystem://", CELERY_QUEUE="../../etc/x y")
    settings = get_settings()
    assert wakeups.claim_wakeup(settings) is True
    flags = list(settings.broker_folder.glob("wakeup-*.pending"))
    assert len(flags) == 1 and flags[0].parent == settings.broker_folder


def _counting_publish() -> tuple[list[int], Callable[[], None]]:
    published: list[int] = []
    return published, lambda: published.append(1)


def test_a_lingering_wake_up_spares_this_process_s_claims_for_its_linger(
    on_redis: Callable[[], int],
) -> None:
    """Within the linger the task cannot have taken anything yet: the next triggers of this
    process need no claim. The flag is deleted in between, so a claim would have succeeded
    and published: only not asking Redis explains a single message."""
    settings = get_settings()
    published, publish = _counting_publish()
    wakeups.wake(settings, publish, "the test's triggers", linger_ms=60_000)
    wakeups.release_wakeup(settings)
    for _ in range(3):
        wakeups.wake(settings, publish, "the test's triggers", linger_ms=60_000)
    assert published == [1]
    assert wakeups.claim_wakeup(settings) is True  # nobody asked for the flag meanwhile


def test_once_the_linger_has_passed_the_next_trigger_claims_again(
    on_redis: Callable[[], int],
) -> None:
    settings = get_settings()
    published, publish = _counting_publish()
    wakeups.wake(settings, publish, "the test's triggers", linger_ms=50)
    wakeups.release_wakeup(settings)  # its task started after the linger
    time.sleep(0.1)
    wakeups.wake(settings, publish, "the test's triggers", linger_ms=50)
    assert published == [1, 1]


def test_a_wake_up_that_does_not_linger_asks_redis_every_time(
    on_redis: Callable[[], int],
) -> None:
    settings = get_settings()
    published, publish = _counting_publish()
    for _ in range(3):
        wakeups.wake(settings, publish, "the remaining triggers")
        wakeups.release_wakeup(settings)
    assert published == [1, 1, 1]


def test_a_wake_up_whose_flag_another_process_holds_spares_nothing(
    on_redis: Callable[[], int],
) -> None:
    """Another process's pending wake-up says nothing about when its task takes the triggers:
    once that flag is released, this process's next trigger claims and publishes."""
    settings = get_settings()
    assert wakeups.claim_wakeup(settings) is True  # another process's wake-up
    published, publish = _counting_publish()
    wakeups.wake(settings, publish, "the test's triggers", linger_ms=60_000)
    assert published == []
    wakeups.release_wakeup(settings)  # its task started
    wakeups.wake(settings, publish, "the test's triggers", linger_ms=60_000)
    assert published == [1]


def test_a_failed_publish_spares_no_claim(on_redis: Callable[[], int]) -> None:
    settings = get_settings()

    def broker_down() -> None:
        raise ConnectionError("broker down")

    wakeups.wake(settings, broker_down, "the test's triggers", linger_ms=60_000)
    published, publish = _counting_publish()
    wakeups.wake(settings, publish, "the test's triggers", linger_ms=60_000)
    assert published == [1]


def test_a_lingering_wake_up_spares_only_its_own_queue(
    on_redis: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    published, publish = _counting_publish()
    wakeups.wake(get_settings(), publish, "the test's triggers", linger_ms=60_000)
    queue = get_settings().celery_queue
    apply_env(monkeypatch, CELERY_QUEUE=f"{queue}-other")
    try:
        wakeups.wake(get_settings(), publish, "the test's triggers", linger_ms=60_000)
        assert published == [1, 1]
    finally:
        wakeups.release_wakeup(get_settings())


def test_the_spared_window_starts_at_the_claim_not_when_the_publish_returns(
    on_redis: Callable[[], int],
) -> None:
    """The task may start while `delay()` is still returning: a window counted from the end
    of a slow publish would outlast the task's linger."""
    settings = get_settings()
    published: list[int] = []

    def slow_publish() -> None:
        published.append(1)
        time.sleep(0.2)

    wakeups.wake(settings, slow_publish, "the test's triggers", linger_ms=100)
    wakeups.release_wakeup(settings)  # its task lingered 100 ms from the claim and started
    wakeups.wake(settings, slow_publish, "the test's triggers", linger_ms=100)
    assert published == [1, 1]
