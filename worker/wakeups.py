"""Coalescing wake-ups: at most one pending processing task per queue.

Triggers are rows in the database; a Celery message only tells a worker to look. When one
wake-up is already waiting in the queue, a new trigger needs none: that task takes every
trigger ready when it starts. The worker clears the flag as it starts, so a trigger stored
after that moment wakes another task. The flag expires on its own, and the beat sweeper runs
any trigger left behind (e.g. the broker lost the message), so a lost flag delays, never loses.

The flag is a Redis key on a Redis broker, and a file in the broker folder on the filesystem
broker (the embedded default: a burst of single triggers left one message each there, and
the sweep that re-sends due retries waited behind all of them). Other brokers (memory://
in tests) get one message per call.

A wake-up for new triggers on Redis names how long its task lingers before it takes what is
ready (`BATCH_LINGER_MS` of the process that published it). Until that much time has passed
since this process claimed the flag, the task cannot have taken anything yet, so a trigger this
process stores meanwhile rides in it without asking Redis: most of what a wake-up cost a caller
of one trigger at a time was that round trip, answered "already pending" nearly every time.

On a Sentinel broker the key lives on the master the sentinels name at the moment. Redis
replicates it asynchronously: a failover may lose a flag just set (one spare wake-up) or keep
one whose message was lost (the next trigger waits for the TTL, the sweeper runs what is due).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from functools import lru_cache
from hashlib import sha256
from pathlib import Path
from urllib.parse import urlsplit

import redis
from redis.sentinel import Sentinel

from crm_postback.core.settings import Settings

WAKEUP_TTL_MS = 5_000
SENTINEL_DEFAULT_PORT = 26379

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _client(broker_url: str) -> redis.Redis:
    return redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)


@lru_cache(maxsize=4)
def _sentinel_client(broker_url: str, master: str) -> redis.Redis:
    """The master the sentinels name now, asked again whenever a connection breaks (or meets
    a replica's READONLY): a flag set after a failover goes to the new primary."""
    urls = broker_url.split(";")
    # The database kombu uses: the first URL's path (sentinel://host:26379/1), else 0.
    db = urlsplit(urls[0].strip()).path.strip("/") or "0"
    return Sentinel(
        [_host_and_port(url) for url in urls],
        sentinel_kwargs={"socket_timeout": 2, "socket_connect_timeout": 2},
        socket_timeout=2,
        socket_connect_timeout=2,
    ).master_for(master, db=int(db))


def _host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url.strip())
    return parts.hostname or "localhost", parts.port or SENTINEL_DEFAULT_PORT


def _redis(settings: Settings) -> redis.Redis:
    if settings.broker_url.startswith("sentinel://"):
        return _sentinel_client(settings.broker_url, settings.broker_sentinel_master)
    return _client(settings.broker_url)


def _key(settings: Settings) -> str:
    return f"postback:wakeup:{settings.celery_queue}"


def on_redis(settings: Settings) -> bool:
    return settings.broker_url.startswith(("redis://", "rediss://", "sentinel://"))


def _on_filesystem(settings: Settings) -> bool:
    return settings.broker_url.startswith("filesystem://")


def shared(settings: Settings) -> bool:
    """The broker's publishers and workers share one flag per queue."""
    return on_redis(settings) or _on_filesystem(settings)


def _flag_file(settings: Settings) -> Path:
    queue = settings.celery_queue
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", queue):
        queue = sha256(queue.encode()).hexdigest()[:32]
    return settings.broker_folder / f"wakeup-{queue}.pending"


def _claim_flag_file(path: Path) -> bool:
    """Creates the flag file unless it exists and is younger than the TTL (as the Redis key
    expires). A flag that cannot be had at all means publishing: a spare message costs a
    look at the database, a missing one a wait for the sweeper."""
    for _ in range(2):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return True
        except FileExistsError:
            pass
        except OSError:
            return True
        try:
            age_ms = (time.time() - path.stat().st_mtime) * 1000
            # A flag from the future (the clock was stepped back) is stale, or it would hold
            # every wake-up back until the clock caught up.
            if 0 <= age_ms < WAKEUP_TTL_MS:
                return False
            path.unlink()
        except FileNotFoundError:
            pass  # released meanwhile: take it
        except OSError:
            return True
    return False


def claim_wakeup(settings: Settings) -> bool:
    """True when the caller should publish a wake-up (none is pending)."""
    if on_redis(settings):
        client = _redis(settings)
        return bool(client.set(_key(settings), 1, nx=True, px=WAKEUP_TTL_MS))
    if _on_filesystem(settings):
        return _claim_flag_file(_flag_file(settings))
    return True


def release_wakeup(settings: Settings) -> None:
    """A worker starting a wake-up, or a publish that failed: the next trigger wakes again."""
    if on_redis(settings):
        _redis(settings).delete(_key(settings))
    elif _on_filesystem(settings):
        _flag_file(settings).unlink(missing_ok=True)


def wakeup_linger_ms(settings: Settings) -> int:
    """How long the task of a wake-up for new triggers waits before it takes what is ready:
    only on Redis, where a burst's later triggers find the flag set and publish nothing."""
    return settings.batch_linger_ms if on_redis(settings) else 0


# Per (broker, queue): until when a wake-up this process published is certainly still
# lingering, its task not yet started on the triggers (monotonic clock).
_lingering_until: dict[tuple[str, str], float] = {}


def forget_lingering_wakeups() -> None:
    """Forgets this process's wake-ups (tests that reuse a queue name)."""
    _lingering_until.clear()


def wake(
    settings: Settings, publish: Callable[[], object], waiting: str, *, linger_ms: int = 0
) -> None:
    """Publishes a wake-up unless one is pending. Never raises: with the broker down, the
    stored rows (`waiting`, for the log) wait for the sweeper. `linger_ms`: the published
    task waits that long before it takes the ready triggers (the message says so)."""
    key = (settings.broker_url, settings.celery_queue)
    if linger_ms and time.monotonic() < _lingering_until.get(key, 0.0):
        return

    def publish_unless_pending() -> None:
        # The task starts after the claim, so a time taken before it can only end the
        # window early, never late.
        claimed_at = time.monotonic()
        if claim_wakeup(settings):
            try:
                publish()
            except Exception:
                release_wakeup(settings)
                raise
            if linger_ms:
                _lingering_until[key] = claimed_at + linger_ms / 1000

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
