"""Fixtures of the worker's tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from crm_postback.core.settings import get_settings
from tests.conftest import apply_env  # type: ignore[import-not-found]


@pytest.fixture
def on_redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    """This test's own queue on the real Redis broker; yields how many messages it holds."""
    import redis

    apply_env(monkeypatch, BROKER_URL=redis_url, CELERY_QUEUE=f"wake-{time.time_ns()}")
    client = redis.Redis.from_url(redis_url)
    queue = get_settings().celery_queue
    yield lambda: int(client.llen(queue))
    client.delete(queue, f"postback:wakeup:{queue}")
