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


@pytest.fixture
def on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    import redis

    apply_env(monkeypatch, BROKER_URL=redis_url, CELERY_QUEUE=f"wake-{time.time_ns()}")
    client = redis.Redis.from_url(redis_url)
    queue = get_settings().celery_queue
    yield lambda: int(client.llen(queue))
    client.delete(queue, f"postback:wakeup:{queue}")


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
    on_redis: Callable[[], int], sqlite_db: str, make_event_set: Callable[..., int]
) -> None:
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
