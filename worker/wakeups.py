"""Coalescing wake-ups: at most one pending processing task per queue.

Triggers are rows in the database; a Celery message only tells a worker to look. When one
wake-up is already waiting in the queue, a new trigger needs none: that task takes every
trigger ready when it starts. The worker clears the flag as it starts, so a trigger stored
after that moment wakes another task. The flag expires on its own, and the beat sweeper runs
any trigger left behind (e.g. the broker lost the message), so a lost flag delays, never loses.
Only Redis brokers share the flag; other brokers get one message per call, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache

import redis

from crm_postback.core.settings import Settings

WAKEUP_TTL_MS = 5_000

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _client(broker_url: str) -> redis.Redis:
    return redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)


def _key(settings: Settings) -> str:
    return f"postback:wakeup:{settings.celery_queue}"


def shared(settings: Settings) -> bool:
    return settings.broker_url.startswith(("redis://", "rediss://"))


def claim_wakeup(settings: Settings) -> bool:
    """True when the caller should publish a wake-up (none is pending)."""
    if not shared(settings):
        return True
    return bool(_client(settings.broker_url).set(_key(settings), 1, nx=True, px=WAKEUP_TTL_MS))


def release_wakeup(settings: Settings) -> None:
    """A worker starting a wake-up, or a publish that failed: the next trigger wakes again."""
    if shared(settings):
        _client(settings.broker_url).delete(_key(settings))


def wake(settings: Settings, publish: Callable[[], object], waiting: str) -> None:
    """Publishes a wake-up unless one is pending. Never raises: with the broker down, the
    stored rows (`waiting`, for the log) wait for the sweeper."""

    def publish_unless_pending() -> None:
        if claim_wakeup(settings):
            try:
                publish()
            except Exception:
                release_wakeup(settings)
                raise

    publish_or_leave_for_sweeper(publish_unless_pending, waiting)


def publish_or_leave_for_sweeper(publish: Callable[[], object], waiting: str) -> bool:
    """The one place a message is published after a commit. Never raises: the rows it would
    announce (`waiting`, for the log) are due in the database, and the beat sweeper sends them
    when the broker is back. True when the message went out."""
    try:
        publish()
    except Exception as error:
        log.warning(
            "broker unavailable (%s); %s will be sent by the sweeper", type(error).__name__, waiting
        )
        return False
    return True
